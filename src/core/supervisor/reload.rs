//! Live reload: switching to a new configuration and applying the difference service by service.

use super::*;

impl Supervisor {
    /// Switches to `config` (already validated as a whole) and applies the difference: added services
    /// start through the gate, removed ones stop and go away, process-relevant changes restart only the
    /// services they concern (now if the gate is open, else at the gate's time), everything else applies
    /// without a restart. Returns one line per thing done.
    pub(super) fn apply_reload(
        &mut self,
        config: Arc<Config>,
        mut logs: BTreeMap<String, ServiceLog>,
    ) -> Vec<String> {
        let diff = crate::config::diff(&self.config, &config);
        self.config = config;
        self.config_error = None;
        let mut done = Vec::new();
        tracing::info!("configuration reloaded: {}", diff.render().trim_end());

        for name in &diff.services_removed {
            let Some(service) = self.services.get_mut(name) else {
                continue;
            };
            service.removed = true;
            service.restart_after_stop = None;
            service.reload_restart = None;
            service
                .log
                .try_marker("removed from the configuration (reload)".to_string());
            if service.state.has_process() {
                service.message = Some("removed from the configuration; stopping".into());
                if service.state != ServiceState::Stopping {
                    self.begin_stop(name, "removed from the configuration");
                }
                done.push(format!("{name}: removed, stopping"));
            } else {
                self.finish_removal(name);
                done.push(format!("{name}: removed"));
            }
        }

        for name in &diff.services_added {
            let Some(cfg) = self.config.services.get(name).cloned() else {
                continue;
            };
            if let Some(service) = self.services.get_mut(name) {
                // Removed by an earlier reload and still stopping: it stays, with its new settings.
                service.removed = false;
                service.cfg = cfg;
                service.message =
                    Some("added back while it was stopping: `tend start` starts it".into());
                if let Some(log) = logs.remove(name) {
                    tokio::spawn(async move { log.close().await });
                }
                done.push(format!(
                    "{name}: added back while stopping; start it by hand"
                ));
                continue;
            }
            let log = match logs
                .remove(name)
                .map(Ok)
                .unwrap_or_else(|| open_log(&self.config, &cfg))
            {
                Ok(log) => log,
                Err(err) => {
                    tracing::error!("{err}");
                    done.push(format!("{name}: not added: {err}"));
                    continue;
                }
            };
            self.services
                .insert(name.clone(), Service::new(cfg.clone(), log));
            let sticky = self
                .persisted
                .services
                .get(name)
                .is_some_and(|p| p.sticky_stop);
            let what = if sticky {
                self.set_message(
                    name,
                    Some("stopped by hand (sticky): start it by hand".into()),
                );
                "stopped by hand earlier (sticky), not started".to_string()
            } else if !cfg.autostart {
                "autostart off, not started".to_string()
            } else {
                self.auto_start(name, StartReason::Reload, true);
                self.describe_start(name)
            };
            done.push(format!("{name}: added, {what}"));
        }

        for (name, keys) in &diff.services_restart {
            let (Some(cfg), Some(service)) = (
                self.config.services.get(name).cloned(),
                self.services.get_mut(name),
            ) else {
                continue;
            };
            service.update_config(cfg);
            let keys = keys.join(", ");
            service.log.try_marker(format!(
                "configuration changed ({keys}): a restart applies it"
            ));
            let what = self.restart_for_reload(name);
            done.push(format!("{name}: changed ({keys}), {what}"));
        }

        for (name, keys) in &diff.services_updated {
            let (Some(cfg), Some(service)) = (
                self.config.services.get(name).cloned(),
                self.services.get_mut(name),
            ) else {
                continue;
            };
            service.update_config(cfg);
            done.push(format!(
                "{name}: changed ({}), applied without a restart",
                keys.join(", ")
            ));
        }

        for name in &diff.groups_changed {
            done.push(format!("group {name}: changed, applies to the next start"));
        }

        // What the core remembers of a check goes with the check: removed or redefined checks start
        // over here (the measured history, kept by the monitor, stays).
        let checks = &self.config.checks;
        for (name, service) in self.services.iter_mut() {
            service.checks.retain(|check, _| {
                checks.get(check).is_some_and(|c| c.services.contains(name))
                    && !diff.checks_changed.contains(check)
            });
        }
        for (names, what) in [
            (&diff.checks_added, "added"),
            (&diff.checks_removed, "removed"),
            (&diff.checks_changed, "changed, its history is kept"),
        ] {
            for name in names {
                done.push(format!("check {name}: {what}"));
            }
        }
        if diff.alerts_changed {
            done.push("alerts: changed".to_string());
        }
        for (key, change) in &diff.needs_tend_restart {
            done.push(format!(
                "[supervisor] {key}: {change}: needs tend restart (the running tend keeps the old value)"
            ));
        }
        done
    }

