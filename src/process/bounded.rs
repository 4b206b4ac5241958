//! Short-lived helper commands (check plugins, scheduled `exec` actions): each in its own process group
//! with stdin from /dev/null, its output kept up to a limit (the rest read and dropped, so it never
//! blocks on a full pipe), under a timeout. When it exits, times out or the caller drops the run, what
//! is left of its group is SIGKILLed: a helper can neither outlive its run nor hold tend up. Its pid is
//! tracked for as long as it runs, so tend's orphan reaper never takes its exit status.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How long a killed helper may take to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// A helper that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    /// The first bytes of each stream, up to the limits asked for.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    /// It could not start (`NotFound`, `PermissionDenied`, ...).
    #[error("{0}")]
    Spawn(io::Error),
    #[error("timed out")]
    TimedOut,
    #[error("cannot wait for it: {0}")]
    Wait(io::Error),
}

/// Runs `command` (program, arguments, environment and working directory set by the caller) to its end
/// or `timeout`, keeping at most `keep_stdout` / `keep_stderr` bytes of its output.
pub async fn run_bounded(
    mut command: Command,
    timeout: Duration,
    keep_stdout: usize,
    keep_stderr: usize,
) -> Result<Finished, BoundedError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Declared before the child: dropped after it, so the pid leaves the tracked set only once the
    // child was waited for (or handed to tokio's orphan queue).
    let (mut child, _tracked) = super::spawn_tracked(&mut command).map_err(BoundedError::Spawn)?;
    let Some(pgid) = child.id() else {
        // Only possible if the child was already reaped, which nothing else does to tracked children.
        return Err(BoundedError::Wait(io::Error::other(
            "it vanished right after starting",
        )));
    };
    let mut group = GroupGuard(Some(pgid));
    let mut stdout = spawn_reader(child.stdout.take(), keep_stdout);
    let mut stderr = spawn_reader(child.stderr.take(), keep_stderr);
    let finished = tokio::time::timeout(timeout, async {
        let status = child.wait().await;
        // Leftovers (a backgrounded grandchild) would hold the pipes open; the helper is done, so are they.
        group.kill();
        let out = (&mut stdout).await.unwrap_or_default();
        let err = (&mut stderr).await.unwrap_or_default();
        (status, out, err)
    })
    .await;
    match finished {
        Err(_elapsed) => {
            group.kill();
            // Should the group kill have failed, the leader still dies; reap it now rather than leaving
            // it to tokio's orphan queue, but never wait on it unboundedly.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
            stdout.abort();
            stderr.abort();
            Err(BoundedError::TimedOut)
        }
        Ok((Err(err), _, _)) => Err(BoundedError::Wait(err)),
        Ok((Ok(status), stdout, stderr)) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
    }
}

/// SIGKILLs a helper's process group when the run ends in any way, including the caller dropping the
/// future mid-run.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            if let Err(err) = super::signal_group(pgid, libc::SIGKILL) {
                tracing::warn!("cannot kill the process group {pgid} of a helper command: {err}");
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping the first `cap` bytes.
fn spawn_reader<R>(pipe: Option<R>, cap: usize) -> JoinHandle<Vec<u8>>
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
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
}
