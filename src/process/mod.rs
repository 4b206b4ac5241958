//! Operating-system side of running a service: spawning it in its own process group, signalling the
//! group, finding who holds a port, reaping orphans, and writing an executable that is about to run.
//!
//! This module performs system calls and nothing else: it keeps no service state and makes no decisions.
//! The core tells it what to do and owns every pid it gets back.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

mod bounded;
mod install;
mod limits;
mod pipes;
mod port;
mod watch;

pub use bounded::{run_bounded, BoundedError, Finished};
pub use install::write_executable;
pub use limits::raise_open_files_limit;
pub use pipes::{remove_unused as remove_unused_pipes, OutputPipes, PIPE_BUFFER_BYTES};
pub use port::{port_holder, PortHolder};
pub use watch::{ExitStatus, ExitWatch, ProcessIdentity};

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnSpec<'a> {
    pub command: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("empty command")]
    EmptyCommand,
    #[error("cannot find program `{program}` (searched PATH and {}); use an absolute path or fix PATH", tend_dir.display())]
    NotFound { program: String, tend_dir: PathBuf },
    #[error("working directory {} does not exist or is not a directory", .0.display())]
    BadCwd(PathBuf),
    #[error("cannot spawn `{program}`: {source}")]
    Io { program: String, source: io::Error },
}

/// A service process just started.
#[derive(Debug)]
pub struct Spawned {
    pub identity: ProcessIdentity,
    /// Resolves when it exits, with its status.
    pub exit: ExitWatch,
}

/// Spawns a service in a new process group (its pid is the group id), stdin from /dev/null, stdout and
/// stderr into the run's FIFOs (see [`OutputPipes`]: the service outlives tend and keeps its output).
/// The caller opens its readers on `pipes` before calling this, so nothing written is ever unread.
pub fn spawn_service(spec: &SpawnSpec<'_>, pipes: &OutputPipes) -> Result<Spawned, SpawnError> {
    let (program, args) = spec.command.split_first().ok_or(SpawnError::EmptyCommand)?;
    if !spec.cwd.is_dir() {
        return Err(SpawnError::BadCwd(spec.cwd.to_path_buf()));
    }
    let resolved = resolve_program(program, spec.cwd, spec.env)?;
    let io_error = |source| SpawnError::Io {
        program: program.clone(),
        source,
    };
    let (stdout, stderr) = pipes.open_for_service().map_err(io_error)?;
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(&resolved)
        .args(args)
        .current_dir(spec.cwd)
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(io_error)?;
    // Dropping a std Child neither waits nor kills: the pid is watched through a pidfd from here on,
    // which works the same for a process a previous tend started.
    let pid = child.id();
    let exit = ExitWatch::new(pid).map_err(io_error)?;
    let identity = ProcessIdentity::of(pid).unwrap_or(ProcessIdentity {
        // Already exited: the watch reports it at once; the identity is never used for adoption.
        pid,
        start_ticks: 0,
        boot_id: String::new(),
    });
    Ok(Spawned { identity, exit })
}

/// Spawns a process in a new process group with stdout and stderr piped to tend (tests, helpers).
pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Child, SpawnError> {
    let (program, args) = spec.command.split_first().ok_or(SpawnError::EmptyCommand)?;
    if !spec.cwd.is_dir() {
        return Err(SpawnError::BadCwd(spec.cwd.to_path_buf()));
    }
    let resolved = resolve_program(program, spec.cwd, spec.env)?;
    let mut cmd = Command::new(&resolved);
    cmd.args(args)
        .current_dir(spec.cwd)
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Services must outlive a crash of tend (a later tend adopts them); never kill on drop.
        .kill_on_drop(false);
    cmd.spawn().map_err(|source| SpawnError::Io {
        program: program.clone(),
        source,
    })
}

