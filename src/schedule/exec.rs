//! The `exec` action of a schedule: runs a command (argv, no shell) in its own process group with
//! stdin from /dev/null, under a timeout, and reports its exit and the first lines of its output.
//!
//! The child is registered with the orphan reaper's skip list for as long as it runs (tend is a child
//! subreaper; a blanket reap would steal its exit status). When it exits, times out, or the run is
//! dropped (tend shuts down), whatever is left of its process group is SIGKILLed: a scheduled command
//! can neither outlive its run nor hold tend up. This module owns those children and nothing else.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::runner::{Performed, RunStatus};
use crate::process::spawn_tracked;
use crate::process::{signal_group, signal_name};

/// Output kept per stream; the rest is read and dropped so the command never blocks on a full pipe.
const KEEP_BYTES: usize = 16 * 1024;
/// Lines of output quoted in the outcome.
const QUOTED_LINES: usize = 3;
/// Longest quoted line.
const MAX_LINE_CHARS: usize = 200;
/// How long a killed command may take to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// Runs `command` (never empty) in `cwd` with `env` added to tend's environment. Never fails: a command
/// that cannot start, exits non-zero, dies of a signal or times out is a `Failed` outcome saying so.
pub async fn run(
    command: &[String],
    cwd: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Performed {
    let Some((program, args)) = command.split_first() else {
        return Performed::new(RunStatus::Failed, "the command is empty");
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Declared before the child: dropped after it, so the pid leaves the reaper's skip list only once
    // the child was waited for (or handed to tokio's orphan queue).
    let (mut child, _registered) = match spawn_tracked(&mut cmd) {
        Ok(spawned) => spawned,
        Err(err) => {
            let why = match err.kind() {
                ErrorKind::NotFound => format!(
                    "no such program (looked up in PATH, or relative to {})",
                    cwd.display()
                ),
                ErrorKind::PermissionDenied => {
                    "permission denied; make it executable (chmod +x)".to_string()
                }
                _ => err.to_string(),
            };
            return Performed::new(RunStatus::Failed, format!("cannot run {program}: {why}"));
        }
    };
    let mut group = GroupGuard(child.id());
    let mut stdout = spawn_reader(child.stdout.take());
    let mut stderr = spawn_reader(child.stderr.take());
    let finished = tokio::time::timeout(timeout, async {
        let status = child.wait().await;
        // Leftovers (a backgrounded grandchild) would hold the pipes open; the command is done.
        group.kill();
        let out = (&mut stdout).await.unwrap_or_default();
        let err = (&mut stderr).await.unwrap_or_default();
        (status, out, err)
    })
    .await;
    match finished {
        Err(_elapsed) => {
            group.kill();
            let _ = child.start_kill();
            let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
            stdout.abort();
            stderr.abort();
            Performed::new(
                RunStatus::Failed,
                format!(
                    "timed out after {} (killed)",
                    crate::config::format_duration(timeout)
                ),
            )
        }
        Ok((Err(err), _, _)) => Performed::new(
            RunStatus::Failed,
            format!("cannot wait for {program}: {err}"),
        ),
        Ok((Ok(status), out, err)) => {
            let (result, what) = match (status.code(), status.signal()) {
                (Some(0), _) => (RunStatus::Ok, "exit 0".to_string()),
                (Some(code), _) => (RunStatus::Failed, format!("exit {code}")),
                (None, Some(signal)) => (
                    RunStatus::Failed,
                    format!("killed by {}", signal_name(signal)),
                ),
                (None, None) => (RunStatus::Failed, format!("ended oddly ({status})")),
            };
            let quoted = first_lines(&out).or_else(|| first_lines(&err));
            let message = match quoted {
                Some(lines) => format!("{what}: {lines}"),
                None => what,
            };
            Performed::new(result, message)
        }
    }
}

/// The first non-empty lines of `bytes`, joined with ` | `; `None` if there are none.
fn first_lines(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(QUOTED_LINES)
        .map(|l| {
            if l.chars().count() > MAX_LINE_CHARS {
                let kept: String = l.chars().take(MAX_LINE_CHARS).collect();
                format!("{kept}…")
            } else {
                l.to_string()
            }
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join(" | "))
}

/// SIGKILLs the command's process group when the run ends in any way, including the runner dropping
/// the future when tend shuts down.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (the group is gone already) is the usual case after a clean exit.
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping the first [`KEEP_BYTES`].
fn spawn_reader<R>(pipe: Option<R>) -> JoinHandle<Vec<u8>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let Some(mut pipe) = pipe else {
            return kept;
        };
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => return kept,
                Ok(n) => {
                    let room = KEEP_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn exit_and_first_lines_make_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(10);
        let ok = run(
            &sh("echo one; echo; echo two; echo three; echo four"),
            dir.path(),
            &[],
            t,
        )
        .await;
        assert_eq!(
            ok,
            Performed::new(RunStatus::Ok, "exit 0: one | two | three")
        );

        let failed = run(&sh("echo 'disk full' >&2; exit 3"), dir.path(), &[], t).await;
        assert_eq!(
            failed,
            Performed::new(RunStatus::Failed, "exit 3: disk full")
        );

        let quiet = run(&sh("exit 0"), dir.path(), &[], t).await;
        assert_eq!(quiet, Performed::new(RunStatus::Ok, "exit 0"));

        let signal = run(&sh("kill -TERM $$"), dir.path(), &[], t).await;
        assert_eq!(
            signal,
            Performed::new(RunStatus::Failed, "killed by SIGTERM")
        );

        let env = run(
            &sh("echo $TEND_SCHEDULE in $(pwd)"),
            dir.path(),
            &[("TEND_SCHEDULE", "nightly")],
            t,
        )
        .await;
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(env.message, format!("exit 0: nightly in {}", cwd.display()));
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", pid_file.display());
        let started = std::time::Instant::now();
        let out = run(&sh(&script), dir.path(), &[], Duration::from_millis(300)).await;
        assert_eq!(
            out,
            Performed::new(RunStatus::Failed, "timed out after 300ms (killed)")
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while crate::process::process_state(pid as u32).is_some_and(|s| s != 'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "the backgrounded sleep survived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            &["no-such-program-tend".to_string()],
            dir.path(),
            &[],
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(out.status, RunStatus::Failed);
        assert!(
            out.message
                .starts_with("cannot run no-such-program-tend: no such program"),
            "{}",
            out.message
        );
    }
}
