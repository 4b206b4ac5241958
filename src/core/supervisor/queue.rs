//! The glue between the actor and each group's start queue ([`start_queue::plan`]) and flood model
//! ([`FloodModel`]).
//!
//! Every automatic start of a group member waits in its group's queue: the actor marks the member
//! `queued` and the group dirty; [`Supervisor::drive_queues`] re-plans dirty groups once per turn of the
//! loop, starts the member whose slot has come and arms each other member's timer at its slot. Requests
//! of people, checks and reloads ask [`Supervisor::gate`], which plans the same queue with the asking
//! member in it. What the services report (flood waits, readiness) and what tend does (starts, given-back
//! starts, cache reloads) are fed to the group's model here. Owns no state of its own: the queue flags
//! live in each [`Service`], the models in the persisted state.

use super::*;
use crate::core::flood_model::{FloodModel, ModelParams, Observation};
use crate::core::policy::Hold;
use crate::core::start_queue::{self, accounting, Candidate, Plan, Rules, Wait};

impl Supervisor {
    /// The group's queue rules, or `None` for a name that is no group.
    pub(super) fn queue_rules(&self, group: &str) -> Option<Rules> {
        let g = self.config.groups.get(group)?;
        let spacing = g.min_start_spacing.as_millis() as Millis;
        Some(Rules {
            group: group.to_string(),
            min_start_spacing_ms: spacing,
            max_starts: g.max_starts,
            window_ms: g.window.as_millis() as Millis,
            tolerance_ms: g.flood_tolerance.map(|d| d.as_millis() as Millis),
            model: ModelParams::new(spacing, self.config.supervisor.output_time_scale),
        })
    }

