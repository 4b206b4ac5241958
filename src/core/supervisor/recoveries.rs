//! The glue between the actor and the staged flood-wait recovery (`crate::recovery`), one per group.

use super::*;

impl Supervisor {
    /// Why a start of `name` is held by its group's running recovery, if it is.
    pub(super) fn recovery_hold(&self, name: &str) -> Option<String> {
        let group = self.services.get(name)?.cfg.group.as_ref()?;
        let rec = self.persisted.recoveries.get(group)?;
        (!rec.is_finished()).then(|| {
            format!(
                "held: {} (cancel with `tend recover {group} --cancel`, or use --force)",
                rec.describe(self.clock.now_ms())
            )
        })
    }

    pub(super) fn start_recovery(&mut self, group: &str, trigger: &str) -> Outcome {
        let now = self.clock.now_ms();
        if !self.config.groups.contains_key(group) {
            let known: Vec<&str> = self.config.groups.keys().map(String::as_str).collect();
            return Outcome::Failed {
                message: format!("no such group {group}; groups: {}", known.join(", ")),
            };
        }
        if let Some(rec) = self.persisted.recoveries.get(group) {
            if !rec.is_finished() {
                return Outcome::Done {
                    message: format!("already in progress: {}", rec.describe(now)),
                };
            }
        }
        let members = self.member_names(group);
        let mut rec = Recovery::new(group, members.clone(), trigger, now);
        // Every flood wait already known counts from the start.
        if let Some(until) = members
            .iter()
            .filter_map(|m| self.services.get(m).and_then(|s| s.flood_until))
            .max()
        {
            rec.flood_until_ms = Some(until);
        }
        tracing::warn!(group, trigger, "starting the staged flood-wait recovery");
        for m in &members {
            self.services[m].log.try_marker(format!(
                "flood recovery of group {group} begins ({trigger})"
            ));
        }
        self.persisted.recoveries.insert(group.to_string(), rec);
        self.drive_recovery(group, recovery::Input::Tick);
        let summary = self.persisted.recoveries[group].describe(now);
        Outcome::Done {
            message: format!("started: {summary}"),
        }
    }

    pub(super) fn cancel_recovery(&mut self, group: &str, by: &str) -> Outcome {
        match self.persisted.recoveries.get(group) {
            Some(rec) if !rec.is_finished() => {
                self.drive_recovery(group, recovery::Input::Cancel { by: by.to_string() });
                Outcome::Done {
                    message: format!(
                        "cancelled; services left as they are, normal restart rules apply again: {}",
                        self.describe_members(group)
                    ),
                }
            }
            _ => Outcome::Failed {
                message: format!("no recovery of group {group} is running"),
            },
        }
    }

    /// The services of `group`, in name order (owned, so the caller may mutate `self` meanwhile).
    pub(super) fn member_names(&self, group: &str) -> Vec<String> {
        self.config
            .members_of(group)
            .map(|m| m.name.clone())
            .collect()
    }

