//! The check runtime: one task per (check, service) that measures on its interval, and one analyzer per
//! service that turns its log lines (and `/stats` error entries) into classified, counted records.
//!
//! Every result goes to the core ([`CoreHandle::report`]) and to the [`History`]; flood waits seen in
//! logs or `/stats` go to the core as [`CoreHandle::flood`]. Nothing here decides what to do about a
//! result, and a slow or hung check only ever delays itself: each runs in its own task under its own
//! timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::classify::{PatternSet, PatternSpec, Severity};
use super::history::{History, Point, Series};
use super::probe::{self, json::EventCursor, ProbeResult, Status};
use super::records::{RecordAssembler, RecordLimits};
use super::stats::{ErrorStats, ErrorTotals, GroupRow, TypeSummary};
use crate::clock::{Clock, Millis};
use crate::config::{CheckConfig, CheckKind, Config, PatternConfig};
use crate::core::{CheckReport, CoreHandle, Event, ServiceStatus};
use crate::logs::{LogLine, ServiceLog, SharedLine, Stream};

/// Samples kept per error type.
const SAMPLES_PER_TYPE: usize = 5;
/// How far before a run's start a `/stats` entry may be dated and still count as the run's.
const EVENT_CLOCK_SLACK_MS: Millis = 1000;
/// How far back error counts can be asked for.
const STATS_KEEP_MS: Millis = 25 * 60 * 60 * 1000;

/// Everything known about one service's errors, for the page and `tend diagnose`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub service: String,
    pub totals: ErrorTotals,
    pub types: Vec<TypeSummary>,
    /// `group_by` tables by pattern name (e.g. the chat ids of "Cannot find chat").
    pub groups: BTreeMap<String, Vec<GroupRow>>,
    /// The longest flood wait in the last 24 hours: (seconds, when).
    pub longest_flood: Option<(u64, Millis)>,
}

enum AnalyzerMsg {
    /// New `/stats` `last_errors` entries.
    Entries(Vec<probe::json::ErrorEntry>),
    Report(oneshot::Sender<ErrorReport>),
    /// Evaluate a `log` check over its window.
    Evaluate {
        critical: Vec<String>,
        window: Duration,
        reply: oneshot::Sender<ProbeResult>,
    },
    /// A reload changed the log checks: classify with these patterns from now on (counts stay).
    Patterns(PatternSet),
}

/// Queries into the running checks, and the way to rewire them after a reload.
#[derive(Clone)]
pub struct MonitorHandle {
    running: Arc<Mutex<Running>>,
    spawner: Arc<Spawner>,
    history: History,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorHandle")
    }
}

/// The tasks running now. Locked only for short, non-awaiting bookkeeping.
#[derive(Default)]
struct Running {
    /// Service -> its analyzer's inbox and the token that stops it.
    analyzers: BTreeMap<String, (mpsc::Sender<AnalyzerMsg>, CancellationToken)>,
    /// (check, service) -> the definition it runs with, the service's port, and its token.
    tasks: BTreeMap<(String, String), (CheckConfig, Option<u16>, CancellationToken)>,
}

/// What every task is built with.
struct Spawner {
    core: CoreHandle,
    http: reqwest::Client,
    history: History,
    clock: Clock,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Spawner {
    fn analyzer(
        &self,
        config: &Config,
        name: &str,
        log: &ServiceLog,
    ) -> (mpsc::Sender<AnalyzerMsg>, CancellationToken) {
        let (tx, rx) = mpsc::channel(64);
        let token = self.shutdown.child_token();
        let analyzer = Analyzer {
            service: name.to_string(),
            patterns: pattern_set_for(config, name),
            stdout: RecordAssembler::new(RecordLimits::default()),
            stderr: RecordAssembler::new(RecordLimits::default()),
            stats: ErrorStats::new(SAMPLES_PER_TYPE, STATS_KEEP_MS),
            clock: self.clock,
            core: self.core.clone(),
        };
        // Subscribed here, before the core starts the service: no first line is missed.
        self.tracker
            .spawn(analyzer.run(log.subscribe(), self.core.subscribe(), rx, token.clone()));
        (tx, token)
    }

    fn check(
        &self,
        check: &CheckConfig,
        service: &str,
        port: Option<u16>,
        analyzer: Option<mpsc::Sender<AnalyzerMsg>>,
    ) -> CancellationToken {
        let token = self.shutdown.child_token();
        let task = CheckTask {
            check: check.clone(),
            service: service.to_string(),
            port,
            http: self.http.clone(),
            core: self.core.clone(),
            history: self.history.clone(),
            analyzer,
            clock: self.clock,
        };
        self.tracker.spawn(task.run(token.clone()));
        token
    }
}

/// Every (check, service) pair `config` asks for, with the check and the service's port.
fn wanted_tasks(config: &Config) -> BTreeMap<(String, String), (CheckConfig, Option<u16>)> {
    let mut wanted = BTreeMap::new();
    for check in config.checks.values() {
        for service in &check.services {
            if let Some(service_cfg) = config.services.get(service) {
                wanted.insert(
                    (check.name.clone(), service.clone()),
                    (check.clone(), service_cfg.port),
                );
            }
        }
    }
    wanted
}

impl std::fmt::Debug for AnalyzerMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnalyzerMsg")
    }
}

