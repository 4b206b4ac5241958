//! `tend signal SIG NAME`: a signal to a service's main process (gunicorn's HUP, TTIN, TTOU). Only
//! delivers it and notes it in the service's log; it changes no state (an exit it causes arrives through
//! the runner like any other exit). Must not start or stop anything.

use super::Supervisor;
use crate::core::{ActionResult, Outcome};

impl Supervisor {
    pub(super) fn signal_service(&mut self, name: &str, signal: i32, by: &str) -> ActionResult {
        let result = |outcome| ActionResult {
            name: name.to_string(),
            outcome,
        };
        let Some(service) = self.services.get(name) else {
            return result(Outcome::NoSuchService);
        };
        let sig = crate::process::signal_name(signal);
        let Some(pid) = service.run.as_ref().map(|r| r.pid) else {
            return result(Outcome::Failed {
                message: format!(
                    "not sent: {name} has no process ({}); start it first",
                    service.state
                ),
            });
        };
        let sent = nix::sys::signal::Signal::try_from(signal)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s)
                    .map_err(|e| e.to_string())
            });
        match sent {
            Ok(()) => {
                tracing::info!(service = name, pid, "{sig} sent by {by}");
                result(Outcome::Done {
                    message: format!("{sig} sent to pid {pid}"),
                })
            }
            Err(err) => result(Outcome::Failed {
                message: format!("cannot send {sig} to pid {pid}: {err}"),
            }),
        }
    }
}
