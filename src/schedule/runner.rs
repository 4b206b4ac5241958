//! The schedule runner: one task that owns every schedule's timer, its persisted last-run time and its
//! recent outcomes, and performs the actions when they are due.
//!
//! The state is a [`Book`] (pure: no clock, no I/O, table-tested) wrapped by the task, which sleeps
//! until the earliest next run on tend's [`Clock`] (tokio time, so tests can pause it), asks the book
//! what is due, hands each due action to a [`Perform`]er in a task of its own (a restart waiting for a
//! stop, or a slow `exec`, never holds up the other schedules), and records the outcome when it ends.
//! Last-run times and outcomes live in `STATE_DIR/schedules.json`, replaced atomically after every
//! change, so a restarted tend neither forgets nor replays: [`Schedule::due`] turns runs missed while
//! tend was down into at most one catch-up run.
//!
//! What it must not do: touch service state (actions go through [`crate::core::CoreHandle`], the same
//! gate as every start), retry a refused action (the refusal is the run's outcome; the next run is the
//! next scheduled time), or validate schedules (the configuration did).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Millis};
use crate::config::Config;
use crate::schedule_rules::{Due, Schedule, ScheduleAction, ScheduleSpec};
use crate::state::{write_atomically, StateError};

/// Outcomes kept per schedule (newest first in the views).
pub const KEEP_RUNS: usize = 20;
/// The runner's file in the state dir.
pub const STATE_FILE: &str = "schedules.json";
const STATE_VERSION: u32 = 1;

/// How one run of a schedule ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Done (for `exec`: exit 0).
    Ok,
    /// Held back by the restart policy (spacing, budget): not retried, the schedule waits for its
    /// next time.
    Refused,
    /// The action failed (the service is down, the command exited non-zero, timed out, ...).
    Failed,
    /// Nothing was done: runs missed while tend was down, the previous run still going, a service
    /// that is not running.
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Refused => "refused",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }

    /// Of several outcomes (one per service), the one that describes the run: a failure before a
    /// refusal before success before nothing done.
    fn rank(self) -> u8 {
        match self {
            RunStatus::Failed => 3,
            RunStatus::Refused => 2,
            RunStatus::Ok => 1,
            RunStatus::Skipped => 0,
        }
    }

    /// The most telling of several outcomes (`Skipped` for none).
    pub fn worst(all: impl IntoIterator<Item = RunStatus>) -> RunStatus {
        all.into_iter()
            .max_by_key(|s| s.rank())
            .unwrap_or(RunStatus::Skipped)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run (or skipped run) of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// When it started (wall-clock ms).
    pub at_ms: Millis,
    pub status: RunStatus,
    /// One line per service or the command's first output lines.
    pub message: String,
    /// How long it took.
    #[serde(default)]
    pub duration_ms: Millis,
}

/// What an action came to, as a [`Perform`]er reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Performed {
    pub status: RunStatus,
    pub message: String,
}

impl Performed {
    pub fn new(status: RunStatus, message: impl Into<String>) -> Performed {
        Performed {
            status,
            message: message.into(),
        }
    }
}

/// A due run handed to the performer.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: ScheduleSpec,
    /// The running configuration (diagnose reads it; the alert webhook is in it).
    pub config: Arc<Config>,
    pub at_ms: Millis,
}

impl Job {
    /// Who asks, as start records and service logs name it.
    pub fn by(&self) -> String {
        format!("schedule {}", self.spec.name)
    }
}

/// Performs actions. [`super::Actions`] is the real one (the core, the checks, child processes);
/// tests use a recorder.
pub trait Perform: Send + Sync + 'static {
    fn perform(&self, job: Job) -> BoxFuture<'static, Performed>;
}

/// One schedule as `tend schedules`, the control socket and the status page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    /// The expression as written.
    pub cron: String,
    /// `reload_cache`, `restart`, `diagnose` or `exec`.
    pub action: String,
    pub services: Vec<String>,
    /// The command line of an `exec`, "report also sent to the alert webhook" for a `diagnose` with
    /// `alert`.
    pub detail: Option<String>,
    pub enabled: bool,
    /// The next run, if any (none: disabled, or an expression with no later time).
    pub next_ms: Option<Millis>,
    /// Set while a run is going.
    pub running_since_ms: Option<Millis>,
    /// The latest outcomes, newest first (at most [`KEEP_RUNS`]).
    pub runs: Vec<ScheduleRun>,
}

