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
use std::time::Duration;

use tokio::process::Command;

use super::runner::{Performed, RunStatus};
use crate::process::{run_bounded, signal_name, BoundedError, Finished};

/// Output kept per stream; the rest is read and dropped so the command never blocks on a full pipe.
const KEEP_BYTES: usize = 16 * 1024;
/// Lines of output quoted in the outcome.
const QUOTED_LINES: usize = 3;
/// Longest quoted line.
const MAX_LINE_CHARS: usize = 200;

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
    cmd.args(args).envs(env.iter().copied()).current_dir(cwd);
    match run_bounded(cmd, timeout, KEEP_BYTES, KEEP_BYTES).await {
        Err(BoundedError::Spawn(err)) => {
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
            Performed::new(RunStatus::Failed, format!("cannot run {program}: {why}"))
        }
        Err(BoundedError::TimedOut) => Performed::new(
            RunStatus::Failed,
            format!(
                "timed out after {} (killed)",
                crate::config::format_duration(timeout)
            ),
        ),
        Err(BoundedError::Wait(err)) => Performed::new(
            RunStatus::Failed,
            format!("cannot wait for {program}: {err}"),
        ),
        Ok(Finished {
            status,
            stdout,
            stderr,
        }) => {
            let (result, what) = match (status.code(), status.signal()) {
                (Some(0), _) => (RunStatus::Ok, "exit 0".to_string()),
                (Some(code), _) => (RunStatus::Failed, format!("exit {code}")),
                (None, Some(signal)) => (
                    RunStatus::Failed,
                    format!("killed by {}", signal_name(signal)),
                ),
                (None, None) => (RunStatus::Failed, format!("ended oddly ({status})")),
            };
            let quoted = first_lines(&stdout).or_else(|| first_lines(&stderr));
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
