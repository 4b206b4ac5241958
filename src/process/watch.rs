//! Knowing a process again and waiting for it without owning a `Child`: identity by start time, and
//! exit notification through a pidfd.
//!
//! A pid alone is not an identity: after a crash of tend, the pid it saved may belong to an unrelated
//! process by now. [`ProcessIdentity`] adds the process's start time (clock ticks since boot, from
//! `/proc/PID/stat`) and the boot id, which together name one process for ever. [`ExitWatch`] waits for
//! any process, child or not (a pidfd becomes readable when it exits); for tend's own children (spawned
//! by this tend, or by the same pid before a `tend reexec`) it also collects the exit status.
//!
//! System calls only: no service state, no decisions.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// What makes a pid the same process as when it was saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    pub start_ticks: u64,
    /// /proc/sys/kernel/random/boot_id: start ticks repeat after a reboot.
    pub boot_id: String,
}

impl ProcessIdentity {
    /// The identity of a live process now; None if it is gone (or a zombie: it cannot be adopted).
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain anything: parse after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        // fields[0] is field 3 (state); start time is field 22.
        if fields.first() == Some(&"Z") {
            return None;
        }
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(ProcessIdentity {
            pid,
            start_ticks,
            boot_id: boot_id()?,
        })
    }

    /// Whether this process is still alive (and is the same process, not a reused pid).
    pub fn is_alive(&self) -> bool {
        ProcessIdentity::of(self.pid).as_ref() == Some(self)
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// How a watched process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// Not tend's child (adopted after a crash of tend): the kernel tells only that it ended.
    Unknown,
}

/// Waits for one process to end.
#[derive(Debug)]
pub struct ExitWatch {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
}

impl ExitWatch {
    /// Watches `pid`. Take the watch before the process can be reaped (tend's children: any time before
    /// tend waits for them; others: racy by nature, so verify the identity right after).
    pub fn new(pid: u32) -> io::Result<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just returned to us and is owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped with the AsyncFd.
        let pidfd = unsafe { AsyncFd::register(owned) }.map_err(io::Error::from)?;
        Ok(ExitWatch { pid, pidfd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves when the process has ended, with its status when tend can collect it (and then reaps it).
    pub async fn exited(self) -> ExitStatus {
        loop {
            match self.pidfd.readable().await {
                Ok(mut guard) => {
                    guard.retain_ready();
                    break;
                }
                Err(err) => {
                    tracing::warn!(pid = self.pid, "waiting on a pidfd failed ({err}); polling");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    if !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
                        break;
                    }
                }
            }
        }
        match waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => ExitStatus::Signal(signal as i32),
            // ECHILD: not our child (adopted); someone else reaps it.
            _ => ExitStatus::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The child is reaped by ExitWatch::exited, which is what is under test.
    #[allow(clippy::zombie_processes)]
    #[tokio::test]
    async fn exit_status_of_own_child_and_identity() {
        let child = std::process::Command::new("sh")
            .args(["-c", "read x; exit 7"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let identity = ProcessIdentity::of(pid).unwrap();
        assert!(identity.is_alive());
        let reused = ProcessIdentity {
            start_ticks: identity.start_ticks + 1,
            ..identity.clone()
        };
        assert!(
            !reused.is_alive(),
            "a different start time is another process"
        );
        let watch = ExitWatch::new(pid).unwrap();
        drop(child.stdin); // sh reads EOF and exits 7
        assert_eq!(watch.exited().await, ExitStatus::Code(7));
        assert!(!identity.is_alive());
    }

    #[tokio::test]
    async fn a_process_that_is_not_our_child_ends_with_unknown_status() {
        // sh forks `sleep`, prints its pid and exits: the sleep is a grandchild, not our child.
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The test binary is no subreaper, so the sleep went to init: not ours.
        let watch = ExitWatch::new(pid).unwrap();
        assert_eq!(watch.exited().await, ExitStatus::Unknown);
    }
}
