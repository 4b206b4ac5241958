//! The published status snapshot: built from the actor's state, sent only when something changed.

use super::*;

impl Supervisor {
    pub(super) fn build_snapshot(&self) -> Snapshot {
        let now = self.clock.now_ms();
        let services = self
            .services
            .iter()
            .map(|(name, s)| {
                let backoff = if s.state == ServiceState::Backoff {
                    s.backoff_until
                } else {
                    None
                };
                let gate = self.gate(name, backoff, now);
                let persisted = self.persisted.services.get(name);
                ServiceStatus {
                    name: name.clone(),
                    state: s.state,
                    pid: s.run.as_ref().map(|r| r.pid),
                    group: s.cfg.group.clone(),
                    port: s.cfg.port,
                    since_ms: s.run.as_ref().map(|r| r.started_ms),
                    restarts: s.starts_this_session.saturating_sub(1),
                    last_exit: s.last_exit.clone(),
                    last_start: self.persisted.last_start(name).cloned(),
                    next_start: NextStart {
                        at_ms: gate.at,
                        hold: gate.hold,
                    },
                    sticky_stop: persisted.map(|p| p.sticky_stop).unwrap_or(false),
                    quick_failures: s.quick_failures,
                    message: s.message.clone(),
                    checks: s.checks.values().filter_map(|c| c.last.clone()).collect(),
                    ready: s.ready,
                    flood_until_ms: s.flood_until.filter(|t| *t > now),
                    starts_24h: persisted
                        .map(|p| {
                            p.starts
                                .iter()
                                .filter(|r| {
                                    now - r.at_ms < 24 * 3600 * 1000
                                        && !matches!(r.reason, StartReason::ReloadCache { .. })
                                })
                                .count() as u32
                        })
                        .unwrap_or(0),
                    log_loss: s.log.write_failure(),
                }
            })
            .collect();
        let recoveries = self
            .persisted
            .recoveries
            .values()
            .map(|r| RecoveryView {
                recovery: r.clone(),
                summary: r.describe(now),
                until_ms: r.wakeup(),
            })
            .collect();
        let accounts = self
            .config
            .groups
            .keys()
            .filter_map(|group| {
                let rules = self.queue_rules(group)?;
                let model = self.flood_model(group);
                Some(AccountView {
                    group: group.clone(),
                    summary: model.summary(rules.tolerance_ms, now, &rules.model),
                    model,
                })
            })
            .collect();
        Snapshot {
            at_ms: now,
            services,
            recoveries,
            accounts,
            config_error: self.config_error.clone(),
            state_warning: self.state_warning.clone(),
            pending_removals: self.config.pending_removals.clone(),
        }
    }

    pub(super) fn publish(&mut self) {
        let snapshot = self.build_snapshot();
        self.snapshot.send_if_modified(|current| {
            // `at_ms` changes every time; only publish real changes.
            let changed = current.services != snapshot.services
                // The summaries' countdowns move on their own; publish what the accounts learned.
                || current.accounts.len() != snapshot.accounts.len()
                || current
                    .accounts
                    .iter()
                    .zip(&snapshot.accounts)
                    .any(|(a, b)| a.model != b.model)
                || current.config_error != snapshot.config_error
                || current.state_warning != snapshot.state_warning
                || current.pending_removals != snapshot.pending_removals
                || current.recoveries.len() != snapshot.recoveries.len()
                || current
                    .recoveries
                    .iter()
                    .zip(&snapshot.recoveries)
                    .any(|(a, b)| a.recovery != b.recovery);
            if changed {
                *current = snapshot;
            }
            changed
        });
    }
}