impl ScheduleView {
    /// The latest outcome.
    pub fn last(&self) -> Option<&ScheduleRun> {
        self.runs.first()
    }
}

// ----- the book: pure state ---------------------------------------------------------------------

/// One schedule's runtime state.
#[derive(Debug)]
struct Entry {
    /// Identifies the entry across reloads, so an outcome lands on the entry that started the run
    /// (or nowhere, if the schedule was removed meanwhile).
    id: u64,
    schedule: Schedule,
    /// When it last ran or skipped (wall-clock ms); persisted.
    last_run_ms: Option<Millis>,
    /// Cached next run; `None` when disabled or when the expression has no later time.
    next_ms: Option<Millis>,
    /// The run going now, and when it began.
    running: Option<Millis>,
    /// Newest first.
    runs: VecDeque<ScheduleRun>,
}

impl Entry {
    fn spec(&self) -> &ScheduleSpec {
        self.schedule.spec()
    }

    /// Records a run that did not happen, and says why in the tick (for tend's log).
    fn skip(&mut self, tick: &mut Tick, now_ms: Millis, message: String) {
        tick.skipped
            .push(format!("schedule {}: skipped: {message}", self.spec().name));
        self.record(ScheduleRun {
            at_ms: now_ms,
            status: RunStatus::Skipped,
            message,
            duration_ms: 0,
        });
    }

    fn record(&mut self, record: ScheduleRun) {
        self.runs.push_front(record);
        self.runs.truncate(KEEP_RUNS);
    }

    fn view(&self) -> ScheduleView {
        let spec = self.spec();
        let detail = match &spec.action {
            ScheduleAction::Exec { command, .. } => Some(shell_words::join(command)),
            ScheduleAction::Diagnose { alert: true } => {
                Some("report also sent to the alert webhook".to_string())
            }
            _ => None,
        };
        ScheduleView {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            action: spec.action.name().to_string(),
            services: spec.services.clone(),
            detail,
            enabled: spec.enabled,
            next_ms: self.next_ms.filter(|_| spec.enabled),
            running_since_ms: self.running,
            runs: self.runs.iter().cloned().collect(),
        }
    }
}

/// Every schedule's state, in configuration order. Pure: times come in as arguments.
#[derive(Debug, Default)]
pub struct Book {
    entries: Vec<Entry>,
    next_id: u64,
}

/// A run the book decided to start: which entry, and what to do.
#[derive(Debug, Clone)]
pub struct Start {
    pub id: u64,
    pub spec: ScheduleSpec,
    pub at_ms: Millis,
}

/// What [`Book::tick`] decided.
#[derive(Debug, Default)]
pub struct Tick {
    pub start: Vec<Start>,
    /// Last-run times or outcomes changed: save and publish.
    pub changed: bool,
    /// Runs skipped at this tick, as lines for tend's log.
    pub skipped: Vec<String>,
}

