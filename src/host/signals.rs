//! Termination signals, the same whether tend runs under systemd, from a shell, or as PID 1 of a
//! container: SIGTERM, SIGINT and SIGQUIT begin a graceful shutdown; any further one skips what is
//! left of the stop grace and SIGKILLs the process groups still stopping.
//!
//! As PID 1 the kernel drops every signal tend has no handler for (even SIGTERM from `docker stop`), so
//! every signal that must work has a handler here (SIGHUP's is the reload task's). Owns the handlers
//! and the decision "first signal: shut down, later ones: hurry"; it must not touch service state or
//! processes: hurrying is a message to the core.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::core::CoreHandle;

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

/// Serves the termination signals until the core is gone: the first cancels `shutdown`; from the
/// second on, tend is in a hurry: the core is told ([`CoreHandle::hurry`]) and every stop under way or
/// still to come in this shutdown skips its grace (a second Ctrl-C may come before the core began the
/// first stop). The SIGKILL itself is sent by each run's runner, which knows its process group.
pub async fn serve(mut signals: Terminations, core: CoreHandle, shutdown: CancellationToken) {
    let mut received = 0u32;
    let mut snapshot = core.snapshot();
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
                if core.hurry().await.is_err() {
                    return;
                }
            }
            // The snapshot channel closes when the core is gone.
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
