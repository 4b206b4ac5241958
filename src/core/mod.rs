//! The supervisor core: the one owner of every service's state.
//!
//! [`Supervisor`] is an actor. The control socket, the web page and (later) the checks talk to it only
//! through a [`CoreHandle`]: commands over a channel, each with a oneshot reply, plus a broadcast stream of
//! [`Event`]s and a `watch` of the latest status snapshot. Nothing else mutates service state.
//!
//! Every start of a process goes through [`policy::earliest_start`]; only `force` bypasses it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::check_result::{ProbeResult, Status};
use crate::clock::Millis;
use crate::config::Config;
use crate::logs::ServiceLog;
use crate::recovery::Recovery;
use crate::state::StartRecord;

pub mod flood_model;
pub mod policy;
pub mod start_queue;
mod supervisor;

pub use policy::Hold;
pub use supervisor::{Supervisor, SupervisorError};

/// What happens to the services when tend stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownMode {
    /// Stop every service (like systemd stopping a unit).
    #[default]
    Stop,
    /// Leave them running, their state saved, for the next tend to adopt.
    KeepServices,
    /// Leave them running: this tend re-executes itself and adopts them.
    Reexec,
}

impl ShutdownMode {
    /// The configured `on_shutdown` (SIGTERM, `tend shutdown` without a flag).
    /// As PID 1, always `Stop`: the services end with tend's pid namespace, nothing could adopt them.
    pub fn configured(config: &Config) -> ShutdownMode {
        match config.supervisor.on_shutdown {
            crate::config::OnShutdown::KeepServices if !crate::process::is_pid1() => {
                ShutdownMode::KeepServices
            }
            _ => ShutdownMode::Stop,
        }
    }

    pub fn keeps_services(self) -> bool {
        self != ShutdownMode::Stop
    }
}

/// Lifecycle state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running, and nothing will start it (stopped by hand, or autostart off).
    #[default]
    Stopped,
    /// A start is due but held back by spacing or a group budget.
    Waiting,
    /// Spawned, not yet alive for `start_grace`.
    Starting,
    Running,
    /// Exited unexpectedly; an automatic restart is scheduled.
    Backoff,
    /// Asked to stop; waiting for the process group to exit.
    Stopping,
    /// Exited and, per its restart mode, stays down.
    Exited,
    /// Crash-looping; waits for a human to start it.
    Fatal,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Exited => "exited",
            ServiceState::Fatal => "fatal",
        }
    }

    /// A process of the service exists.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            ServiceState::Starting | ServiceState::Running | ServiceState::Stopping
        )
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub at_ms: Millis,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// How long the run lasted.
    pub ran_ms: Millis,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit {code}"),
            (None, Some(sig)) => write!(f, "{}", crate::process::signal_name(sig)),
            (None, None) => write!(f, "unknown"),
        }
    }
}

/// When the next start is allowed, and what holds it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStart {
    pub at_ms: Millis,
    /// `None`: a start would be allowed now.
    pub hold: Option<Hold>,
}

/// Everything `tend status` shows about one service. (`Default`: a stopped service with no history,
/// for tests.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub group: Option<String>,
    pub port: Option<u16>,
    /// Start of the current run.
    pub since_ms: Option<Millis>,
    /// Starts since tend came up, not counting the first.
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub last_start: Option<StartRecord>,
    /// Earliest moment a (re)start would be allowed.
    pub next_start: NextStart,
    /// Stopped by hand; nothing restarts it until started by hand.
    pub sticky_stop: bool,
    pub quick_failures: u32,
    /// Something the operator should know (port conflict, crash loop, spawn error).
    pub message: Option<String>,
    /// The last result of each check on this service, in check name order.
    #[serde(default)]
    pub checks: Vec<CheckView>,
    /// Whether its readiness check passes (`None`: no readiness check, or no result since the start).
    #[serde(default)]
    pub ready: Option<bool>,
    /// A flood wait the service reported runs until then (logs or `/stats`).
    #[serde(default)]
    pub flood_until_ms: Option<Millis>,
    /// Starts (not cache reloads) in the last 24 hours.
    #[serde(default)]
    pub starts_24h: u32,
    /// Its log directory cannot be written right now: lines are counted and the newest kept until it
    /// can (`None`: writing works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<crate::logs::LogLoss>,
}

/// The core's view of one check on one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub check: String,
    pub status: Status,
    pub message: String,
    pub value: Option<f64>,
    pub at_ms: Millis,
    /// Failures in a row outside the grace period.
    pub failures: u32,
    /// 3+ failures in a row: the alert state (a banner on the status page).
    pub alerting: bool,
}