impl Book {
    /// The book for `specs`, resuming the persisted last runs and outcomes of schedules whose name
    /// and expression are unchanged. A schedule seen for the first time (or with a new expression)
    /// counts from `now_ms`: its first run is its next time, nothing before it is "missed".
    pub fn new(specs: &[ScheduleSpec], persisted: &Persisted, now_ms: Millis) -> Book {
        let mut book = Book::default();
        for spec in specs {
            let Some(schedule) = compile(spec) else {
                continue;
            };
            let saved = persisted.schedules.get(&spec.name);
            let same_expression = saved.is_some_and(|s| s.expression == schedule.expression());
            let entry = Entry {
                id: book.fresh_id(),
                last_run_ms: if same_expression {
                    saved.and_then(|s| s.last_run_ms)
                } else {
                    Some(now_ms)
                },
                // Known before the runner's first tick, so a `tend schedules` right after start
                // already shows it (the tick then decides about missed runs).
                next_ms: schedule.next_after(now_ms),
                running: None,
                runs: saved
                    .map(|s| s.runs.iter().cloned().collect())
                    .unwrap_or_default(),
                schedule,
            };
            book.entries.push(entry);
        }
        book
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Switches to a new set of schedules (a live reload). A schedule whose name and expression are
    /// unchanged keeps its last run, its outcomes and a run in flight; one whose expression changed
    /// keeps its outcomes but counts afresh from `now_ms`; an added one counts from `now_ms`. Returns
    /// one line per schedule added, removed or changed.
    pub fn apply(&mut self, specs: &[ScheduleSpec], now_ms: Millis) -> Vec<String> {
        let mut old: Vec<Entry> = std::mem::take(&mut self.entries);
        let mut lines = Vec::new();
        for spec in specs {
            let Some(schedule) = compile(spec) else {
                continue;
            };
            let entry = match old.iter().position(|e| e.spec().name == spec.name) {
                Some(index) => {
                    let mut entry = old.remove(index);
                    if entry.schedule.expression() != schedule.expression() {
                        entry.last_run_ms = Some(now_ms);
                        lines.push(format!(
                            "schedule {}: changed (cron {} -> {}), counts from now",
                            spec.name,
                            entry.spec().cron,
                            spec.cron
                        ));
                    } else if entry.spec() != spec {
                        lines.push(format!("schedule {}: changed", spec.name));
                    }
                    entry.schedule = schedule;
                    entry
                }
                None => {
                    lines.push(format!("schedule {}: added", spec.name));
                    Entry {
                        id: self.fresh_id(),
                        schedule,
                        last_run_ms: Some(now_ms),
                        next_ms: None,
                        running: None,
                        runs: VecDeque::new(),
                    }
                }
            };
            self.entries.push(entry);
        }
        for gone in old {
            lines.push(format!("schedule {}: removed", gone.spec().name));
        }
        lines
    }

    /// Decides, at `now_ms`, which schedules run now, which skip missed runs, and when each runs next.
    pub fn tick(&mut self, now_ms: Millis) -> Tick {
        let mut tick = Tick::default();
        for entry in &mut self.entries {
            if !entry.spec().enabled {
                entry.next_ms = None;
                continue;
            }
            match entry.schedule.due(entry.last_run_ms, now_ms) {
                Due::NotYet { next_ms } => entry.next_ms = Some(next_ms),
                Due::Never => entry.next_ms = None,
                Due::RunNow => {
                    entry.last_run_ms = Some(now_ms);
                    entry.next_ms = entry.schedule.next_after(now_ms);
                    tick.changed = true;
                    if let Some(since) = entry.running {
                        let message = format!(
                            "the previous run (started {}) is still going",
                            utc_time(since)
                        );
                        entry.skip(&mut tick, now_ms, message);
                        continue;
                    }
                    entry.running = Some(now_ms);
                    tick.start.push(Start {
                        id: entry.id,
                        spec: entry.spec().clone(),
                        at_ms: now_ms,
                    });
                }
                Due::Skip { missed } => {
                    entry.last_run_ms = Some(now_ms);
                    entry.next_ms = entry.schedule.next_after(now_ms);
                    tick.changed = true;
                    let message = format!(
                        "{missed} missed run(s) while tend was not running were skipped, not \
                         replayed"
                    );
                    entry.skip(&mut tick, now_ms, message);
                }
            }
        }
        tick
    }

    /// Records the outcome of the run `id` started at `started_ms`; an outcome of a removed schedule
    /// is dropped. Returns whether it was recorded.
    pub fn finish(
        &mut self,
        id: u64,
        started_ms: Millis,
        now_ms: Millis,
        performed: Performed,
    ) -> bool {
        let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) else {
            return false;
        };
        entry.running = None;
        entry.record(ScheduleRun {
            at_ms: started_ms,
            status: performed.status,
            message: performed.message,
            duration_ms: (now_ms - started_ms).max(0),
        });
        true
    }