/// `tend` as a program name means this very binary (so the shipped config can run `tend sim …` without an
/// install step); other bare names are looked up in PATH, then next to tend's own executable.
pub fn resolve_program(
    program: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<PathBuf, SpawnError> {
    let own_exe = std::env::current_exe().ok();
    let own_dir = own_exe
        .as_ref()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    if program == "tend" {
        if let Some(exe) = own_exe {
            return Ok(exe);
        }
    }
    if program.contains('/') {
        let path = Path::new(program);
        return Ok(if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        });
    }
    let path_var: OsString = env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let dirs = std::env::split_paths(&path_var).chain(std::iter::once(own_dir.clone()));
    for dir in dirs {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(SpawnError::NotFound {
        program: program.to_string(),
        tend_dir: own_dir,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Sends `signal` to the whole process group led by `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let sig = Signal::try_from(signal).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// Whether any process of the group is still alive.
pub fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// The next delivery of a signal stream, or never when it could not be installed (for one arm of a
/// `select!`).
pub async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// `SIGTERM` for 15, `signal 99` for unknown numbers.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Whether tend is the init process of its pid namespace (a container's PID 1): then every orphan in
/// the container becomes its child, and signals without a handler never reach it.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Makes tend the reaper of orphans of its services (their double-forked or leftover children), so none
/// lingers as a zombie of init and [`reap_orphans`] can collect them.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// tend's children that a tokio task is waiting for right now (check plugins, the reexec preflight).
/// tend is a child subreaper and reaps orphaned zombies; were that reaper to collect one of these,
/// tokio's wait would fail with `ECHILD`. The reaper skips these pids (see [`with_tracked_children`]).
/// A pid is added under the same lock as the spawn, so a child that exits at once is never a zombie
/// outside this set.
static TRACKED: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn tracked() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    // Inserts and removes only: a panic elsewhere cannot leave the set half-changed.
    TRACKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes a pid out of the tracked set when dropped: keep it alive until the child was waited for.
#[derive(Debug)]
pub struct Tracked(Option<u32>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            tracked().remove(&pid);
        }
    }
}

/// Spawns `command` with its pid in the set the orphan reaper leaves alone.
pub fn spawn_tracked(command: &mut Command) -> io::Result<(Child, Tracked)> {
    let mut set = tracked();
    let child = command.spawn()?;
    let pid = child.id();
    if let Some(pid) = pid {
        set.insert(pid);
    }
    Ok((child, Tracked(pid)))
}

/// Runs `f` with the pids of tracked children, holding off new tracked spawns meanwhile: an orphan
/// reaper calls this and collects only zombies outside the set.
pub fn with_tracked_children<R>(f: impl FnOnce(&std::collections::BTreeSet<u32>) -> R) -> R {
    f(&tracked())
}

/// Reaps zombie children of tend that are not services (orphans reparented to tend). Service pids are
/// left alone: tokio waits for those itself and must not have their exit status stolen.
pub fn reap_orphans(services: &HashSet<u32>) -> Vec<u32> {
    let mut reaped = Vec::new();
    for pid in own_children() {
        if services.contains(&pid) || !is_zombie(pid) {
            continue;
        }
        let flags = nix::sys::wait::WaitPidFlag::WNOHANG;
        if nix::sys::wait::waitpid(Pid::from_raw(pid as i32), Some(flags)).is_ok() {
            reaped.push(pid);
        }
    }
    reaped
}

/// Direct children of this process, from /proc (every thread's list).
fn own_children() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn is_zombie(pid: u32) -> bool {
    process_state(pid) == Some('Z')
}

/// The state letter from /proc/PID/stat (R, S, D, Z, T, ...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Short command name of a process, from /proc/PID/comm.
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn program_resolution() {
        let env = BTreeMap::new();
        let cwd = Path::new("/tmp");
        assert_eq!(
            resolve_program("tend", cwd, &env).unwrap(),
            std::env::current_exe().unwrap()
        );
        assert_eq!(
            resolve_program("sh", cwd, &env)
                .unwrap()
                .file_name()
                .unwrap(),
            "sh"
        );
        assert_eq!(
            resolve_program("./x", cwd, &env).unwrap(),
            PathBuf::from("/tmp/./x")
        );
        let err = resolve_program("no-such-program-xyz", cwd, &env).unwrap_err();
        assert!(err
            .to_string()
            .contains("cannot find program `no-such-program-xyz`"));
    }

    #[tokio::test]
    async fn group_signal_kills_grandchildren() {
        let env = BTreeMap::new();
        let cmd: Vec<String> = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut child = spawn(&SpawnSpec {
            command: &cmd,
            cwd: Path::new("/"),
            env: &env,
        })
        .unwrap();
        let pid = child.id().unwrap();
        assert!(group_alive(pid));
        signal_group(pid, libc::SIGKILL).unwrap();
        child.wait().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_alive(pid) {
            // The sleeps are reparented to init (or a subreaper) and die asynchronously.
            assert!(
                std::time::Instant::now() < deadline,
                "group {pid} survived SIGKILL"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
