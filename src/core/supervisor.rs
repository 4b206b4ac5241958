//! The supervisor actor: owns every service's runtime state and performs every start and stop.
//!
//! One task runs [`Supervisor::run`]: a loop over a closed set of inputs (commands, process exits, timers,
//! SIGCHLD, shutdown). Waiter tasks (one per running process) own the `Child` and report its exit back as
//! an [`Internal`] message; they never touch service state.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::policy::{
    self, AfterExit, CheckTrack, CheckVerdict, DownState, Gate, GroupLimits, Judged, Limits, RunEnd,
};
use super::{
    ActionResult, CheckReport, CheckView, Command, CoreHandle, Event, ExitInfo, NextStart, Outcome,
    RecoveryView, ServiceState, ServiceStatus, ShutdownMode, Snapshot,
};
use crate::checks::probe::Status;
use crate::clock::{human_ms, Clock, Millis};
use crate::config::{Config, FailAction, ServiceConfig};
use crate::logs::{Capture, Carried, LogSettings, ServiceLog};
use crate::process::{self, ExitStatus, ExitWatch, OutputPipes, SpawnSpec};
use crate::recovery::{self, Recovery};
use crate::state::{PersistedState, RunRecord, StartReason, StartRecord, StateStore};

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
}

/// Asks a run's waiter to stop capturing and hand over its unfinished lines (tend is leaving the
/// process running).
type SuspendRequest = oneshot::Sender<Carried>;

/// Why the actor woke a service up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A held-back start may be due (Waiting / Backoff).
    Start,
    /// `start_grace` elapsed: Starting -> Running.
    Grace,
    /// `stop_timeout` elapsed: escalate to SIGKILL.
    Kill,
}

/// The current process of a service.
#[derive(Debug)]
struct Run {
    id: u64,
    pid: u32,
    started_ms: Millis,
    /// To its waiter: stop capturing and hand over (see [`ShutdownMode::keeps_services`]).
    suspend: Option<oneshot::Sender<SuspendRequest>>,
}

impl Run {
    /// A run whose exit and output are watched by a new waiter task (see [`spawn_waiter`]).
    fn watched(
        tx: &mpsc::UnboundedSender<Internal>,
        name: &str,
        id: u64,
        exit: ExitWatch,
        capture: Capture,
        started_ms: Millis,
        service: &Service,
    ) -> Run {
        let pid = exit.pid();
        let suspend = spawn_waiter(WaiterArgs {
            tx: tx.clone(),
            name: name.to_string(),
            run_id: id,
            exit,
            capture,
            stop_signal: service.cfg.stop_signal,
            stop_timeout: service.cfg.stop_timeout,
            log: service.log.clone(),
        });
        Run {
            id,
            pid,
            started_ms,
            suspend: Some(suspend),
        }
    }
}

/// A start waiting for the running process to stop first (restart).
#[derive(Debug)]
struct PendingRestart {
    reason: StartReason,
    forced: bool,
    reply: Option<oneshot::Sender<ActionResult>>,
}

/// Runtime state of one service; only the actor has it.
#[derive(Debug)]
struct Service {
    /// Its configuration.
    cfg: ServiceConfig,
    state: ServiceState,
    /// The live process, while there is one.
    run: Option<Run>,
    /// The one pending wake-up, if any.
    timer: Option<(Instant, Timer)>,
    /// Reason the next automatic start will record.
    pending_reason: StartReason,
    /// End of the current backoff, while in Backoff.
    backoff_until: Option<Millis>,
    quick_failures: u32,
    last_exit: Option<ExitInfo>,
    /// Starts since tend came up.
    starts_this_session: u32,
    message: Option<String>,
    /// Replies to send once the process has stopped.
    stop_waiters: Vec<oneshot::Sender<ActionResult>>,
    restart_after_stop: Option<PendingRestart>,
    log: ServiceLog,
    /// Check name -> what the core remembers of its results on this service.
    checks: BTreeMap<String, CheckSlot>,
    /// Its readiness check passes (None: no result since the start, or no readiness check).
    ready: Option<bool>,
    /// End of the latest flood wait it reported.
    flood_until: Option<Millis>,
    /// Gone from the configuration by a reload; dropped from the map once its process has exited.
    removed: bool,
    /// A reload changed a process-relevant key while the gate was closed: restart then (the gate is
    /// asked again at that moment).
    reload_restart: Option<Instant>,
}