    /// The name of the schedule whose entry is `id`, if it is still configured.
    pub fn name_of(&self, id: u64) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.spec().name.as_str())
    }

    /// The earliest next run of any enabled schedule.
    pub fn next_wake(&self) -> Option<Millis> {
        self.entries.iter().filter_map(|e| e.next_ms).min()
    }

    pub fn views(&self) -> Vec<ScheduleView> {
        self.entries.iter().map(Entry::view).collect()
    }

    /// What goes into `schedules.json`.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            version: STATE_VERSION,
            schedules: self
                .entries
                .iter()
                .map(|e| {
                    (
                        e.spec().name.clone(),
                        SavedSchedule {
                            expression: e.schedule.expression().to_string(),
                            last_run_ms: e.last_run_ms,
                            runs: e.runs.iter().cloned().collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The validated configuration compiled it already; a failure here is a bug, logged, and the
/// schedule is left out rather than taking the runner down.
fn compile(spec: &ScheduleSpec) -> Option<Schedule> {
    match Schedule::new(spec.clone()) {
        Ok(schedule) => Some(schedule),
        Err(err) => {
            tracing::error!("{err}; the schedule is not run");
            None
        }
    }
}

/// `2026-11-28 16:30:00 UTC`.
pub fn utc_time(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Into tend's log: refusals and failures as warnings (someone should look), the rest as info.
fn log_outcome(name: Option<&str>, performed: &Performed) {
    let name = name.unwrap_or("(removed)");
    let message = &performed.message;
    match performed.status {
        RunStatus::Ok | RunStatus::Skipped => {
            tracing::info!(
                schedule = name,
                "schedule {name}: {}: {message}",
                performed.status
            )
        }
        RunStatus::Refused | RunStatus::Failed => {
            tracing::warn!(
                schedule = name,
                "schedule {name}: {}: {message}",
                performed.status
            )
        }
    }
}

// ----- persistence ------------------------------------------------------------------------------

/// `STATE_DIR/schedules.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u32,
    /// By schedule name.
    pub schedules: BTreeMap<String, SavedSchedule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSchedule {
    /// The expression evaluated (5-field ones with their `0 ` prepended): a changed one starts afresh.
    pub expression: String,
    pub last_run_ms: Option<Millis>,
    /// Newest first.
    #[serde(default)]
    pub runs: Vec<ScheduleRun>,
}

/// Reads `path`; a missing file is an empty state, an unreadable one is moved aside with a warning
/// (the schedules then count from now: nothing is replayed).
pub fn load(path: &Path, now_ms: Millis) -> Persisted {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Persisted::default(),
        Err(err) => {
            tracing::warn!(
                "cannot read {} ({err}); schedules count from now",
                path.display()
            );
            return Persisted::default();
        }
    };
    match serde_json::from_slice::<Persisted>(&bytes) {
        Ok(persisted) if persisted.version == STATE_VERSION => persisted,
        outcome => {
            let why = match outcome {
                Ok(p) => format!("unsupported version {}", p.version),
                Err(err) => err.to_string(),
            };
            let aside = path.with_extension(format!("json.corrupt-{now_ms}"));
            let moved = std::fs::rename(path, &aside)
                .map(|()| format!("moved it to {}", aside.display()))
                .unwrap_or_else(|err| format!("could not move it aside: {err}"));
            tracing::warn!(
                "schedule state {} was unreadable ({why}); {moved}; schedules count from now",
                path.display()
            );
            Persisted::default()
        }
    }
}

fn save(path: &Path, persisted: &Persisted) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(persisted).unwrap_or_default();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            action: "create state dir",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_atomically(path, &bytes)
}

// ----- the task ---------------------------------------------------------------------------------

enum Msg {
    Apply {
        config: Arc<Config>,
        reply: oneshot::Sender<Vec<String>>,
    },
}

/// The runner is gone (tend is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the schedule runner is not running (tend is shutting down)")]
pub struct RunnerGone;

/// The way to read the schedules and to switch them to a new configuration. Cheap to clone.
#[derive(Clone)]
pub struct ScheduleHandle {
    commands: mpsc::Sender<Msg>,
    views: watch::Receiver<Vec<ScheduleView>>,
}

impl std::fmt::Debug for ScheduleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScheduleHandle")
    }
}

impl ScheduleHandle {
    /// Every schedule now, in configuration order.
    pub fn list(&self) -> Vec<ScheduleView> {
        self.views.borrow().clone()
    }

    /// Changes whenever a schedule runs, finishes, or the set changes.
    pub fn subscribe(&self) -> watch::Receiver<Vec<ScheduleView>> {
        self.views.clone()
    }

    /// Switches to the schedules of `config` (a live reload); one line per schedule added, removed
    /// or changed.
    pub async fn apply(&self, config: Arc<Config>) -> Result<Vec<String>, RunnerGone> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Msg::Apply { config, reply })
            .await
            .map_err(|_| RunnerGone)?;
        rx.await.map_err(|_| RunnerGone)
    }
}

