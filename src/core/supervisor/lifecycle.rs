//! The lifecycle of a run: the start gate, spawning, stopping, exits and the restart policy after them.

use super::*;

impl Supervisor {
    pub(super) fn autostart(&mut self) {
        self.resume_recoveries();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let sticky = self.persisted.service_mut(&name).sticky_stop;
            let service = &self.services[&name];
            if sticky {
                self.set_message(
                    &name,
                    Some("stopped by hand (sticky): start it by hand".into()),
                );
                continue;
            }
            if !service.cfg.autostart || service.run.is_some() {
                continue;
            }
            self.auto_start(&name, StartReason::Initial, true);
        }
    }

    /// An automatic start (autostart, crash restart): now if the gate is open and `now_ok`, else at the
    /// gate's time through the timer. Restarts after an exit always take the timer path, so a command that
    /// fails at once cannot recurse into another spawn.
    pub(super) fn auto_start(&mut self, name: &str, reason: StartReason, now_ok: bool) {
        if self.shutting_down
            || self.services[name].removed
            || self.persisted.service_mut(name).sticky_stop
        {
            return;
        }
        if let Some(message) = self.recovery_hold(name) {
            // The recovery starts its members itself, one at a time.
            let service = self.services.get_mut(name).expect("known service");
            service.timer = None;
            service.queued = false;
            service.backoff_until = None;
            service.message = Some(message);
            self.set_state(name, ServiceState::Waiting);
            return;
        }
        if let Some(group) = self.services[name].cfg.group.clone() {
            // Group members start in their group's queue, longest-down first (see queue.rs); the
            // queue is driven at the end of this turn of the loop, so a start that fails at once
            // cannot recurse into another spawn.
            self.enqueue(name, reason, group);
            if now_ok {
                self.drive_queues();
            }
            return;
        }
        let now = self.clock.now_ms();
        let backoff_until = self.services[name].backoff_until;
        let gate = self.gate(name, backoff_until, now);
        if gate.is_open(now) && now_ok {
            let _ = self.spawn(name, reason, false);
            return;
        }
        let at = self.clock.instant_at(gate.at);
        let service = self.services.get_mut(name).expect("known service");
        service.pending_reason = reason;
        service.timer = Some((at, Timer::Start));
        let state = if service.backoff_until.is_some() {
            ServiceState::Backoff
        } else {
            ServiceState::Waiting
        };
        if let Some(hold) = &gate.hold {
            if !matches!(hold, policy::Hold::Backoff) {
                let msg = format!("next start in {} ({hold})", human_ms(gate.at - now));
                self.services[name].log.try_marker(msg);
            }
        }
        self.set_state(name, state);
    }

    /// Spawns the service now. The caller has checked the gate (or forces).
    pub(super) fn spawn(&mut self, name: &str, reason: StartReason, forced: bool) -> Outcome {
        let now = self.clock.now_ms();
        let service = self.services.get(name).expect("known service");
        if let Some(port) = service.cfg.port {
            if let Some(holder) = process::port_holder(port) {
                let message = format!("cannot start: {holder}; stop that process or change `port`");
                self.spawn_failed(name, reason, &message);
                return Outcome::Failed { message };
            }
        }
        let spec = SpawnSpec {
            command: &service.cfg.command,
            cwd: &service.cfg.cwd,
            env: &service.cfg.env,
        };
        let run_id = self.next_run_id;
        let pipes = OutputPipes::for_run(&self.pipes_dir(), name, &format!("{now}-{run_id}"));
        // The readers open before the service does, so not a byte it writes goes unread.
        let spawned = pipes
            .create()
            .and_then(|()| pipes.open_readers())
            .map_err(|source| process::SpawnError::Io {
                program: format!("the output pipes in {}", self.pipes_dir().display()),
                source,
            })
            .and_then(|readers| process::spawn_service(&spec, &pipes).map(|s| (s, readers)));
        let (spawned, (out, err)) = match spawned {
            Ok(ok) => ok,
            Err(err) => {
                pipes.remove();
                let message = format!("cannot start: {err}");
                self.spawn_failed(name, reason, &message);
                return Outcome::Failed { message };
            }
        };
        let pid = spawned.identity.pid;
        let record = StartRecord {
            at_ms: now,
            reason: reason.clone(),
            forced,
        };
        self.persisted.record_start(name, record.clone());
        self.persisted.service_mut(name).running = Some(RunRecord {
            identity: spawned.identity.clone(),
            pipes,
            started_ms: now,
            carried: Carried::default(),
        });
        self.save_state();

        self.next_run_id += 1;
        let service = self.services.get_mut(name).expect("known service");
        let forced_note = if forced { ", forced" } else { "" };
        service
            .log
            .try_marker(format!("spawned pid {pid} (reason: {reason}{forced_note})"));
        let capture = service
            .log
            .capture_pipes(Some(out), Some(err), Carried::default());
        service.run = Some(Run::watched(
            &self.internal_tx,
            &self.reaped,
            name,
            run_id,
            spawned.exit,
            capture,
            now,
            service,
        ));
        service.backoff_until = None;
        service.queued = false;
        service.slot = None;
        service.down_since = None;
        service.evidence = Default::default();
        service.slot_given_back = None;
        service.zombie_since = None;
        let grouped = service.cfg.group.clone();
        // Whatever started it runs the current settings: a restart a reload had scheduled is done.
        service.reload_restart = None;
        service.starts_this_session += 1;
        service.ready = None;
        for slot in service.checks.values_mut() {
            slot.track.failures = 0;
            slot.track.acted = false;
        }
        if service.quick_failures == 0 {
            // A crash-loop or spawn-failure note stays until the run outlives start_grace.
            service.message = None;
        }
        let grace = service.cfg.start_grace;
        service.timer = Some((Instant::now() + grace, Timer::Grace));

        tracing::info!(service = name, pid, %reason, forced, "spawned");
        if grouped.is_some() {
            self.observe(
                name,
                Observation::Sweep {
                    at: now,
                    ours: true,
                },
            );
        }
        let _ = self.events.send(Event::Spawned {
            name: name.to_string(),
            pid,
            start: record,
        });
        self.set_state(name, ServiceState::Starting);
        if grace.is_zero() {
            self.services.get_mut(name).expect("known").timer = None;
            self.set_state(name, ServiceState::Running);
        }
        Outcome::Done {
            message: format!("started (pid {pid})"),
        }
    }

    /// A start that never produced a process counts as a quick failure, so a bad command or a held port
    /// backs off and eventually gives up like a crash loop does.
    pub(super) fn spawn_failed(&mut self, name: &str, reason: StartReason, message: &str) {
        tracing::warn!(service = name, "{message}");
        self.services[name].log.try_marker(message.to_string());
        let _ = self.events.send(Event::Notice {
            name: name.to_string(),
            message: message.to_string(),
        });
        let end = RunEnd {
            success: false,
            requested: false,
            ran: 0,
        };
        let reason = match reason {
            StartReason::Crash { .. } | StartReason::Initial => reason,
            _ => StartReason::Crash {
                code: None,
                signal: None,
            },
        };
        self.after_run(name, end, reason);
        self.set_message(name, Some(message.to_string()));
    }

    pub(super) fn begin_stop(&mut self, name: &str, why: &str) {
        let service = self.services.get_mut(name).expect("known service");
        let Some(run) = &service.run else {
            return;
        };
        // The runner owns the escalation (stop signal, stop_timeout, SIGKILL); no start or grace is due.
        run.runner.send(RunControl::Stop {
            why: why.to_string(),
        });
        if self.hurry {
            run.runner.send(RunControl::Hurry);
        }
        service.timer = None;
        self.set_state(name, ServiceState::Stopping);
    }

    pub(super) fn begin_shutdown(&mut self, mode: ShutdownMode) {
        self.shutting_down = true;
        self.shutdown_mode = mode;
        if mode.keeps_services() {
            tracing::info!(?mode, "shutting down: leaving the services running");
            for service in self.services.values_mut() {
                // A stop already asked for is finished first (its runner escalates); nothing starts.
                service.timer = None;
                service.reload_restart = None;
            }
            return;
        }
        tracing::info!("shutting down: stopping every service");
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let service = self.services.get_mut(&name).expect("known");
            if service.state.has_process() {
                if service.state != ServiceState::Stopping {
                    self.begin_stop(&name, "tend is shutting down");
                }
            } else {
                service.timer = None;
                if matches!(service.state, ServiceState::Waiting | ServiceState::Backoff) {
                    self.set_state(&name, ServiceState::Stopped);
                }
            }
        }
    }

    pub(super) fn handle_exit(&mut self, name: &str, run_id: u64, pid: u32, status: ExitStatus) {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(run) = service.run.take_if(|r| r.id == run_id) else {
            return;
        };
        // Whatever it was stuck in, that run is over.
        service.zombie_since = None;
        let (code, signal) = match status {
            ExitStatus::Code(code) => (Some(code), None),
            ExitStatus::Signal(signal) => (None, Some(signal)),
            ExitStatus::Unknown => (None, None),
        };
        if let Some(record) = self.persisted.service_mut(name).running.take() {
            record.pipes.remove();
            self.save_state();
        }
        let service = self.services.get_mut(name).expect("known");
        let exit = ExitInfo {
            at_ms: now,
            code,
            signal,
            ran_ms: now - run.started_ms,
        };
        let requested = service.state == ServiceState::Stopping || self.shutting_down;
        service.log.try_marker(format!(
            "pid {pid} exited: {} after {}{}",
            describe_exit(&exit),
            human_ms(exit.ran_ms),
            if requested { " (requested)" } else { "" }
        ));
        tracing::info!(service = name, pid, exit = %exit, requested, "exited");
        service.last_exit = Some(exit.clone());
        service.timer = None;
        let _ = self.events.send(Event::Exited {
            name: name.to_string(),
            pid,
            exit: exit.clone(),
        });
        if self.services[name].removed {
            self.finish_removal(name);
            return;
        }
        self.account_for_exit(name, run.started_ms, now);
        self.services.get_mut(name).expect("known").down_since = Some(now);
        let end = RunEnd {
            success: code == Some(0),
            requested,
            ran: exit.ran_ms,
        };
        self.after_run(name, end, StartReason::Crash { code, signal });
    }

    /// Applies the restart policy after a run ended (or a start failed).
    pub(super) fn after_run(&mut self, name: &str, end: RunEnd, crash_reason: StartReason) {
        let now = self.clock.now_ms();
        let service = self.services.get_mut(name).expect("known service");
        let decision = policy::after_exit(
            service.cfg.restart,
            &service.cfg.backoff,
            service.cfg.start_grace,
            end,
            service.quick_failures,
        );
        match decision {
            AfterExit::StayDown { state } => {
                if !end.requested {
                    service.quick_failures = 0;
                }
                let waiters: Vec<_> = service.stop_waiters.drain(..).collect();
                let pending = service.restart_after_stop.take();
                let new_state = match state {
                    DownState::Stopped => ServiceState::Stopped,
                    DownState::Exited => ServiceState::Exited,
                };
                self.set_state(name, new_state);
                for waiter in waiters {
                    let _ = waiter.send(ActionResult {
                        name: name.to_string(),
                        outcome: Outcome::Done {
                            message: "stopped".into(),
                        },
                    });
                }
                if let Some(mut pending) = pending {
                    let outcome = if self.shutting_down {
                        Outcome::Failed {
                            message: "tend is shutting down".into(),
                        }
                    } else {
                        // The gate was checked when the restart was asked for.
                        self.spawn(name, pending.reason.clone(), pending.forced)
                    };
                    if let Some(reply) = pending.reply.take() {
                        let _ = reply.send(ActionResult {
                            name: name.to_string(),
                            outcome,
                        });
                    }
                }
            }
            AfterExit::Restart {
                delay,
                quick_failures,
                slow_retry,
            } => {
                service.quick_failures = quick_failures;
                service.backoff_until = Some(now + delay.as_millis() as Millis);
                let message = slow_retry.then(|| {
                    format!(
                        "crash-looping ({quick_failures} quick failures in a row): retrying every {}",
                        human_ms(delay.as_millis() as Millis)
                    )
                });
                if let Some(m) = &message {
                    service.log.try_marker(m.clone());
                }
                self.set_state(name, ServiceState::Backoff);
                self.auto_start(name, crash_reason, false);
                if message.is_some() {
                    self.set_message(name, message);
                }
            }
            AfterExit::GiveUp { quick_failures } => {
                service.quick_failures = quick_failures;
                let message = format!(
                    "crash-looping: {quick_failures} quick failures in a row; gave up, waiting for \
                     `tend start {name}`"
                );
                service.log.try_marker(message.clone());
                tracing::error!(service = name, "{message}");
                let _ = self.events.send(Event::Notice {
                    name: name.to_string(),
                    message: message.clone(),
                });
                self.set_message(name, Some(message));
                self.set_state(name, ServiceState::Fatal);
            }
        }
    }
}

pub(super) fn describe_exit(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by {}", process::signal_name(sig)),
        _ => "unknown status".into(),
    }
}