impl Service {
    fn new(cfg: ServiceConfig, log: ServiceLog) -> Service {
        Service {
            cfg,
            state: ServiceState::Stopped,
            run: None,
            timer: None,
            pending_reason: StartReason::Initial,
            backoff_until: None,
            quick_failures: 0,
            last_exit: None,
            starts_this_session: 0,
            message: None,
            stop_waiters: Vec::new(),
            restart_after_stop: None,
            log,
            checks: BTreeMap::new(),
            ready: None,
            flood_until: None,
            removed: false,
            reload_restart: None,
        }
    }
}

impl Service {
    /// Takes a reloaded configuration; the running log rotates by new limits from its next line.
    fn update_config(&mut self, cfg: ServiceConfig) {
        if (cfg.max_log_size, cfg.log_keep) != (self.cfg.max_log_size, self.cfg.log_keep) {
            self.log.set_limits(cfg.max_log_size, cfg.log_keep);
        }
        self.cfg = cfg;
    }
}

/// Opens the log of one service with the running tend's log settings.
fn open_log(config: &Config, cfg: &ServiceConfig) -> Result<ServiceLog, SupervisorError> {
    ServiceLog::open(LogSettings {
        dir: config.supervisor.log_dir.clone(),
        name: cfg.name.clone(),
        max_size: cfg.max_log_size,
        keep: cfg.log_keep,
        ring_lines: config.supervisor.log_ring_lines,
    })
    .map_err(|source| SupervisorError::Log {
        service: cfg.name.clone(),
        source,
    })
}

#[derive(Debug, Default)]
struct CheckSlot {
    track: CheckTrack,
    last: Option<CheckView>,
}