/// A recovery as `tend status` and the page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryView {
    pub recovery: Recovery,
    /// One line: stage, service, time left.
    pub summary: String,
    /// The moment the current stage waits for (cooldown end, pause end, ready deadline).
    pub until_ms: Option<Millis>,
}

/// One group's account as `tend status` and the page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub group: String,
    /// One line: the known flood wait or the predicted cost of the next sweep, and whether the
    /// group's `flood_tolerance` allows it ("next sweep predicted: 27s wait; allowed").
    pub summary: String,
    /// The model itself (learned window, strike level, recent waits), for the JSON API.
    pub model: flood_model::FloodModel,
}

/// The latest status of every service, published after each change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at_ms: Millis,
    pub services: Vec<ServiceStatus>,
    /// The latest recovery of each group that had one.
    #[serde(default)]
    pub recoveries: Vec<RecoveryView>,
    /// What each group's account has shown of its flood limits, and what the next sweep would cost.
    #[serde(default)]
    pub accounts: Vec<AccountView>,
    /// The state file was corrupt or missing at start and what tend did about it (moved aside, fell back
    /// to the previous good file), until tend restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_warning: Option<String>,
    /// Why the last reload of the configuration failed (file, line, key); `None` once a reload succeeds.
    /// The running configuration is the last good one meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Services the file no longer has that still run, because the file watcher's reload may not
    /// remove them (see `watch_removes`): they go with an explicit `tend reload`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_removals: Vec<String>,
}

/// What became of a command on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Done {
        message: String,
    },
    /// Held back by the policy; `retry_in_ms` says when it would be allowed.
    Refused {
        message: String,
        retry_in_ms: Millis,
        hold: Hold,
    },
    Failed {
        message: String,
    },
    NoSuchService,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Who asked, for the start reason and the service log.
pub type Actor = String;

/// Requests to the core. Each carries its reply channel.
#[derive(Debug)]
pub enum Command {
    Status {
        reply: oneshot::Sender<Snapshot>,
    },
    Start {
        name: String,
        force: bool,
        by: Actor,
        reply: oneshot::Sender<ActionResult>,
    },
    Stop {
        name: String,
        by: Actor,
        reply: oneshot::Sender<ActionResult>,
    },
    Restart {
        name: String,
        force: bool,
        by: Actor,
        /// Asked by this schedule entry (recorded as such instead of a manual restart).
        schedule: Option<String>,
        reply: oneshot::Sender<ActionResult>,
    },
    /// A handle to read a service's log (tail, follow).
    Log {
        name: String,
        reply: oneshot::Sender<Option<ServiceLog>>,
    },
    /// End the core; `mode` says what happens to the services.
    Shutdown {
        mode: ShutdownMode,
        reply: oneshot::Sender<()>,
    },
    /// A check's result for one service. Fire and forget.
    Report(CheckReport),
    /// A service reported a flood wait (seen in its log or `/stats`).
    Flood(FloodReport),
    /// Start the staged flood-wait recovery of a group.
    Recover {
        group: String,
        by: Actor,
        reply: oneshot::Sender<ActionResult>,
    },
    CancelRecovery {
        group: String,
        by: Actor,
        reply: oneshot::Sender<ActionResult>,
    },
    /// Switch to a new, already validated configuration (live reload). `logs` holds the opened logs of
    /// the services it adds (opened by the caller, so their watchers subscribe before the first start).
    /// The reply lists what was done, one line per service touched.
    Reload {
        config: Arc<Config>,
        logs: BTreeMap<String, ServiceLog>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// A reload failed (`Some`, shown in the snapshot until fixed) or the error is gone (`None`).
    ConfigError {
        error: Option<String>,
    },
    /// Skip the stop grace: SIGKILL every process group being stopped, now and for the rest of this
    /// run of tend (a second termination signal). Fire and forget.
    Hurry,
    /// `POST /reload_cache` on the service: a dialog fetch, gated like a start.
    ReloadCache {
        name: String,
        force: bool,
        by: Actor,
        reply: oneshot::Sender<ActionResult>,
    },
}

/// A flood wait a service reported (its log or `/stats`), as it said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodReport {
    pub service: String,
    /// When the service said it.
    pub at_ms: Millis,
    /// The wait, in the service's own seconds (the core multiplies them by `output_time_scale`).
    pub seconds: u64,
    /// Telethon raised it ("A wait of N seconds is required") rather than slept through it
    /// ("Sleeping for Ns").
    pub raised: bool,
    /// It concerns dialog fetches (GetDialogsRequest, or no request named), not a send.
    pub dialogs: bool,
}

/// One check result for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub check: String,
    pub service: String,
    pub result: ProbeResult,
    pub at_ms: Millis,
}

