//! The supervisor core: the one owner of every service's state.
//!
//! [`Supervisor`] is an actor. The control socket, the web page and (later) the checks talk to it only
//! through a [`CoreHandle`]: commands over a channel, each with a oneshot reply, plus a broadcast stream of
//! [`Event`]s and a `watch` of the latest status snapshot. Nothing else mutates service state.
//!
//! Every start of a process goes through [`policy::earliest_start`]; only `force` bypasses it.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::Millis;
use crate::logs::ServiceLog;
use crate::state::StartRecord;

pub mod policy;
mod supervisor;

pub use policy::Hold;
pub use supervisor::{Supervisor, SupervisorError};

/// Lifecycle state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running, and nothing will start it (stopped by hand, or autostart off).
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStart {
    pub at_ms: Millis,
    /// `None`: a start would be allowed now.
    pub hold: Option<Hold>,
}

/// Everything `tend status` shows about one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The latest status of every service, published after each change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at_ms: Millis,
    pub services: Vec<ServiceStatus>,
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
        reply: oneshot::Sender<ActionResult>,
    },
    /// A handle to read a service's log (tail, follow).
    Log {
        name: String,
        reply: oneshot::Sender<Option<ServiceLog>>,
    },
    /// Stop every service and end the core.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
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

    pub async fn shutdown(&self) -> Result<(), CoreGone> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }
}
