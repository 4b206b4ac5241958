//! The supervisor actor: owns every service's runtime state and performs every start and stop.
//!
//! One task runs [`Supervisor::run`]: a loop over a closed set of inputs (commands, runner messages,
//! timers, SIGCHLD, shutdown); at the end of each turn it drives the groups' start queues and publishes
//! the snapshot. Runner tasks (`runner.rs`, one per run) own the process's exit watch, capture and
//! signals and report its exit back as an [`Internal`] message; the state writer (`persist.rs`) and the
//! `/reload_cache` requests run in tasks of their own. None of them touches service state. This file
//! holds the struct, the loop and the dispatch; each concern has its own file beside it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::check_result::Status;
use crate::clock::{human_ms, Clock, Millis};
use crate::config::{Config, FailAction, ServiceConfig};
use crate::core::flood_model::Observation;
use crate::core::policy::{
    self, AfterExit, CheckTrack, CheckVerdict, DownState, Gate, Judged, Limits, RunEnd,
};
use crate::core::{
    AccountView, ActionResult, CheckReport, CheckView, Command, CoreHandle, Event, ExitInfo,
    FloodReport, NextStart, Outcome, RecoveryView, ServiceState, ServiceStatus, ShutdownMode,
    Snapshot,
};
use crate::logs::{Capture, Carried, LogSettings, ServiceLog};
use crate::process::{self, ExitStatus, ExitWatch, OutputPipes, SpawnSpec};
use crate::recovery::{self, Recovery};
use crate::state::{PersistedState, RunRecord, StartReason, StartRecord, StateStore};

mod adopt;
mod commands;
mod flood;
mod lifecycle;
mod persist;
mod queue;
mod recoveries;
mod reload;
mod runner;
mod service;
mod signal;
mod snapshot;
mod verdicts;

use persist::Persister;
use runner::*;
use service::*;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot open the log of service {service}: {source}")]
    Log {
        service: String,
        source: crate::logs::LogError,
    },
}

/// Messages from tend's own tasks to the actor.
#[derive(Debug)]
enum Internal {
    Exited {
        name: String,
        run_id: u64,
        pid: u32,
        status: ExitStatus,
    },
    /// A `/reload_cache` request asked at `asked_ms` was answered (or failed).
    CacheReloaded {
        name: String,
        asked_ms: Millis,
        /// Whether the service may have fetched dialogs (false: not connected, or not ready).
        fetched: bool,
        text: String,
    },
}

pub struct Supervisor {
    config: Arc<Config>,
    clock: Clock,
    services: BTreeMap<String, Service>,
    /// Start history and sticky stops; saved after every change.
    persisted: PersistedState,
    /// Writes `persisted` off the actor's thread.
    persist: Persister,
    commands: mpsc::Receiver<Command>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Sender<Snapshot>,
    shutdown: CancellationToken,
    /// Set once shutdown began: no more starts, exit when every process is gone.
    shutting_down: bool,
    /// What the shutdown does with the services.
    shutdown_mode: ShutdownMode,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    next_run_id: u64,
    /// For the services' own HTTP endpoints (`/reload_cache`).
    http: reqwest::Client,
    /// Why the last reload failed; cleared by a good one.
    config_error: Option<String>,
    /// What was wrong with the state file at start (corrupt or missing, and what tend did).
    state_warning: Option<String>,
    /// Counts the times orphans were reaped; runners cleaning up a process group wait on it.
    reaped: watch::Sender<u64>,
    /// A second termination signal came: every stop, now or later, skips its grace.
    hurry: bool,
    /// Groups whose start queue or account changed: re-planned at the end of this turn of the loop.
    queue_dirty: std::collections::BTreeSet<String>,
}