/// Something that happened, for anyone watching (web page, checks, tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    StateChanged {
        name: String,
        from: ServiceState,
        to: ServiceState,
        at_ms: Millis,
    },
    Spawned {
        name: String,
        pid: u32,
        start: StartRecord,
    },
    Exited {
        name: String,
        pid: u32,
        exit: ExitInfo,
    },
    Notice {
        name: String,
        message: String,
    },
    Check {
        report: CheckReport,
    },
    /// A check's alert state changed (raised after 3 failures in a row, cleared by a pass).
    Alert {
        service: String,
        check: String,
        raised: bool,
        message: String,
        at_ms: Millis,
    },
    Recovery {
        group: String,
        stage: String,
        summary: String,
        at_ms: Millis,
    },
}

/// The way to talk to a running [`Supervisor`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    snapshot: watch::Receiver<Snapshot>,
}

/// The core has stopped and answers no more.
#[derive(Debug, thiserror::Error)]
#[error("the supervisor core is not running (tend is shutting down)")]
pub struct CoreGone;

impl CoreHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CoreGone> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)
    }

    pub async fn status(&self) -> Result<Snapshot, CoreGone> {
        self.ask(|reply| Command::Status { reply }).await
    }

    pub async fn start(&self, name: &str, force: bool, by: &str) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::Start {
            name: name.to_string(),
            force,
            by: by.to_string(),
            reply,
        })
        .await
    }

    pub async fn stop(&self, name: &str, by: &str) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::Stop {
            name: name.to_string(),
            by: by.to_string(),
            reply,
        })
        .await
    }

    pub async fn restart(
        &self,
        name: &str,
        force: bool,
        by: &str,
    ) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::Restart {
            name: name.to_string(),
            force,
            by: by.to_string(),
            schedule: None,
            reply,
        })
        .await
    }

    /// A restart by the schedule `entry`: the same gate as a manual restart (never forced), recorded
    /// in the start history as a scheduled start.
    pub async fn scheduled_restart(
        &self,
        name: &str,
        entry: &str,
    ) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::Restart {
            name: name.to_string(),
            force: false,
            by: format!("schedule {entry}"),
            schedule: Some(entry.to_string()),
            reply,
        })
        .await
    }

    pub async fn log(&self, name: &str) -> Result<Option<ServiceLog>, CoreGone> {
        self.ask(|reply| Command::Log {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Hands a check result to the core (never waits for the core to act on it).
    pub async fn report(&self, report: CheckReport) -> Result<(), CoreGone> {
        self.commands
            .send(Command::Report(report))
            .await
            .map_err(|_| CoreGone)
    }

    /// Hands a reported flood wait to the core (fire and forget).
    pub async fn flood(&self, report: FloodReport) -> Result<(), CoreGone> {
        self.commands
            .send(Command::Flood(report))
            .await
            .map_err(|_| CoreGone)
    }

    pub async fn recover(&self, group: &str, by: &str) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::Recover {
            group: group.to_string(),
            by: by.to_string(),
            reply,
        })
        .await
    }

    pub async fn cancel_recovery(&self, group: &str, by: &str) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::CancelRecovery {
            group: group.to_string(),
            by: by.to_string(),
            reply,
        })
        .await
    }

    pub async fn reload_cache(
        &self,
        name: &str,
        force: bool,
        by: &str,
    ) -> Result<ActionResult, CoreGone> {
        self.ask(|reply| Command::ReloadCache {
            name: name.to_string(),
            force,
            by: by.to_string(),
            reply,
        })
        .await
    }

    /// Applies a new configuration; returns one line per service touched (see [`Command::Reload`]).
    pub async fn reload(
        &self,
        config: Arc<Config>,
        logs: BTreeMap<String, ServiceLog>,
    ) -> Result<Vec<String>, CoreGone> {
        self.ask(|reply| Command::Reload {
            config,
            logs,
            reply,
        })
        .await
    }

    /// Records (or clears) the error of the last failed reload, for `tend status` and the page.
    pub async fn config_error(&self, error: Option<String>) -> Result<(), CoreGone> {
        self.commands
            .send(Command::ConfigError { error })
            .await
            .map_err(|_| CoreGone)
    }

    /// A second termination signal: every stop skips what is left of its grace (see [`Command::Hurry`]).
    pub async fn hurry(&self) -> Result<(), CoreGone> {
        self.commands
            .send(Command::Hurry)
            .await
            .map_err(|_| CoreGone)
    }

    /// Ends the core. With [`ShutdownMode::Stop`] the reply comes once every service is down; with the
    /// other modes once every capture is handed over and the state saved.
    pub async fn shutdown(&self, mode: ShutdownMode) -> Result<(), CoreGone> {
        self.ask(|reply| Command::Shutdown { mode, reply }).await
    }
}