/// Starts the runner over `config`'s schedules with their state in `config`'s state dir. It ends when
/// `shutdown` fires; runs in flight are dropped then (an `exec` child is killed).
pub fn spawn(
    config: Arc<Config>,
    perform: impl Perform,
    clock: Clock,
    shutdown: CancellationToken,
) -> (ScheduleHandle, JoinHandle<()>) {
    let path = config.supervisor.state_dir.join(STATE_FILE);
    let now = clock.now_ms();
    let persisted = load(&path, now);
    let book = Book::new(&config.schedules, &persisted, now);
    let (views_tx, views) = watch::channel(book.views());
    let (commands_tx, commands) = mpsc::channel(8);
    let runner = Runner {
        book,
        config,
        path,
        clock,
        perform: Arc::new(perform),
        running: JoinSet::new(),
        views: views_tx,
    };
    let task = tokio::spawn(runner.run(commands, shutdown));
    (
        ScheduleHandle {
            commands: commands_tx,
            views,
        },
        task,
    )
}

struct Runner<P: Perform> {
    book: Book,
    /// The running configuration, handed to each job.
    config: Arc<Config>,
    /// `STATE_DIR/schedules.json`.
    path: PathBuf,
    clock: Clock,
    perform: Arc<P>,
    /// Runs in flight: (entry id, start time, outcome).
    running: JoinSet<(u64, Millis, Performed)>,
    views: watch::Sender<Vec<ScheduleView>>,
}

impl<P: Perform> Runner<P> {
    async fn run(mut self, mut commands: mpsc::Receiver<Msg>, shutdown: CancellationToken) {
        self.persist();
        self.tick();
        loop {
            let wake = self.book.next_wake().map(|ms| self.clock.instant_at(ms));
            tokio::select! {
                msg = commands.recv() => match msg {
                    Some(Msg::Apply { config, reply }) => {
                        let lines = self.book.apply(&config.schedules, self.clock.now_ms());
                        self.config = config;
                        let _ = reply.send(lines);
                        self.persist();
                        self.tick();
                    }
                    None => break,
                },
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => {
                    match joined {
                        Ok((id, started, performed)) => {
                            log_outcome(self.book.name_of(id), &performed);
                            if self.book.finish(id, started, self.clock.now_ms(), performed) {
                                self.persist();
                            }
                        }
                        Err(err) => tracing::error!("a scheduled action panicked: {err}"),
                    }
                }
                _ = crate::clock::sleep_until_opt(wake) => self.tick(),
                _ = shutdown.cancelled() => break,
            }
        }
        // In-flight runs end here (an exec child is killed with its group).
        self.running.shutdown().await;
    }

    fn tick(&mut self) {
        let tick = self.book.tick(self.clock.now_ms());
        for line in &tick.skipped {
            tracing::info!("{line}");
        }
        for start in tick.start {
            let job = Job {
                spec: start.spec,
                config: self.config.clone(),
                at_ms: start.at_ms,
            };
            let on = match &job.spec.action {
                ScheduleAction::Exec { command, .. } => shell_words::join(command),
                _ => job.spec.services.join(", "),
            };
            tracing::info!(
                schedule = %job.spec.name,
                "schedule {}: {} {on}",
                job.spec.name,
                job.spec.action.name(),
            );
            let performed = self.perform.perform(job);
            let (id, at) = (start.id, start.at_ms);
            self.running.spawn(async move { (id, at, performed.await) });
        }
        if tick.changed {
            self.persist();
        } else {
            self.publish();
        }
    }

    fn persist(&mut self) {
        if let Err(err) = save(&self.path, &self.book.persisted()) {
            tracing::warn!("cannot save the schedules' last runs: {err}");
        }
        self.publish();
    }

    fn publish(&self) {
        let views = self.book.views();
        self.views.send_if_modified(|current| {
            if *current == views {
                return false;
            }
            *current = views;
            true
        });
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