impl MonitorHandle {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // Nothing panics while holding it; a poisoned lock still holds consistent maps.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewires the checks after a reload to `config`: analyzers of removed services stop, added
    /// services get one (subscribed to `logs`, which holds their logs, before the core starts them);
    /// a (check, service) task whose definition or port changed is replaced, unchanged ones keep
    /// running. History is keyed by (check, service), so it survives a replaced task.
    pub fn apply(&self, config: &Config, logs: &BTreeMap<String, ServiceLog>) {
        let mut running = self.running();
        let running = &mut *running;
        running.analyzers.retain(|name, (_, token)| {
            let keep = config.services.contains_key(name);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (name, (tx, _)) in &running.analyzers {
            let _ = tx.try_send(AnalyzerMsg::Patterns(pattern_set_for(config, name)));
        }
        for (name, log) in logs {
            if config.services.contains_key(name) && !running.analyzers.contains_key(name) {
                let analyzer = self.spawner.analyzer(config, name, log);
                running.analyzers.insert(name.clone(), analyzer);
            }
        }
        let wanted = wanted_tasks(config);
        running.tasks.retain(|key, (check, port, token)| {
            let keep = wanted
                .get(key)
                .is_some_and(|(c, p)| c == check && p == port);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (key, (check, port)) in wanted {
            if running.tasks.contains_key(&key) {
                continue;
            }
            let analyzer = running.analyzers.get(&key.1).map(|(tx, _)| tx.clone());
            let token = self.spawner.check(&check, &key.1, port, analyzer);
            running.tasks.insert(key, (check, port, token));
        }
    }

    pub async fn errors(&self, service: &str) -> Option<ErrorReport> {
        let tx = self.running().analyzers.get(service)?.0.clone();
        let (reply, rx) = oneshot::channel();
        tx.send(AnalyzerMsg::Report(reply)).await.ok()?;
        rx.await.ok()
    }

    pub async fn history(&self, since_ms: Millis) -> Vec<Series> {
        self.history.query(since_ms).await
    }
}

/// Starts every check and analyzer; they stop when `shutdown` fires. Wait on the tracker to know they
/// are done (the history saves last). Call it before the core starts any service, so the analyzers
/// see every line from the first one.
pub fn spawn(
    config: Arc<Config>,
    core: CoreHandle,
    logs: &BTreeMap<String, ServiceLog>,
    clock: Clock,
    shutdown: CancellationToken,
) -> (MonitorHandle, TaskTracker) {
    let tracker = TaskTracker::new();
    let (history, history_task) =
        History::spawn(config.supervisor.state_dir.clone(), clock, shutdown.clone());
    tracker.spawn(async move {
        let _ = history_task.await;
    });
    let http = reqwest::Client::builder()
        .user_agent(concat!("tend/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();

    let spawner = Arc::new(Spawner {
        core: core.clone(),
        http: http.clone(),
        history: history.clone(),
        clock,
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    });
    let handle = MonitorHandle {
        running: Arc::new(Mutex::new(Running::default())),
        spawner,
        history,
    };
    handle.apply(&config, logs);
    tracker.close();
    (handle, tracker)
}

/// The patterns a service's analyzer uses: those of its log checks first, then the shipped set unless
/// every log check on it turned the shipped set off.
fn pattern_set_for(config: &Config, service: &str) -> PatternSet {
    let mut specs: Vec<PatternSpec> = Vec::new();
    let mut shipped = true;
    let mut any_log_check = false;
    for check in config.checks.values() {
        if let CheckKind::Log {
            shipped_patterns,
            patterns,
            ..
        } = &check.kind
        {
            if !check.services.iter().any(|s| s == service) {
                continue;
            }
            if !any_log_check {
                shipped = false;
                any_log_check = true;
            }
            shipped |= *shipped_patterns;
            specs.extend(patterns.iter().map(spec_of));
        }
    }
    if shipped && specs.is_empty() {
        // The usual case: a clone shares the compiled shipped set (a few MB per service otherwise).
        return PatternSet::shipped();
    }
    if shipped {
        specs.extend(PatternSet::shipped().specs().iter().cloned());
    }
    PatternSet::compile(&specs).unwrap_or_else(|err| {
        // The config validated every regex; only a clash between sets could get here.
        tracing::error!(
            service,
            "log patterns do not compile together ({err}); using the shipped set"
        );
        PatternSet::shipped()
    })
}

/// A configured `[[checks.NAME.pattern]]` as the classifier takes it (the config validated it).
pub fn spec_of(p: &PatternConfig) -> PatternSpec {
    PatternSpec {
        name: p.name.clone(),
        regex: p.regex.clone(),
        severity: match p.severity.as_str() {
            "warning" => Severity::Warning,
            "info" => Severity::Info,
            _ => Severity::Error,
        },
        group_by: p.group_by.clone(),
    }
}

/// One service's log analysis: sole owner of its assemblers and error stats.
struct Analyzer {
    service: String,
    patterns: PatternSet,
    stdout: RecordAssembler,
    stderr: RecordAssembler,
    stats: ErrorStats,
    clock: Clock,
    core: CoreHandle,
}

impl Analyzer {
    async fn run(
        mut self,
        mut lines: broadcast::Receiver<SharedLine>,
        mut events: broadcast::Receiver<Event>,
        mut inbox: mpsc::Receiver<AnalyzerMsg>,
        shutdown: CancellationToken,
    ) {
        loop {
            // A pending record (a traceback still growing) is completed once its stream has been quiet
            // for the idle time; with nothing pending there is no timer at all.
            let idle_at = [self.stdout.idle_deadline(), self.stderr.idle_deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(|ms| self.clock.instant_at(ms));
            tokio::select! {
                line = lines.recv() => match line {
                    Ok(line) => self.line(&line).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(service = %self.service, "log analysis fell behind; {n} lines not classified");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                event = events.recv() => {
                    if let Ok(Event::Spawned { name, .. }) = event {
                        if name == self.service {
                            self.stats.service_restarted();
                        }
                    }
                }
                msg = inbox.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                _ = crate::clock::sleep_until_opt(idle_at) => {
                    let now = self.clock.now_ms();
                    for record in [self.stdout.flush_idle(now), self.stderr.flush_idle(now)].into_iter().flatten() {
                        self.record(record).await;
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    async fn line(&mut self, line: &LogLine) {
        let assembler = match line.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
            Stream::Tend => return,
        };
        if let Some(record) = assembler.push(line) {
            self.record(record).await;
        }
    }

    async fn record(&mut self, record: super::records::Record) {
        let Some(classified) = self.patterns.classify(&record) else {
            return;
        };
        let at_ms = record.first_ts.timestamp_millis();
        self.stats.record(&classified, &record.text(), at_ms);
        if let Some(seconds) = classified.seconds {
            let report = flood_report(&self.service, &classified, &record.text(), at_ms, seconds);
            let _ = self.core.flood(report).await;
        }
    }

    async fn handle(&mut self, msg: AnalyzerMsg) {
        match msg {
            AnalyzerMsg::Entries(entries) => {
                for entry in entries {
                    let Some(classified) = self.patterns.classify_text(&entry.error) else {
                        continue;
                    };
                    // Only flood waits: the other entries repeat a line the log already counted, but a
                    // FloodWait on the send path is visible nowhere else.
                    let Some(seconds) = classified.seconds else {
                        continue;
                    };
                    let at_ms = (entry.ts * 1000.0) as Millis;
                    self.stats.record(&classified, &entry.error, at_ms);
                    let report =
                        flood_report(&self.service, &classified, &entry.error, at_ms, seconds);
                    let _ = self.core.flood(report).await;
                }
            }
            AnalyzerMsg::Patterns(patterns) => self.patterns = patterns,
            AnalyzerMsg::Report(reply) => {
                let now = self.clock.now_ms();
                let types = self.stats.summary(now);
                let groups = types
                    .iter()
                    .map(|t| (t.name.clone(), self.stats.groups(&t.name)))
                    .filter(|(_, rows)| !rows.is_empty())
                    .collect();
                let _ = reply.send(ErrorReport {
                    service: self.service.clone(),
                    totals: self.stats.error_totals(),
                    types,
                    groups,
                    longest_flood: self.stats.max_seconds_since(now - 24 * 3600 * 1000),
                });
            }
            AnalyzerMsg::Evaluate {
                critical,
                window,
                reply,
            } => {
                let now = self.clock.now_ms();
                let since = now - window.as_millis() as Millis;
                let mut status = Status::Ok;
                let mut parts = Vec::new();
                let mut errors = 0u64;
                for t in self.stats.summary(now) {
                    if t.severity == Severity::Info {
                        continue;
                    }
                    let n = self.stats.count_since(&t.name, since);
                    if n == 0 {
                        continue;
                    }
                    parts.push(format!("{} ×{n}", t.name));
                    if critical.contains(&t.name) {
                        status = Status::Critical;
                    } else if t.severity == Severity::Error && status == Status::Ok {
                        status = Status::Warning;
                    }
                    if t.severity == Severity::Error {
                        errors += n;
                    }
                }
                let window_text = crate::config::format_duration(window);
                let message = if parts.is_empty() {
                    format!("no errors in the last {window_text}")
                } else {
                    format!("{} in the last {window_text}", parts.join(", "))
                };
                let _ = reply.send(ProbeResult::new(status, message).with_value(errors as f64));
            }
        }
    }
}

/// One check on one service, run on its interval.
struct CheckTask {
    check: CheckConfig,
    service: String,
    port: Option<u16>,
    http: reqwest::Client,
    core: CoreHandle,
    history: History,
    analyzer: Option<mpsc::Sender<AnalyzerMsg>>,
    clock: Clock,
}

impl CheckTask {
    async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.check.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cursor = EventCursor::new();
        let mut cpu = probe::process::CpuSampler::new();
        let mut snapshot = self.core.snapshot();
        // Whether the last measurement found no process: then the next one waits for the service to
        // appear rather than a whole interval, so a start is checked (and found ready) at once.
        let mut idle = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = snapshot.changed(), if idle => {
                    if changed.is_err() {
                        return; // the core is gone
                    }
                }
                _ = shutdown.cancelled() => return,
            }
            let status = snapshot
                .borrow_and_update()
                .services
                .iter()
                .find(|s| s.name == self.service)
                .cloned();
            // Not (yet) in the snapshot: a service a reload is adding; wait for it like for a start.
            let Some(status) = status else {
                idle = true;
                continue;
            };
            // No process, nothing to measure: the history shows a gap, not a red dot.
            let Some(pid) = status.pid.filter(|_| status.state.has_process()) else {
                idle = true;
                continue;
            };
            if idle {
                idle = false;
                tick.reset();
            }
            let started = Instant::now();
            let budget = self.check.timeout + Duration::from_millis(500);
            let result = match tokio::time::timeout(
                budget,
                self.measure(&status, pid, &mut cursor, &mut cpu),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => ProbeResult::timed_out(self.check.timeout),
            };
            let result = if result.duration_ms == 0 {
                result.with_duration(started.elapsed())
            } else {
                result
            };
            let at_ms = self.clock.now_ms();
            self.history.add(
                &self.check.name,
                &self.service,
                Point {
                    at_ms,
                    status: result.status,
                    duration_ms: result.duration_ms,
                    value: result.value,
                    message: if result.status == Status::Ok {
                        String::new()
                    } else {
                        result.message.clone()
                    },
                },
            );
            let report = CheckReport {
                check: self.check.name.clone(),
                service: self.service.clone(),
                result,
                at_ms,
            };
            if self.core.report(report).await.is_err() {
                return;
            }
        }
    }

    fn expand(&self, template: &str) -> String {
        super::spec::expand(template, &self.service, self.port)
    }

    async fn measure(
        &self,
        status: &ServiceStatus,
        pid: u32,
        cursor: &mut EventCursor,
        cpu: &mut probe::process::CpuSampler,
    ) -> ProbeResult {
        let timeout = self.check.timeout;
        match &self.check.kind {
            kind @ CheckKind::Http { .. } => {
                let Some(spec) = super::spec::http_spec(kind, &self.service, self.port, timeout)
                else {
                    return ProbeResult::unknown("not an http check");
                };
                probe::http::probe(&self.http, &spec).await
            }
            kind @ CheckKind::Json { events, .. } => {
                let Some(spec) = super::spec::json_spec(kind, &self.service, self.port, timeout)
                else {
                    return ProbeResult::unknown("not a json check");
                };
                let (result, doc) = probe::json::probe(&self.http, &spec).await;
                if let (Some(events), Some(doc), Some(analyzer)) = (events, doc, &self.analyzer) {
                    // Every entry of the run being measured counts, the first document's too: tend
                    // started this process, so whatever its /stats lists happened under this tend
                    // (a FloodWait on the send path before the first poll is visible nowhere else).
                    // An entry older than the run is not this process's; the slack covers the two
                    // clocks (tend's and the service's) reading a little apart.
                    let run_start_s = status
                        .since_ms
                        .map_or(f64::MIN, |ms| (ms - EVENT_CLOCK_SLACK_MS) as f64 / 1000.0);
                    let entries: Vec<_> = probe::json::new_events(&doc, events, cursor)
                        .into_iter()
                        .filter(|e| e.ts >= run_start_s)
                        .collect();
                    if !entries.is_empty() {
                        let _ = analyzer.send(AnalyzerMsg::Entries(entries)).await;
                    }
                }
                result
            }
            CheckKind::Tcp { address } => {
                let address = self.expand(address);
                match tokio::net::lookup_host(&address)
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                {
                    Some(addr) => probe::tcp::probe(addr, timeout).await,
                    None => ProbeResult::unknown(format!("cannot resolve address {address}")),
                }
            }
            CheckKind::Process { max_rss, max_cpu } => {
                let usage = probe::process::tree_usage(pid);
                let pct = usage.as_ref().and_then(|u| cpu.sample(u, Instant::now()));
                probe::process::probe(usage.as_ref(), pct, *max_rss, *max_cpu)
            }
            CheckKind::Exec { command } => {
                let Some((program, args)) = command.split_first() else {
                    return ProbeResult::unknown("empty command");
                };
                let cwd = self
                    .check
                    .source
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                let mut env = vec![
                    ("TEND_SERVICE".to_string(), self.service.clone()),
                    ("TEND_CHECK".to_string(), self.check.name.clone()),
                    ("TEND_PID".to_string(), pid.to_string()),
                    ("TEND_HOST".to_string(), "127.0.0.1".to_string()),
                ];
                if let Some(port) = self.port {
                    env.push(("TEND_PORT".to_string(), port.to_string()));
                }
                let spec = probe::exec::ExecSpec {
                    program: program.into(),
                    args: args.to_vec(),
                    env,
                    cwd,
                    timeout,
                };
                probe::exec::run(&spec).await
            }
            CheckKind::Log {
                critical, window, ..
            } => {
                let Some(analyzer) = &self.analyzer else {
                    return ProbeResult::unknown("no log analyzer for this service");
                };
                let (reply, rx) = oneshot::channel();
                let msg = AnalyzerMsg::Evaluate {
                    critical: critical.clone(),
                    window: window.unwrap_or(self.check.interval),
                    reply,
                };
                if analyzer.send(msg).await.is_err() {
                    return ProbeResult::unknown("log analyzer stopped");
                }
                rx.await
                    .unwrap_or_else(|_| ProbeResult::unknown("log analyzer stopped"))
            }
        }
    }
}

/// A flood wait as the core wants it: raised or slept through (the pattern says which), and whether
/// it concerns dialog fetches (a wait on a send names its request; one on GetDialogs or none at all is
/// the account's dialog budget).
fn flood_report(
    service: &str,
    classified: &super::classify::Classified,
    text: &str,
    at_ms: Millis,
    seconds: u64,
) -> crate::core::FloodReport {
    let names_other_request = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word.ends_with("Request") && word != "GetDialogsRequest");
    crate::core::FloodReport {
        service: service.to_string(),
        at_ms,
        seconds,
        raised: classified.pattern != "FloodSleep",
        dialogs: !names_other_request,
    }
}
