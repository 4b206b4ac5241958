//! Check results: the verdicts of the check policy and the `on_fail` actions they ask for.

use super::*;

impl Supervisor {
    pub(super) fn handle_report(&mut self, report: CheckReport) {
        let now = self.clock.now_ms();
        let Some(check) = self.config.checks.get(&report.check).cloned() else {
            return;
        };
        let Some(service) = self.services.get_mut(&report.service) else {
            return;
        };
        if service.removed {
            return;
        }
        // A result that arrives after the process is gone says nothing about the next run.
        let Some(run) = &service.run else {
            return;
        };
        let grace = check.grace.unwrap_or(service.cfg.start_grace);
        let in_grace = now - run.started_ms < grace.as_millis() as Millis;
        let judged = match report.result.status {
            Status::Ok | Status::Warning => Judged::Pass,
            Status::Critical => Judged::Fail,
            Status::Unknown => Judged::Inconclusive,
        };
        let slot = service.checks.entry(report.check.clone()).or_default();
        let verdicts =
            policy::on_check_result(&mut slot.track, judged, check.on_fail.after, in_grace);
        slot.last = Some(CheckView {
            check: report.check.clone(),
            status: report.result.status,
            message: report.result.message.clone(),
            value: report.result.value,
            at_ms: report.at_ms,
            failures: slot.track.failures,
            alerting: slot.track.alerting,
        });
        let mut became_ready = false;
        if check.readiness && judged != Judged::Inconclusive {
            let ready = judged == Judged::Pass;
            became_ready = ready && service.ready != Some(true);
            service.ready = Some(ready);
        }
        let name = report.service.clone();
        let check_name = report.check.clone();
        let message = report.result.message.clone();
        let _ = self.events.send(Event::Check { report });
        if became_ready {
            if let Some(group) = self.services[&name].cfg.group.clone() {
                self.drive_recovery(
                    &group,
                    recovery::Input::Ready {
                        service: name.clone(),
                    },
                );
            }
        }
        for verdict in verdicts {
            match verdict {
                CheckVerdict::RaiseAlert | CheckVerdict::ClearAlert => {
                    let raised = verdict == CheckVerdict::RaiseAlert;
                    let text = if raised {
                        format!("ALERT: check {check_name} failed 3 times in a row: {message}")
                    } else {
                        format!("alert cleared: check {check_name} passes again: {message}")
                    };
                    self.services[&name].log.try_marker(text.clone());
                    if raised {
                        tracing::warn!(service = %name, check = %check_name, "{text}");
                    } else {
                        tracing::info!(service = %name, check = %check_name, "{text}");
                    }
                    if check.on_fail.action != FailAction::None {
                        let _ = self.events.send(Event::Alert {
                            service: name.clone(),
                            check: check_name.clone(),
                            raised,
                            message: message.clone(),
                            at_ms: now,
                        });
                    }
                }
                CheckVerdict::Act => {
                    let done =
                        self.act_on_check(&name, &check_name, check.on_fail.action, &message);
                    if !done {
                        // Held back (spacing, a flood wait): try again with the next failing result.
                        if let Some(slot) = self
                            .services
                            .get_mut(&name)
                            .and_then(|s| s.checks.get_mut(&check_name))
                        {
                            slot.track.acted = false;
                        }
                    }
                }
            }
        }
    }

    /// Performs a check's `on_fail` action, obeying every rule a start obeys. Returns false when the
    /// action was held back and should be tried again.
    pub(super) fn act_on_check(
        &mut self,
        name: &str,
        check: &str,
        action: FailAction,
        why: &str,
    ) -> bool {
        let now = self.clock.now_ms();
        let by = format!("check {check}");
        let service = &self.services[name];
        if matches!(action, FailAction::None | FailAction::Alert) {
            return true;
        }
        if self
            .persisted
            .services
            .get(name)
            .is_some_and(|p| p.sticky_stop)
        {
            return true;
        }
        if let Some(message) = self.recovery_hold(name) {
            tracing::debug!(
                service = name,
                "check {check} action {action:?} silenced: {message}"
            );
            // Silenced, not done: once the recovery is over, the next failing result acts.
            return false;
        }
        match action {
            FailAction::None | FailAction::Alert => true,
            FailAction::Restart => {
                if let Some(until) = service.flood_until.filter(|t| *t > now) {
                    let note = format!(
                        "flood wait, {} left: not restarting for check {check} (a restart would only \
                         fetch dialogs again)",
                        human_ms(until - now)
                    );
                    service.log.try_marker(note.clone());
                    self.set_message(name, Some(note));
                    return false;
                }
                let gate = self.gate(name, None, now);
                let open = gate.is_open(now);
                if let Some(hold) = gate.hold.filter(|_| !open) {
                    let note = format!(
                        "check {check} asks for a restart ({why}); held by {hold} for {}",
                        human_ms(gate.at - now)
                    );
                    service.log.try_marker(note.clone());
                    self.set_message(name, Some(note));
                    return false;
                }
                let reason = StartReason::Check {
                    check: check.to_string(),
                };
                if service.state.has_process() {
                    let service = self.services.get_mut(name).expect("known service");
                    service.restart_after_stop = Some(PendingRestart {
                        reason,
                        forced: false,
                        reply: None,
                    });
                    if service.state != ServiceState::Stopping {
                        self.begin_stop(name, &format!("check {check} failed: {why}"));
                    }
                } else {
                    let _ = self.spawn(name, reason, false);
                }
                true
            }
            FailAction::ReloadCache => match self.reload_cache(name, false, &by) {
                Outcome::Refused { message, .. } => {
                    let note = format!("check {check} asks for a cache reload ({why}); {message}");
                    self.services[name].log.try_marker(note.clone());
                    self.set_message(name, Some(note));
                    false
                }
                _ => true,
            },
            FailAction::FloodRecover => {
                let Some(group) = service.cfg.group.clone() else {
                    return true;
                };
                let auto = self
                    .config
                    .groups
                    .get(&group)
                    .is_some_and(|g| g.recovery.auto);
                let all_in_flood = self.config.members_of(&group).all(|m| {
                    self.services
                        .get(&m.name)
                        .and_then(|s| s.flood_until)
                        .is_some_and(|t| t > now)
                });
                if auto && all_in_flood {
                    let _ = self.start_recovery(&group, &by);
                }
                true
            }
        }
    }
}
