//! Adoption of processes a previous tend left running, and the hand-over of running ones to the next tend.

use super::*;

impl Supervisor {
    /// Leaves every process running for the next tend: stops reading its pipes at a line boundary
    /// (unfinished lines are saved with the state), writes a marker, saves the state.
    pub(super) async fn hand_over(&mut self) {
        let why = match self.shutdown_mode {
            ShutdownMode::Reexec => "tend re-executes itself",
            _ => "tend stopped with --keep-services",
        };
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let service = self.services.get_mut(&name).expect("known");
            let Some(run) = service.run.as_mut() else {
                continue;
            };
            let pid = run.pid;
            let carried = run.runner.suspend().await;
            service.log.try_marker(format!(
                "{why}; pid {pid} keeps running and is adopted by the next tend"
            ));
            if let Some(record) = self.persisted.service_mut(&name).running.as_mut() {
                record.carried = carried;
            }
        }
        self.save_state();
    }

    /// Adopts the processes a previous tend left running (after `tend reexec`, a crash of tend or
    /// `--keep-services`): each saved pid is verified by its start time, watched through a pidfd and
    /// its FIFOs captured again. A pid that is gone or now belongs to another process is forgotten.
    pub(super) fn adopt_running(&mut self) {
        let now = self.clock.now_ms();
        let pipes_dir = self.pipes_dir();
        let mut kept: Vec<OutputPipes> = Vec::new();
        let recorded: Vec<(String, RunRecord)> = self
            .persisted
            .services
            .iter_mut()
            .filter_map(|(name, s)| s.running.take().map(|r| (name.clone(), r)))
            .collect();
        let changed = !recorded.is_empty();
        for (name, record) in recorded {
            let pid = record.identity.pid;
            if !record.identity.is_alive() {
                tracing::info!(
                    service = %name,
                    pid,
                    "the process a previous tend started is gone (or its pid is another process now)"
                );
                if let Some(service) = self.services.get(&name) {
                    service.log.try_marker(format!(
                        "pid {pid} (started by a previous tend) is gone; not adopted"
                    ));
                }
                record.pipes.remove();
                continue;
            }
            let Some(service) = self.services.get(&name) else {
                tracing::warn!(
                    service = %name,
                    pid,
                    "a previous tend left this service running but it is no longer configured; stopping it"
                );
                let _ = process::signal_group(pid, libc::SIGTERM);
                record.pipes.remove();
                continue;
            };
            let watch = match ExitWatch::new(pid) {
                // Verify again now that the pidfd pins the process: the pid cannot be reused any more.
                Ok(watch) if record.identity.is_alive() => watch,
                _ => {
                    record.pipes.remove();
                    continue;
                }
            };
            let capture = match open_pipes_of(&record) {
                Ok((out, err)) => {
                    service
                        .log
                        .capture_pipes(Some(out), Some(err), record.carried.clone())
                }
                Err(err) => {
                    tracing::error!(service = %name, pid, "cannot capture the output of the adopted process: {err}");
                    service.log.try_marker(format!(
                        "adopted pid {pid} but cannot read its output ({err}); restart it to capture again"
                    ));
                    service.log.capture_pipes(
                        None::<tokio::io::Empty>,
                        None::<tokio::io::Empty>,
                        Carried::default(),
                    )
                }
            };
            let run_id = self.next_run_id;
            self.next_run_id += 1;
            let service = self.services.get_mut(&name).expect("known");
            service.log.try_marker(format!(
                "adopted pid {pid} (running since {}, left by a previous tend)",
                crate::clock::format_ms(record.started_ms)
            ));
            let grace = service.cfg.start_grace;
            service.run = Some(Run::watched(
                &self.internal_tx,
                &self.reaped,
                &name,
                run_id,
                watch,
                capture,
                record.started_ms,
                record.mark.clone(),
                service,
            ));
            let ran = (now - record.started_ms).max(0) as u64;
            let state = if ran < grace.as_millis() as u64 {
                service.timer = Some((
                    Instant::now() + grace - Duration::from_millis(ran),
                    Timer::Grace,
                ));
                ServiceState::Starting
            } else {
                ServiceState::Running
            };
            tracing::info!(service = %name, pid, "adopted a running process");
            let _ = self.events.send(Event::Notice {
                name: name.clone(),
                message: format!("adopted pid {pid}"),
            });
            kept.push(record.pipes.clone());
            self.persisted.service_mut(&name).running = Some(RunRecord {
                carried: Carried::default(),
                ..record
            });
            self.set_state(&name, state);
        }
        let keep: Vec<&OutputPipes> = kept.iter().collect();
        process::remove_unused_pipes(&pipes_dir, &keep);
        if changed {
            self.save_state();
        }
    }

    pub(super) fn pipes_dir(&self) -> std::path::PathBuf {
        self.config.supervisor.state_dir.join("pipes")
    }
}

/// Both read ends of an adopted run: its FIFOs by path, or, if someone removed those, the same pipes
/// through the process's own descriptors.
pub(super) fn open_pipes_of(
    record: &RunRecord,
) -> std::io::Result<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Receiver,
)> {
    if record.pipes.exist() {
        return record.pipes.open_readers();
    }
    let pid = record.identity.pid;
    OutputPipes {
        stdout: format!("/proc/{pid}/fd/1").into(),
        stderr: format!("/proc/{pid}/fd/2").into(),
    }
    .open_readers()
}
