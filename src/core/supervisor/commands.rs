//! Commands from people (socket, page, schedules): manual start, stop and restart, and their refusals.

use super::*;

impl Supervisor {
    pub(super) fn manual_start(&mut self, name: &str, force: bool, by: &str) -> ActionResult {
        let result = |outcome| ActionResult {
            name: name.to_string(),
            outcome,
        };
        let Some(service) = self.services.get(name) else {
            return result(Outcome::NoSuchService);
        };
        if service.removed {
            return result(Outcome::Failed {
                message: "removed from the configuration; it stops and goes away".into(),
            });
        }
        if self.shutting_down {
            return result(Outcome::Failed {
                message: "tend is shutting down".into(),
            });
        }
        match service.state {
            ServiceState::Starting | ServiceState::Running => {
                let pid = service.run.as_ref().map(|r| r.pid).unwrap_or_default();
                return result(Outcome::Done {
                    message: format!("already running (pid {pid})"),
                });
            }
            ServiceState::Stopping => {
                return result(Outcome::Failed {
                    message: "is stopping; start it again once it has stopped".into(),
                })
            }
            _ => {}
        }
        let now = self.clock.now_ms();
        if !force {
            if let Some(message) = self.recovery_hold(name) {
                return result(Outcome::Failed { message });
            }
            if let Some(refusal) = self.refusal(name, now) {
                return result(refusal);
            }
        }
        self.persisted.service_mut(name).sticky_stop = false;
        self.save_state();
        let reason = StartReason::Manual { by: by.to_string() };
        result(self.spawn(name, reason, force))
    }

    /// `Some(Refused)` when the policy holds a manual start back at `now`.
    pub(super) fn refusal(&self, name: &str, now: Millis) -> Option<Outcome> {
        let gate = self.gate(name, None, now);
        if gate.is_open(now) {
            return None;
        }
        let hold = gate.hold.expect("a closed gate has a hold");
        let wait = gate.at - now;
        Some(Outcome::Refused {
            message: format!(
                "refused: {} allows the next start in {} (use --force to override)",
                hold,
                human_ms(wait)
            ),
            retry_in_ms: wait,
            hold,
        })
    }

    pub(super) fn manual_stop(
        &mut self,
        name: &str,
        by: &str,
        reply: oneshot::Sender<ActionResult>,
    ) {
        let Some(service) = self.services.get_mut(name) else {
            let _ = reply.send(ActionResult {
                name: name.to_string(),
                outcome: Outcome::NoSuchService,
            });
            return;
        };
        let state = service.state;
        if !state.has_process() {
            service.timer = None;
            service.backoff_until = None;
            self.persisted.service_mut(name).sticky_stop = true;
            self.save_state();
            self.set_message(name, Some(format!("stopped by {by} (sticky)")));
            self.set_state(name, ServiceState::Stopped);
            let _ = reply.send(ActionResult {
                name: name.to_string(),
                outcome: Outcome::Done {
                    message: format!("stopped (was {state})"),
                },
            });
            return;
        }
        self.persisted.service_mut(name).sticky_stop = true;
        self.save_state();
        self.set_message(name, Some(format!("stopped by {by} (sticky)")));
        self.services
            .get_mut(name)
            .expect("checked above")
            .stop_waiters
            .push(reply);
        self.begin_stop(name, &format!("stop requested by {by}"));
    }

    pub(super) fn manual_restart(
        &mut self,
        name: &str,
        force: bool,
        reason: StartReason,
        reply: oneshot::Sender<ActionResult>,
    ) {
        let Some(service) = self.services.get(name) else {
            let _ = reply.send(ActionResult {
                name: name.to_string(),
                outcome: Outcome::NoSuchService,
            });
            return;
        };
        if service.removed {
            let _ = reply.send(ActionResult {
                name: name.to_string(),
                outcome: Outcome::Failed {
                    message: "removed from the configuration; it stops and goes away".into(),
                },
            });
            return;
        }
        let now = self.clock.now_ms();
        if !force {
            let held = self
                .recovery_hold(name)
                .map(|message| Outcome::Failed { message })
                .or_else(|| self.refusal(name, now));
            if let Some(outcome) = held {
                let _ = reply.send(ActionResult {
                    name: name.to_string(),
                    outcome,
                });
                return;
            }
        }
        let why = format!("restart requested ({reason})");
        if service.state.has_process() {
            self.persisted.service_mut(name).sticky_stop = false;
            self.save_state();
            let service = self.services.get_mut(name).expect("checked above");
            service.restart_after_stop = Some(PendingRestart {
                reason,
                forced: force,
                reply: Some(reply),
            });
            if service.state != ServiceState::Stopping {
                self.begin_stop(name, &why);
            }
        } else {
            self.persisted.service_mut(name).sticky_stop = false;
            self.save_state();
            let outcome = self.spawn(name, reason, force);
            let _ = reply.send(ActionResult {
                name: name.to_string(),
                outcome,
            });
        }
    }
}
