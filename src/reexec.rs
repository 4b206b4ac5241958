//! `tend reexec` (and SIGUSR2): tend replaces itself with the binary on disk, possibly a new version,
//! while every service keeps running.
//!
//! The switch, in order: the new binary is tried first (`NEW -c CONFIG check`: it must run and accept
//! the configuration, or nothing happens and the old tend carries on); the core hands every run over
//! (captures suspended at a line boundary, unfinished lines and pids saved with the state, see
//! [`crate::core::ShutdownMode::Reexec`]); the listening sockets of the control socket and the status
//! page are kept open and passed to the new image (their numbers in [`INHERITED_FDS_ENV`]), so a client
//! connecting meanwhile waits in the backlog instead of being refused; then `execv` on the same pid.
//! The new image adopts the services exactly as after a crash of tend, but as their parent it also
//! gets their exit statuses. If `execv` itself fails, the old image adopts them again in place.
//!
//! This module owns the executable path, the inherited descriptors and the exec. It must not touch
//! service state (the core's) or the listeners' serving (control, web).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming the descriptors a re-executed tend inherits: `control=3,web=4`.
pub const INHERITED_FDS_ENV: &str = "TEND_INHERITED_FDS";
/// Set in the environment of a re-executed tend (to say so in its log); removed at start.
pub const REEXEC_ENV: &str = "TEND_REEXEC";
/// How long the new binary may take to check the configuration before the switch is called off.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    #[error("cannot run the new binary {}: {source}; tend keeps running the old one", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the new binary {} failed its check of {} ({status}): {output}; tend keeps running the old one",
        exe.display(),
        config.display()
    )]
    Check {
        exe: PathBuf,
        config: PathBuf,
        status: String,
        output: String,
    },
    #[error("the new binary {} did not finish its check within {}s; tend keeps running the old one", exe.display(), PREFLIGHT_TIMEOUT.as_secs())]
    Timeout { exe: PathBuf },
    #[error("execv {} failed: {source}", exe.display())]
    Exec { exe: PathBuf, source: nix::Error },
}

static OWN_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the path tend was started from, before anyone can replace the file: after an upgrade,
/// `/proc/self/exe` names the old, deleted file, while the path names the new one.
pub fn record_own_exe() {
    let exe = std::env::current_exe()
        .map(|p| {
            let text = p.to_string_lossy();
            match text.strip_suffix(" (deleted)") {
                Some(stripped) => PathBuf::from(stripped),
                None => p,
            }
        })
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let _ = OWN_EXE.set(exe);
}

/// The binary a reexec runs.
pub fn own_exe() -> PathBuf {
    if OWN_EXE.get().is_none() {
        record_own_exe();
    }
    OWN_EXE.get().cloned().unwrap_or_default()
}

/// Descriptors handed over by the tend that re-executed into this one.
#[derive(Debug, Default)]
pub struct Inherited {
    pub control: Option<OwnedFd>,
    pub web: Option<OwnedFd>,
    /// This process is a re-executed tend.
    pub reexec: bool,
}

impl Inherited {
    /// Takes the descriptors named in [`INHERITED_FDS_ENV`] and removes the variables, so services
    /// spawned later see neither. Call once, at start, before other threads exist.
    pub fn from_env() -> Inherited {
        let mut inherited = Inherited {
            reexec: std::env::var_os(REEXEC_ENV).is_some(),
            ..Inherited::default()
        };
        let spec = std::env::var(INHERITED_FDS_ENV).unwrap_or_default();
        // SAFETY (both): single-threaded at this point; nothing else reads the environment concurrently.
        unsafe {
            std::env::remove_var(INHERITED_FDS_ENV);
            std::env::remove_var(REEXEC_ENV);
        }
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let Some((name, fd)) = part.split_once('=') else {
                continue;
            };
            let Ok(fd) = fd.parse::<RawFd>() else {
                continue;
            };
            // Only a descriptor that is open is taken; it gets close-on-exec again at once.
            if nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .is_err()
            {
                tracing::warn!(
                    fd,
                    name,
                    "an inherited descriptor is not open; binding anew"
                );
                continue;
            }
            // SAFETY: the previous image passed this open descriptor to us and nothing else owns it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match name {
                "control" => inherited.control = Some(owned),
                "web" => inherited.web = Some(owned),
                _ => {}
            }
        }
        inherited
    }
}

/// The listening sockets to hand over, duplicated (close-on-exec until the switch) so the servers
/// can drop theirs.
#[derive(Debug, Default)]
pub struct Listeners {
    pub control: Option<OwnedFd>,
    pub web: Option<OwnedFd>,
}

/// A close-on-exec duplicate of `fd` (services never inherit it).
pub fn keep(fd: &impl AsRawFd) -> Option<OwnedFd> {
    let dup = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that only we own.
    Some(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Runs the new binary's configuration check; Ok with its `--version` line.
pub async fn preflight(exe: &Path, config: &Path) -> Result<String, ReexecError> {
    let run = |args: Vec<OsString>| async move {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .env_remove(INHERITED_FDS_ENV);
        // Tracked: tend's orphan reaper must not take its exit status from us.
        let (child, _tracked) = crate::process::spawn_tracked(&mut cmd)?;
        child.wait_with_output().await
    };
    let check = run(vec!["-c".into(), config.into(), "check".into()]);
    let output = match tokio::time::timeout(PREFLIGHT_TIMEOUT, check).await {
        Err(_) => return Err(ReexecError::Timeout { exe: exe.into() }),
        Ok(Err(source)) => {
            return Err(ReexecError::Spawn {
                exe: exe.into(),
                source,
            })
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        if text.is_empty() {
            text = "(no output)".into();
        }
        return Err(ReexecError::Check {
            exe: exe.into(),
            config: config.into(),
            status: output.status.to_string(),
            output: text,
        });
    }
    let version = run(vec!["--version".into()]);
    let version = match tokio::time::timeout(PREFLIGHT_TIMEOUT, version).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => String::new(),
    };
    Ok(version)
}

/// Replaces this process with `exe` and the same arguments, handing `listeners` over. Returns only on
/// failure (the caller then carries on in this image).
pub fn exec(exe: &Path, listeners: &Listeners, extra_env: &[(String, String)]) -> ReexecError {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut fds = Vec::new();
    for (name, fd) in [("control", &listeners.control), ("web", &listeners.web)] {
        if let Some(fd) = fd {
            // The one moment they lose close-on-exec: they must survive this execv.
            let _ = nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
            fds.push(format!("{name}={}", fd.as_raw_fd()));
        }
    }
    let to_c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).unwrap_or_default();
    let path = to_c(exe.as_os_str());
    let args: Vec<CString> = std::env::args_os().map(|a| to_c(&a)).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != INHERITED_FDS_ENV && k != REEXEC_ENV)
        .map(|(k, v)| {
            let mut pair = k;
            pair.push("=");
            pair.push(v);
            to_c(&pair)
        })
        .collect();
    env.push(to_c(
        format!("{INHERITED_FDS_ENV}={}", fds.join(",")).as_ref(),
    ));
    env.push(to_c(format!("{REEXEC_ENV}=1").as_ref()));
    for (key, value) in extra_env {
        env.push(to_c(format!("{key}={value}").as_ref()));
    }
    let err = match nix::unistd::execve(&path, &args, &env) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    for fd in [&listeners.control, &listeners.web].into_iter().flatten() {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    ReexecError::Exec {
        exe: exe.to_path_buf(),
        source: err,
    }
}