    /// The group's flood model (empty if nothing was observed yet).
    pub(super) fn flood_model(&self, group: &str) -> FloodModel {
        self.persisted
            .flood_models
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Feeds one observation to the model of `name`'s group (no-op outside a group).
    pub(super) fn observe(&mut self, name: &str, observation: Observation) {
        let Some(group) = self.services.get(name).and_then(|s| s.cfg.group.clone()) else {
            return;
        };
        let Some(rules) = self.queue_rules(&group) else {
            return;
        };
        self.persisted
            .flood_models
            .entry(group.clone())
            .or_default()
            .observe(observation, &rules.model);
        self.queue_dirty.insert(group);
        self.save_state();
    }

    /// The group's counted starts (given-back ones are removed from the history).
    fn group_starts(&self, group: &str) -> Vec<Millis> {
        self.config
            .members_of(group)
            .flat_map(|m| self.persisted.start_times(&m.name))
            .collect()
    }

    /// `name` as a candidate of its group's queue, for a start of `reason`.
    fn candidate(&self, name: &str, reason: StartReason, now: Millis) -> Candidate {
        let service = &self.services[name];
        let backoff = (service.state == ServiceState::Backoff)
            .then_some(service.backoff_until)
            .flatten();
        let own = policy::earliest_start(
            &Limits {
                min_restart_interval: service.cfg.min_restart_interval,
                group: None,
            },
            &self.persisted.start_times(name),
            &[],
            backoff,
            now,
        );
        let zombie = service.zombie_since.is_some();
        Candidate {
            name: name.to_string(),
            file_index: service.cfg.file_index,
            priority: service.cfg.priority,
            reason,
            forced: false,
            down_since: service.down_since.unwrap_or(now),
            own_ready_at: if zombie { now } else { own.at },
            own_hold: if zombie { None } else { own.hold },
        }
    }

    /// The members of `group` waiting in its queue, except `but`.
    fn queued(&self, group: &str, but: Option<&str>, now: Millis) -> Vec<Candidate> {
        self.config
            .members_of(group)
            .filter(|m| Some(m.name.as_str()) != but)
            .filter_map(|m| {
                let s = self.services.get(&m.name)?;
                let sticky = self
                    .persisted
                    .services
                    .get(&m.name)
                    .is_some_and(|p| p.sticky_stop);
                (s.queued && !s.removed && !sticky)
                    .then(|| self.candidate(&m.name, s.pending_reason.clone(), now))
            })
            .collect()
    }

    fn plan(&self, group: &str, candidates: &[Candidate], now: Millis) -> Option<Plan> {
        let rules = self.queue_rules(group)?;
        let nothing_seen = FloodModel::default();
        let model = self
            .persisted
            .flood_models
            .get(group)
            .unwrap_or(&nothing_seen);
        Some(start_queue::plan(
            candidates,
            &rules,
            &self.group_starts(group),
            model,
            now,
        ))
    }

    /// The earliest moment `name` may start and what holds it: its own limits (backoff,
    /// `min_restart_interval`) and, in a group, its place in the group's queue with every member that
    /// waits for a start, the spacing, the budget and the account's flood model.
    pub(super) fn gate(&self, name: &str, backoff_until: Option<Millis>, now: Millis) -> Gate {
        let service = &self.services[name];
        let own = policy::earliest_start(
            &Limits {
                min_restart_interval: service.cfg.min_restart_interval,
                group: None,
            },
            &self.persisted.start_times(name),
            &[],
            backoff_until,
            now,
        );
        let Some(group) = service.cfg.group.clone() else {
            return own;
        };
        let mut candidates = self.queued(&group, Some(name), now);
        let mut me = self.candidate(name, service.pending_reason.clone(), now);
        if service.zombie_since.is_none() {
            // The caller's backoff (a crash restart asks with it, a person without).
            me.own_ready_at = own.at;
            me.own_hold = own.hold.clone();
        }
        candidates.push(me);
        let Some(plan) = self.plan(&group, &candidates, now) else {
            return own;
        };
        match plan.slots.into_iter().find(|s| s.name == name) {
            Some(slot) if slot.at > now => Gate {
                at: slot.at,
                hold: slot.wait.map(|w| hold_of(&group, w)).or(own.hold),
            },
            _ => Gate {
                at: now,
                hold: None,
            },
        }
    }

    /// Puts `name` in its group's queue for an automatic start of `reason`.
    pub(super) fn enqueue(&mut self, name: &str, reason: StartReason, group: String) {
        let now = self.clock.now_ms();
        let service = self.services.get_mut(name).expect("known service");
        service.pending_reason = reason;
        service.queued = true;
        service.timer = None;
        service.down_since.get_or_insert(now);
        let state = if service.backoff_until.is_some() {
            ServiceState::Backoff
        } else {
            ServiceState::Waiting
        };
        self.queue_dirty.insert(group);
        self.set_state(name, state);
    }

    /// Re-plans every group whose queue or account changed since the last turn: starts the member whose
    /// slot has come (one per group per turn: the others are planned again after it) and arms the
    /// others' timers at their slots.
    pub(super) fn drive_queues(&mut self) {
        let dirty = std::mem::take(&mut self.queue_dirty);
        for group in dirty {
            self.drive_queue(&group);
        }
    }

    fn drive_queue(&mut self, group: &str) {
        if self.shutting_down {
            return;
        }
        let now = self.clock.now_ms();
        let candidates = self.queued(group, None, now);
        if candidates.is_empty() {
            return;
        }
        let Some(plan) = self.plan(group, &candidates, now) else {
            return;
        };
        let due = plan.due(now).map(str::to_string);
        for slot in plan.slots {
            let at = self.clock.instant_at(slot.at);
            let Some(service) = self.services.get_mut(&slot.name) else {
                continue;
            };
            let changed = service.slot.as_ref().map(|s| &s.wait) != Some(&slot.wait);
            if changed && slot.at > now {
                if let Some(wait) = &slot.wait {
                    if !matches!(
                        wait,
                        Wait::Own {
                            hold: Hold::Backoff
                        }
                    ) {
                        service.log.try_marker(format!(
                            "next start in {} ({})",
                            human_ms(slot.at - now),
                            wait.describe(group, slot.at, now)
                        ));
                    }
                }
            }
            if service.run.is_none() {
                service.timer = Some((at, Timer::Start));
            }
            // (A zombie keeps its grace timer; the loop wakes for its slot through `zombie_wake`.)
            service.slot = Some(slot);
        }
        if let Some(name) = due {
            let service = self
                .services
                .get_mut(&name)
                .expect("planned members are services");
            service.queued = false;
            service.slot = None;
            service.timer = None;
            let reason = service.pending_reason.clone();
            if service.run.is_some() {
                // A zombie: stop it; the restart follows its exit (the queue granted it now).
                if service.state != ServiceState::Stopping {
                    service.restart_after_stop = Some(PendingRestart {
                        reason,
                        forced: false,
                        reply: None,
                    });
                    let why = "stuck after a raised flood wait; the account may fetch again";
                    self.begin_stop(&name, why);
                }
                self.queue_dirty.insert(group.to_string());
                return;
            }
            let _ = self.spawn(&name, reason, false);
            // The others' slots move with this start.
            self.queue_dirty.insert(group.to_string());
        }
    }

    /// A raised flood wait (over telethon's threshold) in a run that is not ready leaves the service
    /// up with an empty dialog cache: it is queued for a restart, which the queue grants once the
    /// account's flood wait is over. Its own `min_restart_interval` does not hold it: it serves
    /// nothing meanwhile, and the account's model guards the sweep.
    pub(super) fn mark_zombie(&mut self, name: &str, reported_ms: Millis, now: Millis) {
        let Some(attribution) = self
            .services
            .get(name)
            .and_then(|s| s.cfg.group.as_deref())
            .and_then(|g| self.queue_rules(g))
            .map(|rules| rules.model.attribution_ms)
        else {
            return;
        };
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(group) = service.cfg.group.clone() else {
            return;
        };
        // Only the start-up sweep's wait makes a zombie: a raised wait on a later refresh of a service
        // that has been serving leaves its cache as it was.
        let young = service
            .run
            .as_ref()
            .is_some_and(|r| reported_ms - r.started_ms <= attribution);
        if !young
            || service.run.is_none()
            || service.state == ServiceState::Stopping
            || service.ready == Some(true)
            || service.zombie_since.is_some()
        {
            return;
        }
        service.zombie_since = Some(now);
        service.down_since = Some(now);
        service.queued = true;
        service.pending_reason = StartReason::Zombie;
        let note = "stuck after a raised flood wait (HTTP up, empty dialog cache): restarts once                     the account's flood wait is over";
        service.log.try_marker(note.to_string());
        service.message = Some(note.to_string());
        tracing::warn!(service = name, "{note}");
        self.queue_dirty.insert(group);
    }

    /// The earliest slot of a zombie waiting in its group's queue (its restart is not a timer).
    pub(super) fn zombie_wake(&self) -> Option<Millis> {
        self.services
            .values()
            .filter(|s| s.zombie_since.is_some() && s.queued)
            .filter_map(|s| s.slot.as_ref().map(|slot| slot.at))
            .min()
    }

    /// Marks the groups of zombies whose slot has come for re-planning.
    pub(super) fn wake_zombies(&mut self, now: Millis) {
        let due: Vec<String> = self
            .services
            .values()
            .filter(|s| s.zombie_since.is_some() && s.queued)
            .filter(|s| s.slot.as_ref().is_some_and(|slot| slot.at <= now))
            .filter_map(|s| s.cfg.group.clone())
            .collect();
        self.queue_dirty.extend(due);
    }

    /// Evidence that the current run of `name` fetched dialogs, and the model told.
    pub(super) fn run_became_ready(&mut self, name: &str) {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(started) = service.run.as_ref().map(|r| r.started_ms) else {
            return;
        };
        if service.zombie_since.take().is_some() {
            // It recovered on its own: no restart needed.
            service.queued = false;
            service.slot = None;
            service.message = None;
        }
        if service.evidence.ready_at.is_some() {
            return;
        }
        service.evidence.ready_at = Some(now);
        if service.evidence.flood_at.is_none() {
            self.observe(name, Observation::Clean { started, at: now });
        }
    }

    /// After an exit: a start that died before any sign of a dialog fetch (and before the group's
    /// `sweep_after`) gives its place in the start history back.
    pub(super) fn account_for_exit(&mut self, name: &str, started: Millis, now: Millis) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(group) = service.cfg.group.clone() else {
            return;
        };
        let Some(sweep_after) = self.config.groups.get(&group).map(|g| g.sweep_after) else {
            return;
        };
        if service.state == ServiceState::Stopping || self.shutting_down {
            // Stopped by tend: it may have been fetching; only a death of its own gives back.
            return;
        }
        service.evidence.died_at = Some(now);
        let verdict = accounting::account(
            started,
            &service.evidence,
            sweep_after.as_millis() as Millis,
            now,
        );
        let Some(note) = verdict.describe() else {
            return;
        };
        service.log.try_marker(format!(
            "{note} (started {})",
            crate::clock::format_ms(started)
        ));
        service.slot_given_back = Some(note);
        let starts = &mut self.persisted.service_mut(name).starts;
        starts
            .retain(|r| r.at_ms != started || matches!(r.reason, StartReason::ReloadCache { .. }));
        self.observe(name, Observation::Retract { at: started });
    }
}

/// The status words of a queue wait.
fn hold_of(group: &str, wait: Wait) -> Hold {
    let group = group.to_string();
    match wait {
        Wait::Own { hold } => hold,
        Wait::Account { risk } => Hold::Account { group, risk },
        Wait::Spacing => Hold::GroupSpacing { group },
        Wait::Budget => Hold::GroupBudget { group },
        Wait::Behind { name } => Hold::Queue {
            group,
            behind: name,
        },
    }
}