    /// Restarts a service whose process-relevant settings changed, if the gate allows it now; otherwise
    /// schedules the restart at the gate's time. Says what it did.
    pub(super) fn restart_for_reload(&mut self, name: &str) -> String {
        let now = self.clock.now_ms();
        let service = &self.services[name];
        if !service.state.has_process() || service.state == ServiceState::Stopping {
            return "applies at its next start".into();
        }
        if let Some(message) = self.recovery_hold(name) {
            return format!("not restarted now ({message}); applies at its next start");
        }
        let gate = self.gate(name, None, now);
        match gate.hold.clone().filter(|_| !gate.is_open(now)) {
            None => {
                let service = self.services.get_mut(name).expect("known service");
                service.restart_after_stop = Some(PendingRestart {
                    reason: StartReason::Reload,
                    forced: false,
                    reply: None,
                });
                self.begin_stop(name, "configuration changed");
                "restarting now".into()
            }
            Some(hold) => {
                let text = format!(
                    "restart held by {hold}: it restarts in {}",
                    human_ms(gate.at - now)
                );
                let at = self.clock.instant_at(gate.at);
                let service = self.services.get_mut(name).expect("known service");
                service.reload_restart = Some(at);
                service
                    .log
                    .try_marker(format!("configuration changed; {text}"));
                service.message = Some(format!("configuration changed; {text}"));
                text
            }
        }
    }

    /// What became of an automatic start just asked for, in a few words.
    pub(super) fn describe_start(&self, name: &str) -> String {
        let service = &self.services[name];
        match service.state {
            ServiceState::Starting | ServiceState::Running => format!(
                "started (pid {})",
                service.run.as_ref().map(|r| r.pid).unwrap_or_default()
            ),
            ServiceState::Waiting | ServiceState::Backoff => {
                let now = self.clock.now_ms();
                let gate = self.gate(name, service.backoff_until, now);
                match (&service.message, gate.hold) {
                    (Some(message), _) => format!("waiting: {message}"),
                    (None, Some(hold)) => {
                        format!("starts in {} ({hold})", human_ms(gate.at - now))
                    }
                    (None, None) => "starting".into(),
                }
            }
            state => match &service.message {
                Some(message) => format!("{state}: {message}"),
                None => state.to_string(),
            },
        }
    }

    /// Drops a service the configuration no longer has, once it has no process.
    pub(super) fn finish_removal(&mut self, name: &str) {
        let Some(service) = self.services.remove(name) else {
            return;
        };
        let _ = self.events.send(Event::StateChanged {
            name: name.to_string(),
            from: service.state,
            to: ServiceState::Stopped,
            at_ms: self.clock.now_ms(),
        });
        for waiter in service.stop_waiters {
            let _ = waiter.send(ActionResult {
                name: name.to_string(),
                outcome: Outcome::Done {
                    message: "stopped (removed from the configuration)".into(),
                },
            });
        }
        tracing::info!(service = name, "removed from the configuration");
        let log = service.log;
        log.try_marker("stopped; removed from the configuration".to_string());
        tokio::spawn(async move { log.close().await });
    }
}