impl Supervisor {
    /// Builds the actor and its handle. Loads persisted state and opens every service's log; starts nothing.
    pub fn new(
        config: Arc<Config>,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Result<(Supervisor, CoreHandle), SupervisorError> {
        let store = StateStore::new(&config.supervisor.state_dir);
        let loaded = store.load(clock.now_ms())?;
        if let Some(warning) = &loaded.warning {
            tracing::warn!("{warning}");
        }
        let mut services = BTreeMap::new();
        for (name, cfg) in &config.services {
            let log = open_log(&config, cfg)?;
            services.insert(name.clone(), Service::new(cfg.clone(), log));
        }
        let (commands_tx, commands) = mpsc::channel(256);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
        let handle = CoreHandle {
            commands: commands_tx,
            events: events.clone(),
            snapshot: snapshot_rx,
        };
        let mut supervisor = Supervisor {
            config,
            clock,
            services,
            persisted: loaded.state,
            persist: Persister::spawn(store),
            commands,
            internal_tx,
            internal_rx,
            events,
            snapshot,
            shutdown,
            shutting_down: false,
            shutdown_mode: ShutdownMode::Stop,
            shutdown_waiters: Vec::new(),
            next_run_id: 1,
            http: reqwest::Client::new(),
            config_error: None,
            state_warning: loaded.warning.clone(),
            reaped: watch::channel(0).0,
            hurry: false,
            queue_dirty: Default::default(),
        };
        supervisor.publish();
        Ok((supervisor, handle))
    }

    /// Every service's log handle, so watchers can subscribe before the first start.
    pub fn logs(&self) -> BTreeMap<String, ServiceLog> {
        self.services
            .iter()
            .map(|(name, s)| (name.clone(), s.log.clone()))
            .collect()
    }

    /// Runs until shutdown (the token or a Shutdown command) and every process is gone, or, when the
    /// services are kept running, until every capture is handed over. Returns what it did.
    pub async fn run(mut self) -> ShutdownMode {
        let mut sigchld = signal(SignalKind::child()).ok();
        self.adopt_running();
        self.autostart();
        loop {
            if self.shutting_down && self.may_finish() {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                Some(cmd) = self.commands.recv() => self.handle_command(cmd),
                Some(msg) = self.internal_rx.recv() => self.handle_internal(msg),
                _ = crate::clock::sleep_until_opt(deadline) => self.fire_timers(),
                _ = crate::process::next_signal(&mut sigchld) => self.reap_orphans(),
                _ = self.shutdown.cancelled(), if !self.shutting_down => {
                    self.begin_shutdown(ShutdownMode::configured(&self.config))
                }
            }
            self.drive_queues();
            self.tend_recoveries();
            self.publish();
        }
        if self.shutdown_mode.keeps_services() {
            self.hand_over().await;
        }
        // The next tend (or the re-executed image) reads what was saved last.
        self.persist.flush().await;
        for waiter in self.shutdown_waiters.drain(..) {
            let _ = waiter.send(());
        }
        for service in self.services.values() {
            service.log.close().await;
        }
        match self.shutdown_mode {
            ShutdownMode::Stop => tracing::info!("all services stopped; core finished"),
            mode => tracing::info!(
                ?mode,
                "services left running for the next tend; core finished"
            ),
        }
        self.shutdown_mode
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.build_snapshot());
            }
            Command::Start {
                name,
                force,
                by,
                reply,
            } => {
                let result = self.manual_start(&name, force, &by);
                let _ = reply.send(result);
            }
            Command::Stop { name, by, reply } => self.manual_stop(&name, &by, reply),
            Command::Restart {
                name,
                force,
                by,
                schedule,
                reply,
            } => {
                let reason = match schedule {
                    Some(entry) => StartReason::Schedule { entry },
                    None => StartReason::Manual { by: by.clone() },
                };
                self.manual_restart(&name, force, reason, reply)
            }
            Command::Log { name, reply } => {
                let _ = reply.send(self.services.get(&name).map(|s| s.log.clone()));
            }
            Command::Shutdown { mode, reply } => {
                self.shutdown_waiters.push(reply);
                if !self.shutting_down {
                    self.begin_shutdown(mode);
                }
            }
            Command::Signal {
                name,
                signal,
                by,
                reply,
            } => {
                let _ = reply.send(self.signal_service(&name, signal, &by));
            }
            Command::Report(report) => self.handle_report(report),
            Command::Flood(report) => self.handle_flood(report),
            Command::Recover { group, by, reply } => {
                let outcome = self.start_recovery(&group, &format!("manual by {by}"));
                let _ = reply.send(ActionResult {
                    name: group,
                    outcome,
                });
            }
            Command::CancelRecovery { group, by, reply } => {
                let outcome = self.cancel_recovery(&group, &by);
                let _ = reply.send(ActionResult {
                    name: group,
                    outcome,
                });
            }
            Command::ReloadCache {
                name,
                force,
                by,
                reply,
            } => {
                let outcome = self.reload_cache(&name, force, &by);
                let _ = reply.send(ActionResult { name, outcome });
            }
            Command::Reload {
                config,
                logs,
                reply,
            } => {
                let done = self.apply_reload(config, logs);
                let _ = reply.send(done);
            }
            Command::ConfigError { error } => self.config_error = error,
            Command::Hurry => self.hurry(),
        }
    }

    fn all_down(&self) -> bool {
        self.services.values().all(|s| s.run.is_none())
    }

    /// Whether a shutdown is complete: every process gone, or, when they are kept running, every stop
    /// that was under way finished (a service being stopped is not left half-stopped to the next tend).
    fn may_finish(&self) -> bool {
        if self.shutdown_mode.keeps_services() {
            self.services
                .values()
                .all(|s| s.state != ServiceState::Stopping || s.run.is_none())
        } else {
            self.all_down()
        }
    }

    fn handle_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Exited {
                name,
                run_id,
                pid,
                status,
            } => self.handle_exit(&name, run_id, pid, status),
            Internal::CacheReloaded {
                name,
                asked_ms,
                fetched,
                text,
            } => self.cache_reloaded(&name, asked_ms, fetched, &text),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.queue_dirty.is_empty() {
            // A start the last turn made moved the others' slots: plan again at once.
            return Some(Instant::now());
        }
        let recoveries = self
            .persisted
            .recoveries
            .values()
            .filter_map(|r| r.wakeup())
            .map(|ms| self.clock.instant_at(ms));
        let zombies = self.zombie_wake().map(|ms| self.clock.instant_at(ms));
        self.services
            .values()
            .filter_map(|s| s.timer.map(|(at, _)| at))
            .chain(zombies)
            .chain(self.services.values().filter_map(|s| s.reload_restart))
            .chain(recoveries)
            .min()
    }

    fn fire_timers(&mut self) {
        let now_ms = self.clock.now_ms();
        self.wake_zombies(now_ms);
        let due: Vec<String> = self
            .persisted
            .recoveries
            .iter()
            .filter(|(_, r)| r.wakeup().is_some_and(|at| at <= now_ms))
            .map(|(g, _)| g.clone())
            .collect();
        for group in due {
            self.drive_recovery(&group, recovery::Input::Tick);
        }
        let now = Instant::now();
        let reloads: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.reload_restart.is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in reloads {
            self.services.get_mut(&name).expect("known").reload_restart = None;
            self.restart_for_reload(&name);
        }
        let due: Vec<(String, Timer)> = self
            .services
            .iter()
            .filter_map(|(name, s)| match s.timer {
                Some((at, timer)) if at <= now => Some((name.clone(), timer)),
                _ => None,
            })
            .collect();
        for (name, timer) in due {
            let service = self.services.get_mut(&name).expect("known");
            service.timer = None;
            match timer {
                Timer::Grace => {
                    if service.state == ServiceState::Starting {
                        service.quick_failures = 0;
                        service.message = None;
                        self.set_state(&name, ServiceState::Running);
                    }
                }
                Timer::Start => {
                    if service.queued {
                        if let Some(group) = service.cfg.group.clone() {
                            self.queue_dirty.insert(group);
                        }
                    } else if matches!(service.state, ServiceState::Waiting | ServiceState::Backoff)
                    {
                        let reason = service.pending_reason.clone();
                        self.auto_start(&name, reason, true);
                    }
                }
            }
        }
    }

    fn reap_orphans(&mut self) {
        let mut ours: HashSet<u32> = self
            .services
            .values()
            .filter_map(|s| s.run.as_ref().map(|r| r.pid))
            .collect();
        // Check plugins and the reexec preflight are tokio's children too: reaping one steals its
        // exit status.
        let reaped = process::with_tracked_children(|plugins| {
            ours.extend(plugins);
            process::reap_orphans(&ours)
        });
        for pid in &reaped {
            tracing::debug!(pid, "reaped orphan");
        }
        if !reaped.is_empty() {
            self.reaped.send_modify(|n| *n += 1);
        }
    }

    /// The second termination signal: SIGKILL every group being stopped, and every stop from now on
    /// skips its grace.
    fn hurry(&mut self) {
        self.hurry = true;
        for service in self.services.values() {
            if let Some(run) = &service.run {
                run.runner.send(RunControl::Hurry);
            }
        }
    }

    fn set_state(&mut self, name: &str, to: ServiceState) {
        let service = self.services.get_mut(name).expect("known service");
        let from = service.state;
        if from == to {
            return;
        }
        service.state = to;
        let waits = matches!(to, ServiceState::Waiting | ServiceState::Backoff);
        // A zombie waits in the queue with its process up (see `Service::zombie_since`).
        let zombie = service.zombie_since.is_some() && to.has_process();
        if !waits && !zombie && service.queued {
            // Out of the waiting states is out of the group's queue (stopped, started, fatal).
            service.queued = false;
            service.slot = None;
            if let Some(group) = service.cfg.group.clone() {
                self.queue_dirty.insert(group);
            }
        }
        let _ = self.events.send(Event::StateChanged {
            name: name.to_string(),
            from,
            to,
            at_ms: self.clock.now_ms(),
        });
    }

    fn set_message(&mut self, name: &str, message: Option<String>) {
        if let Some(service) = self.services.get_mut(name) {
            service.message = message;
        }
    }

    fn save_state(&self) {
        self.persist.save(&self.persisted);
    }
}
