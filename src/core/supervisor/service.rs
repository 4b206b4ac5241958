//! The per-service record the actor keeps: configuration, current run, the one pending timer,
//! check memory. Plain data with no behaviour beyond construction; only the actor mutates it.

use super::*;
use crate::core::start_queue::{accounting::Evidence, Slot};

/// Asks a run's runner to stop capturing and hand over its unfinished lines (tend is leaving the
/// process running).
pub(super) type SuspendRequest = oneshot::Sender<Carried>;

/// Why the actor woke a service up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// A held-back start may be due (Waiting / Backoff).
    Start,
    /// `start_grace` elapsed: Starting -> Running.
    Grace,
}

/// The current process of a service.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) id: u64,
    pub(super) pid: u32,
    pub(super) started_ms: Millis,
    /// Its runner: stop, hurry, suspend.
    pub(super) runner: RunHandle,
}

impl Run {
    /// A run whose exit and output are watched by a new runner task (see [`spawn_runner`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn watched(
        tx: &mpsc::UnboundedSender<Internal>,
        reaped: &watch::Sender<u64>,
        name: &str,
        id: u64,
        exit: ExitWatch,
        capture: Capture,
        started_ms: Millis,
        service: &Service,
    ) -> Run {
        let pid = exit.pid();
        let runner = spawn_runner(
            RunnerArgs {
                tx: tx.clone(),
                reaped: reaped.subscribe(),
                name: name.to_string(),
                run_id: id,
                stop_signal: service.cfg.stop_signal,
                stop_timeout: service.cfg.stop_timeout,
                log: service.log.clone(),
            },
            exit,
            capture,
        );
        Run {
            id,
            pid,
            started_ms,
            runner,
        }
    }
}

/// A start waiting for the running process to stop first (restart).
#[derive(Debug)]
pub(super) struct PendingRestart {
    pub(super) reason: StartReason,
    pub(super) forced: bool,
    pub(super) reply: Option<oneshot::Sender<ActionResult>>,
}

/// Runtime state of one service; only the actor has it.
#[derive(Debug)]
pub(super) struct Service {
    /// Its configuration.
    pub(super) cfg: ServiceConfig,
    pub(super) state: ServiceState,
    /// The live process, while there is one.
    pub(super) run: Option<Run>,
    /// The one pending wake-up, if any.
    pub(super) timer: Option<(Instant, Timer)>,
    /// Reason the next automatic start will record.
    pub(super) pending_reason: StartReason,
    /// End of the current backoff, while in Backoff.
    pub(super) backoff_until: Option<Millis>,
    pub(super) quick_failures: u32,
    pub(super) last_exit: Option<ExitInfo>,
    /// Starts since tend came up.
    pub(super) starts_this_session: u32,
    pub(super) message: Option<String>,
    /// Replies to send once the process has stopped.
    pub(super) stop_waiters: Vec<oneshot::Sender<ActionResult>>,
    pub(super) restart_after_stop: Option<PendingRestart>,
    pub(super) log: ServiceLog,
    /// Check name -> what the core remembers of its results on this service.
    pub(super) checks: BTreeMap<String, CheckSlot>,
    /// Its readiness check passes (None: no result since the start, or no readiness check).
    pub(super) ready: Option<bool>,
    /// End of the latest flood wait it reported.
    pub(super) flood_until: Option<Millis>,
    /// Gone from the configuration by a reload; dropped from the map once its process has exited.
    pub(super) removed: bool,
    /// A reload changed a process-relevant key while the gate was closed: restart then (the gate is
    /// asked again at that moment).
    pub(super) reload_restart: Option<Instant>,
    /// Waits in its group's start queue for an automatic start (`pending_reason`).
    pub(super) queued: bool,
    /// Its place in the group's latest plan, while queued.
    pub(super) slot: Option<Slot>,
    /// Down since then (its last exit, or when it first wanted to start); the queue serves the
    /// longest-down member first.
    pub(super) down_since: Option<Millis>,
    /// What the current run has shown of a dialog fetch (readiness, a flood wait).
    pub(super) evidence: Evidence,
    /// Its last start died before fetching anything and gave its slot back (for `tend status`).
    pub(super) slot_given_back: Option<String>,
    /// Since then its run is a zombie: telethon raised a flood wait at start-up and never became
    /// ready. It waits in the group's queue (while running) for a restart.
    pub(super) zombie_since: Option<Millis>,
}

impl Service {
    pub(super) fn new(cfg: ServiceConfig, log: ServiceLog) -> Service {
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
            queued: false,
            slot: None,
            down_since: None,
            evidence: Evidence::default(),
            slot_given_back: None,
            zombie_since: None,
        }
    }
}

impl Service {
    /// Takes a reloaded configuration; the running log rotates by new limits from its next line.
    pub(super) fn update_config(&mut self, cfg: ServiceConfig) {
        if (cfg.max_log_size, cfg.log_keep) != (self.cfg.max_log_size, self.cfg.log_keep) {
            self.log.set_limits(cfg.max_log_size, cfg.log_keep);
        }
        self.cfg = cfg;
    }
}

/// Opens the log of one service with the running tend's log settings.
pub(super) fn open_log(
    config: &Config,
    cfg: &ServiceConfig,
) -> Result<ServiceLog, SupervisorError> {
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
pub(super) struct CheckSlot {
    pub(super) track: CheckTrack,
    pub(super) last: Option<CheckView>,
}