pub struct Supervisor {
    config: Arc<Config>,
    clock: Clock,
    services: BTreeMap<String, Service>,
    /// Start history and sticky stops; saved after every change.
    persisted: PersistedState,
    store: StateStore,
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
            store,
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
            self.tend_recoveries();
            self.publish();
        }
        if self.shutdown_mode.keeps_services() {
            self.hand_over().await;
        }
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

    /// Leaves every process running for the next tend: stops reading its pipes at a line boundary
    /// (unfinished lines are saved with the state), writes a marker, saves the state.
    async fn hand_over(&mut self) {
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
            let mut carried = Carried::default();
            if let Some(suspend) = run.suspend.take() {
                let (reply, answer) = oneshot::channel();
                if suspend.send(reply).is_ok() {
                    carried = answer.await.unwrap_or_default();
                }
            }
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
    fn adopt_running(&mut self) {
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
                &name,
                run_id,
                watch,
                capture,
                record.started_ms,
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

    fn pipes_dir(&self) -> std::path::PathBuf {
        self.config.supervisor.state_dir.join("pipes")
    }

    fn autostart(&mut self) {
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

    // ---- commands -------------------------------------------------------------------------------

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
            Command::Report(report) => self.handle_report(report),
            Command::Flood {
                service,
                until_ms,
                seconds,
            } => self.handle_flood(&service, until_ms, seconds),
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
        }
    }

    fn manual_start(&mut self, name: &str, force: bool, by: &str) -> ActionResult {
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
    fn refusal(&self, name: &str, now: Millis) -> Option<Outcome> {
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

    fn manual_stop(&mut self, name: &str, by: &str, reply: oneshot::Sender<ActionResult>) {
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

    fn manual_restart(
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

    // ---- starting -------------------------------------------------------------------------------

    fn limits(&self, name: &str) -> Limits {
        let cfg = &self.services[name].cfg;
        Limits {
            min_restart_interval: cfg.min_restart_interval,
            group: cfg
                .group
                .as_ref()
                .and_then(|g| self.config.groups.get(g))
                .map(|g| GroupLimits {
                    name: g.name.clone(),
                    min_start_spacing: g.min_start_spacing,
                    max_starts: g.max_starts,
                    window: g.window,
                }),
        }
    }

    fn gate(&self, name: &str, backoff_until: Option<Millis>, now: Millis) -> Gate {
        let limits = self.limits(name);
        let own = self.persisted.start_times(name);
        let group_starts: Vec<Millis> = match &self.services[name].cfg.group {
            Some(group) => self
                .config
                .services
                .values()
                .filter(|s| s.group.as_deref() == Some(group.as_str()))
                .flat_map(|s| self.persisted.start_times(&s.name))
                .collect(),
            None => Vec::new(),
        };
        policy::earliest_start(&limits, &own, &group_starts, backoff_until, now)
    }

    /// An automatic start (autostart, crash restart): now if the gate is open and `now_ok`, else at the
    /// gate's time through the timer. Restarts after an exit always take the timer path, so a command that
    /// fails at once cannot recurse into another spawn.
    fn auto_start(&mut self, name: &str, reason: StartReason, now_ok: bool) {
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
            service.backoff_until = None;
            service.message = Some(message);
            self.set_state(name, ServiceState::Waiting);
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
    fn spawn(&mut self, name: &str, reason: StartReason, forced: bool) -> Outcome {
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
            name,
            run_id,
            spawned.exit,
            capture,
            now,
            service,
        ));
        service.backoff_until = None;
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
    fn spawn_failed(&mut self, name: &str, reason: StartReason, message: &str) {
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

    // ---- stopping -------------------------------------------------------------------------------

    fn begin_stop(&mut self, name: &str, why: &str) {
        let service = self.services.get_mut(name).expect("known service");
        let Some(run) = &service.run else {
            return;
        };
        let pid = run.pid;
        let signal = service.cfg.stop_signal;
        service.log.try_marker(format!(
            "stopping pid {pid} with {} ({why})",
            process::signal_name(signal)
        ));
        if let Err(err) = process::signal_group(pid, signal) {
            tracing::warn!(service = name, pid, "cannot signal process group: {err}");
        }
        service.timer = Some((Instant::now() + service.cfg.stop_timeout, Timer::Kill));
        self.set_state(name, ServiceState::Stopping);
    }

    fn begin_shutdown(&mut self, mode: ShutdownMode) {
        self.shutting_down = true;
        self.shutdown_mode = mode;
        if mode.keeps_services() {
            tracing::info!(?mode, "shutting down: leaving the services running");
            for service in self.services.values_mut() {
                // A stop already asked for is finished first (its kill timer stays); nothing starts.
                if service.state != ServiceState::Stopping {
                    service.timer = None;
                }
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

    // ---- exits and timers -----------------------------------------------------------------------

    fn handle_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Exited {
                name,
                run_id,
                pid,
                status,
            } => self.handle_exit(&name, run_id, pid, status),
        }
    }

    fn handle_exit(&mut self, name: &str, run_id: u64, pid: u32, status: ExitStatus) {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(run) = service.run.take_if(|r| r.id == run_id) else {
            return;
        };
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
        let end = RunEnd {
            success: code == Some(0),
            requested,
            ran: exit.ran_ms,
        };
        self.after_run(name, end, StartReason::Crash { code, signal });
    }

    /// Applies the restart policy after a run ended (or a start failed).
    fn after_run(&mut self, name: &str, end: RunEnd, crash_reason: StartReason) {
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

    fn next_deadline(&self) -> Option<Instant> {
        let recoveries = self
            .persisted
            .recoveries
            .values()
            .filter_map(|r| r.wakeup())
            .map(|ms| self.clock.instant_at(ms));
        self.services
            .values()
            .filter_map(|s| s.timer.map(|(at, _)| at))
            .chain(self.services.values().filter_map(|s| s.reload_restart))
            .chain(recoveries)
            .min()
    }

    fn fire_timers(&mut self) {
        let now_ms = self.clock.now_ms();
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
                Timer::Kill => {
                    if let Some(run) = &service.run {
                        let pid = run.pid;
                        service.log.try_marker(format!(
                            "pid {pid} still alive after stop_timeout {}; sending SIGKILL to its group",
                            human_ms(service.cfg.stop_timeout.as_millis() as Millis)
                        ));
                        if let Err(err) = process::signal_group(pid, libc::SIGKILL) {
                            tracing::warn!(service = %name, pid, "cannot SIGKILL group: {err}");
                        }
                    }
                }
                Timer::Start => {
                    if matches!(service.state, ServiceState::Waiting | ServiceState::Backoff) {
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
        for pid in reaped {
            tracing::debug!(pid, "reaped orphan");
        }
    }

    // ---- checks ---------------------------------------------------------------------------------

    fn handle_report(&mut self, report: CheckReport) {
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
    fn act_on_check(&mut self, name: &str, check: &str, action: FailAction, why: &str) -> bool {
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

    fn handle_flood(&mut self, name: &str, until_ms: Millis, seconds: u64) {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        if service.flood_until.is_some_and(|t| t >= until_ms) {
            return;
        }
        service.flood_until = Some(until_ms);
        let left = if until_ms > now {
            format!(
                "the account may fetch dialogs again in {}",
                human_ms(until_ms - now)
            )
        } else {
            "already over".to_string()
        };
        service
            .log
            .try_marker(format!("flood wait of {seconds}s reported; {left}"));
        if let Some(group) = service.cfg.group.clone() {
            self.drive_recovery(&group, recovery::Input::FloodSeen { until_ms });
        }
    }

    /// `POST /reload_cache`: fetches every dialog like a start, so it passes the same gate and is
    /// recorded in the same history.
    fn reload_cache(&mut self, name: &str, force: bool, by: &str) -> Outcome {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get(name) else {
            return Outcome::NoSuchService;
        };
        let Some(port) = service.cfg.port else {
            return Outcome::Failed {
                message: "has no `port`: tend does not know where its /reload_cache is".into(),
            };
        };
        if !service.state.has_process() || service.state == ServiceState::Stopping {
            return Outcome::Failed {
                message: format!("is {}: nothing to reload", service.state),
            };
        }
        if !force {
            if let Some(message) = self.recovery_hold(name) {
                return Outcome::Failed { message };
            }
            if let Some(refusal) = self.refusal(name, now) {
                return refusal;
            }
        }
        self.persisted.record_start(
            name,
            StartRecord {
                at_ms: now,
                reason: StartReason::ReloadCache { by: by.to_string() },
                forced: force,
            },
        );
        self.save_state();
        let log = service.log.clone();
        log.try_marker(format!(
            "reloading the dialog cache (POST /reload_cache), asked by {by}"
        ));
        let client = self.http.clone();
        let url = format!("http://127.0.0.1:{port}/reload_cache");
        tokio::spawn(async move {
            let answer = client
                .post(&url)
                .timeout(Duration::from_secs(600))
                .send()
                .await;
            let text = match answer {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    format!(
                        "reload_cache answered HTTP {}: {}",
                        status.as_u16(),
                        body.trim()
                    )
                }
                Err(err) => format!("reload_cache failed: {err}"),
            };
            log.try_marker(text);
        });
        Outcome::Done {
            message: "dialog cache reload requested (counted like a start)".into(),
        }
    }

    // ---- live reload ----------------------------------------------------------------------------

    /// Switches to `config` (already validated as a whole) and applies the difference: added services
    /// start through the gate, removed ones stop and go away, process-relevant changes restart only the
    /// services they concern (now if the gate is open, else at the gate's time), everything else applies
    /// without a restart. Returns one line per thing done.
    fn apply_reload(
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
    fn restart_for_reload(&mut self, name: &str) -> String {
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
    fn describe_start(&self, name: &str) -> String {
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
    fn finish_removal(&mut self, name: &str) {
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

    // ---- flood recovery -------------------------------------------------------------------------

    /// Why a start of `name` is held by its group's running recovery, if it is.
    fn recovery_hold(&self, name: &str) -> Option<String> {
        let group = self.services.get(name)?.cfg.group.as_ref()?;
        let rec = self.persisted.recoveries.get(group)?;
        (!rec.is_finished()).then(|| {
            format!(
                "held: {} (cancel with `tend recover {group} --cancel`, or use --force)",
                rec.describe(self.clock.now_ms())
            )
        })
    }

    fn start_recovery(&mut self, group: &str, trigger: &str) -> Outcome {
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

    fn cancel_recovery(&mut self, group: &str, by: &str) -> Outcome {
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
    fn member_names(&self, group: &str) -> Vec<String> {
        self.config
            .members_of(group)
            .map(|m| m.name.clone())
            .collect()
    }

    fn describe_members(&self, group: &str) -> String {
        self.config
            .members_of(group)
            .map(|m| format!("{} {}", m.name, self.services[&m.name].state))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Feeds an input to a group's recovery and performs what it asks, until nothing follows.
    fn drive_recovery(&mut self, group: &str, input: recovery::Input) {
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

    fn stop_members_for_recovery(&mut self, group: &str) {
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
    fn resume_after_recovery(&mut self, group: &str) {
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
    fn leave_after_cancel(&mut self, group: &str) {
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
    fn tend_recoveries(&mut self) {
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
    fn resume_recoveries(&mut self) {
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

    // ---- bookkeeping ----------------------------------------------------------------------------

    fn set_state(&mut self, name: &str, to: ServiceState) {
        let service = self.services.get_mut(name).expect("known service");
        let from = service.state;
        if from == to {
            return;
        }
        service.state = to;
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
        if let Err(err) = self.store.save(&self.persisted) {
            tracing::error!("cannot save state (start history, sticky stops): {err}");
        }
    }

    fn build_snapshot(&self) -> Snapshot {
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
        Snapshot {
            at_ms: now,
            services,
            recoveries,
            config_error: self.config_error.clone(),
            pending_removals: self.config.pending_removals.clone(),
        }
    }

    fn publish(&mut self) {
        let snapshot = self.build_snapshot();
        self.snapshot.send_if_modified(|current| {
            // `at_ms` changes every time; only publish real changes.
            let changed = current.services != snapshot.services
                || current.config_error != snapshot.config_error
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

/// After the main process exited, make sure nothing of its group lingers (orphaned workers holding the
/// port are the classic supervisor bug): stop signal, then SIGKILL after the stop timeout.
/// What a run's waiter task needs.
struct WaiterArgs {
    tx: mpsc::UnboundedSender<Internal>,
    name: String,
    run_id: u64,
    exit: ExitWatch,
    capture: Capture,
    stop_signal: i32,
    stop_timeout: Duration,
    log: ServiceLog,
}

/// Spawns the task that owns one run's exit watch and capture: on exit it cleans up the process
/// group, lets the capture drain and reports to the actor; asked to suspend, it hands the capture's
/// unfinished lines over instead and ends, leaving the process alone. Returns the suspend channel.
fn spawn_waiter(args: WaiterArgs) -> oneshot::Sender<SuspendRequest> {
    let (suspend_tx, suspend_rx) = oneshot::channel::<SuspendRequest>();
    let WaiterArgs {
        tx,
        name,
        run_id,
        exit,
        capture,
        stop_signal,
        stop_timeout,
        log,
    } = args;
    let pid = exit.pid();
    tokio::spawn(async move {
        let status = tokio::select! {
            status = exit.exited() => status,
            Ok(reply) = suspend_rx => {
                let _ = reply.send(capture.suspend().await);
                return;
            }
        };
        clean_up_group(pid, stop_signal, stop_timeout, &log).await;
        // A grandchild outside the group may hold the pipes open; don't wait for it forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), capture).await;
        let _ = tx.send(Internal::Exited {
            name,
            run_id,
            pid,
            status,
        });
    });
    suspend_tx
}

/// Both read ends of an adopted run: its FIFOs by path, or, if someone removed those, the same pipes
/// through the process's own descriptors.
fn open_pipes_of(
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

async fn clean_up_group(pgid: u32, stop_signal: i32, stop_timeout: Duration, log: &ServiceLog) {
    if !process::group_alive(pgid) {
        return;
    }
    let _ = log
        .marker(format!(
            "main process {pgid} exited but its process group lives on; sending {}",
            process::signal_name(stop_signal)
        ))
        .await;
    let _ = process::signal_group(pgid, stop_signal);
    let deadline = Instant::now() + stop_timeout;
    while process::group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if process::group_alive(pgid) {
        let _ = log
            .marker(format!("process group {pgid} still alive; sending SIGKILL"))
            .await;
        let _ = process::signal_group(pgid, libc::SIGKILL);
    }
}

fn describe_exit(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by {}", process::signal_name(sig)),
        _ => "unknown status".into(),
    }
}
