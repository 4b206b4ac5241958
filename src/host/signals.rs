//! Termination signals, the same whether tend runs under systemd, from a shell, or as PID 1 of a
//! container: SIGTERM, SIGINT and SIGQUIT begin a graceful shutdown; any further one skips what is
//! left of the stop grace and SIGKILLs the process groups still stopping.
//!
//! As PID 1 the kernel drops every signal tend has no handler for (even SIGTERM from `docker stop`), so
//! every signal that must work has a handler here (SIGHUP's is the reload task's). Owns the handlers
//! and the decision "first signal: shut down, later ones: hurry"; it must not touch service state: the
//! only thing it does to processes is that SIGKILL, and only to groups the core is already stopping.

use std::collections::HashSet;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::core::{ServiceState, Snapshot};

/// The termination signal handlers, installed together.
pub struct Terminations {
    streams: Vec<(&'static str, Signal)>,
}

impl std::fmt::Debug for Terminations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.streams.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Terminations")
            .field("signals", &names)
            .finish()
    }
}

impl Terminations {
    /// Installs the handlers now (needs the tokio runtime). A handler that cannot be installed is
    /// logged: that signal then keeps its default action (or, as PID 1, is ignored).
    pub fn install() -> Terminations {
        let kinds = [
            ("SIGTERM", SignalKind::terminate()),
            ("SIGINT", SignalKind::interrupt()),
            ("SIGQUIT", SignalKind::quit()),
        ];
        let mut streams = Vec::new();
        for (name, kind) in kinds {
            match signal(kind) {
                Ok(stream) => streams.push((name, stream)),
                Err(err) => tracing::error!("cannot handle {name} ({err}); it will not stop tend"),
            }
        }
        Terminations { streams }
    }

    /// The next termination signal, by name; never returns when no handler could be installed.
    pub async fn next(&mut self) -> &'static str {
        if self.streams.is_empty() {
            std::future::pending::<()>().await;
        }
        let recvs = self.streams.iter_mut().map(|(name, stream)| {
            let name: &'static str = name;
            Box::pin(async move {
                stream.recv().await;
                name
            })
        });
        futures_util::future::select_all(recvs).await.0
    }
}

/// Serves the termination signals until the core is gone (its snapshot channel closes): the first
/// cancels `shutdown`; from the second on, tend is in a hurry: every group the core is stopping, now or
/// later in this shutdown (a second Ctrl-C may come before the core began the first stop), is SIGKILLed.
pub async fn serve(
    mut signals: Terminations,
    mut snapshot: watch::Receiver<Snapshot>,
    shutdown: CancellationToken,
) {
    let mut received = 0u32;
    let mut killed: HashSet<u32> = HashSet::new();
    loop {
        tokio::select! {
            name = signals.next() => {
                received += 1;
                shutdown.cancel();
                if received == 1 {
                    tracing::info!(
                        "{name} received: stopping every service (send it again to skip the stop grace)"
                    );
                    continue;
                }
                tracing::warn!("{name} received again: skipping the stop grace");
            }
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return;
                }
                if received < 2 {
                    continue;
                }
            }
        }
        let groups: Vec<(String, u32)> = stopping_groups(&snapshot.borrow_and_update())
            .into_iter()
            .filter(|(_, pgid)| !killed.contains(pgid))
            .map(|(name, pgid)| (name.to_string(), pgid))
            .collect();
        for (name, pgid) in groups {
            match crate::process::signal_group(pgid, libc::SIGKILL) {
                Ok(()) => {
                    tracing::warn!(service = %name, pid = pgid, "SIGKILL to its process group (stop grace skipped)");
                    killed.insert(pgid);
                }
                Err(err) => {
                    tracing::warn!(service = %name, pid = pgid, "cannot SIGKILL group: {err}")
                }
            }
        }
    }
}

/// The services being stopped, with the process group each one leads.
pub fn stopping_groups(snapshot: &Snapshot) -> Vec<(&str, u32)> {
    snapshot
        .services
        .iter()
        .filter(|s| s.state == ServiceState::Stopping)
        .filter_map(|s| s.pid.map(|pid| (s.name.as_str(), pid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ServiceStatus;

    fn service(name: &str, state: ServiceState, pid: Option<u32>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state,
            pid,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn only_groups_being_stopped_are_hurried() {
        let snapshot = Snapshot {
            services: vec![
                service("a", ServiceState::Stopping, Some(10)),
                service("b", ServiceState::Running, Some(11)),
                service("c", ServiceState::Stopped, None),
                service("d", ServiceState::Stopping, Some(13)),
            ],
            ..Snapshot::default()
        };
        assert_eq!(stopping_groups(&snapshot), vec![("a", 10), ("d", 13)]);
    }
}