    pub(super) fn describe_members(&self, group: &str) -> String {
        self.config
            .members_of(group)
            .map(|m| format!("{} {}", m.name, self.services[&m.name].state))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Feeds an input to a group's recovery and performs what it asks, until nothing follows.
    pub(super) fn drive_recovery(&mut self, group: &str, input: recovery::Input) {
        let Some(cfg) = self.config.groups.get(group).map(|g| g.recovery.clone()) else {
            return;
        };
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            let now = self.clock.now_ms();
            let Some(rec) = self.persisted.recoveries.get_mut(group) else {
                return;
            };
            let before = rec.stage.clone();
            let actions = recovery::advance(rec, &cfg, input, now);
            let changed = rec.stage != before;
            let summary = rec.describe(now);
            let stage = rec.stage.name().to_string();
            if changed || !actions.is_empty() {
                self.save_state();
                tracing::info!(group, "{summary}");
                let _ = self.events.send(Event::Recovery {
                    group: group.to_string(),
                    stage,
                    summary,
                    at_ms: now,
                });
            }
            for action in actions {
                match action {
                    recovery::Action::StopMembers => self.stop_members_for_recovery(group),
                    recovery::Action::Start(member) => {
                        let sticky = self
                            .persisted
                            .services
                            .get(&member)
                            .is_some_and(|p| p.sticky_stop);
                        let outcome = if sticky {
                            Outcome::Failed {
                                message: "stopped by hand (sticky)".into(),
                            }
                        } else if self.services[&member].state.has_process() {
                            Outcome::Done {
                                message: "already running".into(),
                            }
                        } else {
                            self.spawn(&member, StartReason::Recovery, false)
                        };
                        if let Outcome::Failed { message } = outcome {
                            self.services[&member]
                                .log
                                .try_marker(format!("flood recovery skips it: {message}"));
                            inputs.push(recovery::Input::StartFailed { service: member });
                        }
                    }
                    recovery::Action::Finished => {
                        let cancelled = matches!(
                            self.persisted.recoveries.get(group).map(|r| &r.stage),
                            Some(recovery::Stage::Cancelled { .. })
                        );
                        if cancelled {
                            self.leave_after_cancel(group);
                        } else {
                            self.resume_after_recovery(group);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn stop_members_for_recovery(&mut self, group: &str) {
        let members = self.member_names(group);
        for member in members {
            let service = self
                .services
                .get_mut(&member)
                .expect("members are services");
            service.restart_after_stop = None;
            match service.state {
                ServiceState::Starting | ServiceState::Running => {
                    self.begin_stop(&member, &format!("flood recovery of group {group}"))
                }
                ServiceState::Waiting | ServiceState::Backoff => {
                    service.timer = None;
                    service.backoff_until = None;
                    self.set_state(&member, ServiceState::Stopped);
                }
                _ => {}
            }
        }
    }

    /// Normal rules again: members that are down (and not stopped by hand) start through the gate.
    pub(super) fn resume_after_recovery(&mut self, group: &str) {
        let members = self.member_names(group);
        for member in members {
            let service = &self.services[&member];
            if !service.state.has_process() && service.cfg.autostart {
                self.services.get_mut(&member).expect("known").message = None;
                self.auto_start(&member, StartReason::Recovery, true);
            }
        }
    }

    /// A cancelled recovery leaves every member as it is; the ones it had stopped say so.
    pub(super) fn leave_after_cancel(&mut self, group: &str) {
        let members = self.member_names(group);
        for member in members {
            let service = self.services.get_mut(&member).expect("known");
            if !service.state.has_process() {
                service.timer = None;
                service.message = Some(format!(
                    "left stopped by the cancelled recovery of {group}: `tend start {member}` starts it"
                ));
                self.set_state(&member, ServiceState::Stopped);
            }
        }
    }

    /// Conditions a recovery waits for that are not events of their own.
    pub(super) fn tend_recoveries(&mut self) {
        let waiting: Vec<String> = self
            .persisted
            .recoveries
            .iter()
            .filter(|(_, r)| matches!(r.stage, recovery::Stage::Stopping { .. }))
            .map(|(g, _)| g.clone())
            .collect();
        for group in waiting {
            let all_down = self
                .config
                .members_of(&group)
                .all(|m| self.services.get(&m.name).is_none_or(|s| s.run.is_none()));
            if all_down {
                self.drive_recovery(&group, recovery::Input::MembersDown);
            }
        }
    }

    /// After a restart of tend: a recovery that was starting a member starts it again (it was stopped
    /// with tend); a cooldown or pause keeps its persisted end.
    pub(super) fn resume_recoveries(&mut self) {
        let groups: Vec<String> = self
            .persisted
            .recoveries
            .iter()
            .filter(|(g, r)| !r.is_finished() && self.config.groups.contains_key(*g))
            .map(|(g, _)| g.clone())
            .collect();
        for group in groups {
            let rec = &self.persisted.recoveries[&group];
            tracing::warn!(group, "resuming: {}", rec.describe(self.clock.now_ms()));
            if let recovery::Stage::Starting { .. } = rec.stage {
                if let Some(member) = rec.current().map(str::to_string) {
                    if !self.services[&member].state.has_process() {
                        let _ = self.spawn(&member, StartReason::Recovery, false);
                    }
                }
            }
            self.drive_recovery(&group, recovery::Input::Tick);
        }
    }
}
