//! What the page shows, computed from what the core published: a [`Snapshot`] plus the checks' error
//! reports, the process trees' memory/CPU and the alert banners. Pure functions over their inputs,
//! except [`UsageSampler`], which reads /proc (memory and CPU of each service's process tree).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::time::Instant;

use super::condition::{condition, web_words, Condition};
use super::redact::Redactor;
use crate::checks::monitor::ErrorReport;
use crate::checks::probe::procstat::{tree_usage, CpuSampler};
use crate::clock::Millis;
use crate::config::{CheckKind, Config, WebRole};
use crate::core::{CheckView, RecoveryView, ServiceState, ServiceStatus, Snapshot};
use crate::schedule::ScheduleView;

/// Memory and CPU of one process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub rss_bytes: u64,
    /// Percent of one core since the previous sample; `None` on the first sample.
    pub cpu_percent: Option<f64>,
}

/// Samples are reused for this long: a /proc scan per request would cost more than the page under load,
/// and CPU over a millisecond says nothing.
const USAGE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// CPU needs two samples; this keeps the previous one per pid, and the latest result.
#[derive(Default)]
pub struct UsageSampler {
    samplers: Mutex<Samples>,
}

#[derive(Default)]
struct Samples {
    cpu: HashMap<u32, CpuSampler>,
    last: Option<(Instant, Vec<u32>, HashMap<u32, Usage>)>,
}

impl UsageSampler {
    /// Blocking /proc reads: call from `spawn_blocking` (it is fast, but it is I/O).
    pub fn sample(&self, pids: &[u32]) -> HashMap<u32, Usage> {
        let mut guard = self.samplers.lock().unwrap_or_else(|p| p.into_inner());
        let Samples {
            cpu: samplers,
            last,
        } = &mut *guard;
        if let Some((at, for_pids, usage)) = last {
            if at.elapsed() < USAGE_MAX_AGE && for_pids == pids {
                return usage.clone();
            }
        }
        samplers.retain(|pid, _| pids.contains(pid));
        let mut out = HashMap::new();
        for pid in pids {
            if let Some(usage) = tree_usage(*pid) {
                let cpu = samplers
                    .entry(*pid)
                    .or_default()
                    .sample(&usage, Instant::now());
                out.insert(
                    *pid,
                    Usage {
                        rss_bytes: usage.rss_bytes,
                        cpu_percent: cpu,
                    },
                );
            }
        }
        *last = Some((Instant::now(), pids.to_vec(), out.clone()));
        out
    }
}

/// One error type on a card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorType {
    pub name: String,
    pub severity: String,
    pub since_start: u64,
    pub total: u64,
    pub last_hour: u64,
    pub last_seen_ms: Millis,
}

/// One card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCard {
    #[serde(flatten)]
    pub status: ServiceStatus,
    /// green | amber | red | grey
    pub color: &'static str,
    pub uptime_ms: Option<Millis>,
    pub usage: Option<Usage>,
    /// Entities in the dialog cache (the json check on `/cache_size`).
    pub cache_size: Option<f64>,
    pub errors_since_start: u64,
    pub errors_total: u64,
    pub error_types: Vec<ErrorType>,
    /// Why the next start is held back, in words.
    pub next_start_text: Option<String>,
    /// The last start's reason, in words (`manual by web:ann@10.0.0.1`).
    pub last_start_text: Option<String>,
    /// What holds the next start back, without the time (the page counts down to
    /// `next_start.at_ms` itself).
    pub next_start_hold: Option<String>,
    /// The named state: zombie, held by the account, waiting on spacing or the queue, fatal...
    pub condition: Condition,
    /// Its position in supervisor.toml (the cards' order).
    pub file_index: usize,
    /// Without a process: what the last run's checks said, and when it ended. `checks` and
    /// `cache_size` above are then empty, so a dead run never looks alive.
    pub last_run: Option<LastRun>,
}

/// What the checks said of a run that has ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    /// When it ended (`None`: it never ran under this tend, the checks are from before).
    pub ended_ms: Option<Millis>,
    pub checks: Vec<CheckView>,
    pub cache_size: Option<f64>,
}

/// One group's account: the flood model's summary line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountLine {
    pub group: String,
    pub summary: String,
}

/// A raised alert, for the banner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub service: String,
    pub check: String,
    pub failures: u32,
    pub message: String,
    pub at_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Me {
    pub user: String,
    pub role: WebRole,
}

/// Everything `/api/status` answers and the SSE stream pushes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// The server's clock when this view was built: every uptime and countdown is relative to it.
    pub at_ms: Millis,
    /// When the core published the snapshot the view is built from (older than `at_ms` on an idle system).
    pub snapshot_at_ms: Millis,
    pub services: Vec<ServiceCard>,
    pub recoveries: Vec<RecoveryView>,
    pub alerts: Vec<AlertView>,
    /// Why the last reload of the configuration failed (nothing changed), until a good one.
    pub config_error: Option<String>,
    /// The state file was corrupt or missing at start, and what tend did (until tend restarts).
    pub state_warning: Option<String>,
    /// Groups (a "Clear Flood Wait" per group).
    pub groups: Vec<String>,
    /// Each group's account as the flood model sees it.
    pub accounts: Vec<AccountLine>,
    /// The error types the log filter offers (pattern names).
    pub error_types: Vec<String>,
    /// The `[[schedule]]` entries: next run and recent outcomes (messages redacted).
    pub schedules: Vec<ScheduleView>,
    /// The page's own configuration: `[web]` changes that wait for a restart of tend, TLS files a
    /// reload could not read.
    pub web_notices: Vec<String>,
    pub me: Option<Me>,
}

/// The dot: green running; amber on the way (starting, waiting, backoff, stopping) or in a flood wait;
/// red down (stopped, exited, fatal).
pub fn color(status: &ServiceStatus, now_ms: Millis) -> &'static str {
    if status.flood_until_ms.is_some_and(|t| t > now_ms) {
        return "amber";
    }
    match status.state {
        ServiceState::Running if status.checks.iter().any(|c| c.alerting) => "amber",
        ServiceState::Running => "green",
        ServiceState::Starting
        | ServiceState::Waiting
        | ServiceState::Backoff
        | ServiceState::Stopping => "amber",
        ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal => "red",
    }
}

/// The value of the json check that reads `/cache_size`, if the service has one.
pub(super) fn cache_size(config: &Config, status: &ServiceStatus) -> Option<f64> {
    status
        .checks
        .iter()
        .find(|c| {
            config.checks.get(&c.check).is_some_and(|cfg| {
                matches!(&cfg.kind, CheckKind::Json { pointer, .. } if pointer.contains("cache"))
            })
        })
        .and_then(|c| c.value)
}

/// The view at `now` (the server's clock, not the snapshot's: a snapshot is only re-published on a
/// change, and uptimes and countdowns must move between changes).
#[allow(clippy::too_many_arguments)]
pub fn build(
    config: &Config,
    snapshot: &Snapshot,
    now: Millis,
    errors: &HashMap<String, ErrorReport>,
    usage: &HashMap<u32, Usage>,
    redactor: &Redactor,
    error_types: &[String],
) -> StatusView {
    let mut alerts = Vec::new();
    let recovering: Vec<&str> = snapshot
        .recoveries
        .iter()
        .filter(|r| !r.recovery.is_finished())
        .map(|r| r.recovery.group.as_str())
        .collect();
    let mut services: Vec<ServiceCard> = snapshot
        .services
        .iter()
        .map(|s| {
            let mut status = s.clone();
            let alive = s.state.has_process();
            // A note a cancelled recovery left is about that recovery: a new one of the group, or
            // a process, makes it untrue.
            let stale_note = status.message.as_deref().is_some_and(|m| {
                m.contains("cancelled recovery")
                    && (alive || s.group.as_deref().is_some_and(|g| recovering.contains(&g)))
            });
            status.message = status
                .message
                .filter(|_| !stale_note)
                .map(|m| web_words(&redactor.text(&m)));
            for check in &mut status.checks {
                check.message = redactor.text(&check.message).into_owned();
                if check.alerting && alive {
                    alerts.push(AlertView {
                        service: s.name.clone(),
                        check: check.check.clone(),
                        failures: check.failures,
                        message: check.message.clone(),
                        at_ms: check.at_ms,
                    });
                }
            }
            let report = errors.get(&s.name);
            let next_start_text = s.next_start.hold.as_ref().map(|hold| {
                format!(
                    "{} (in {})",
                    hold,
                    crate::clock::human_ms(s.next_start.at_ms - now)
                )
            });
            let cache = cache_size(config, s);
            let last_run = (!alive && !status.checks.is_empty()).then(|| LastRun {
                ended_ms: s.last_exit.as_ref().map(|e| e.at_ms),
                checks: std::mem::take(&mut status.checks),
                cache_size: cache,
            });
            let cache = cache.filter(|_| alive);
            ServiceCard {
                condition: condition(&status, cache, now),
                next_start_hold: s.next_start.hold.as_ref().map(|h| h.to_string()),
                file_index: config
                    .services
                    .get(&s.name)
                    .map_or(usize::MAX, |c| c.file_index),
                last_run,
                color: color(s, now),
                uptime_ms: s
                    .since_ms
                    .filter(|_| s.state.has_process())
                    .map(|t| now - t),
                usage: s
                    .pid
                    .filter(|_| alive)
                    .and_then(|pid| usage.get(&pid).copied()),
                cache_size: cache,
                errors_since_start: report.map_or(0, |r| r.totals.since_service_start),
                errors_total: report.map_or(0, |r| r.totals.since_tend_start),
                error_types: report
                    .map(|r| {
                        r.types
                            .iter()
                            .map(|t| ErrorType {
                                name: t.name.clone(),
                                severity: t.severity.to_string(),
                                since_start: t.total_since_service_start,
                                total: t.total_since_tend_start,
                                last_hour: t.last_1h,
                                last_seen_ms: t.last_seen_ms,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                next_start_text,
                last_start_text: s.last_start.as_ref().map(|r| {
                    let forced = if r.forced { " (forced)" } else { "" };
                    redactor.text(&format!("{}{forced}", r.reason)).into_owned()
                }),
                status,
            }
        })
        .collect();
    services.sort_by(|a, b| (a.file_index, &a.status.name).cmp(&(b.file_index, &b.status.name)));
    StatusView {
        at_ms: now,
        snapshot_at_ms: snapshot.at_ms,
        services,
        recoveries: snapshot
            .recoveries
            .iter()
            .map(|r| RecoveryView {
                summary: web_words(&redactor.text(&r.summary)),
                ..r.clone()
            })
            .collect(),
        alerts,
        config_error: snapshot
            .config_error
            .as_ref()
            .map(|e| redactor.text(e).into_owned()),
        state_warning: snapshot
            .state_warning
            .as_ref()
            .map(|w| redactor.text(w).into_owned()),
        groups: config.groups.keys().cloned().collect(),
        accounts: snapshot
            .accounts
            .iter()
            .map(|a| AccountLine {
                group: a.group.clone(),
                summary: redactor.text(&a.summary).into_owned(),
            })
            .collect(),
        error_types: error_types.to_vec(),
        schedules: Vec::new(),
        web_notices: Vec::new(),
        me: None,
    }
}

/// The schedules as the page shows them: command lines and outcome messages may quote a secret (an
/// exec command's arguments, a command's output), so they pass the redactor.
pub fn schedules(views: Vec<ScheduleView>, redactor: &Redactor) -> Vec<ScheduleView> {
    views
        .into_iter()
        .map(|mut view| {
            view.detail = view.detail.map(|d| redactor.text(&d).into_owned());
            for run in &mut view.runs {
                run.message = redactor.text(&run.message).into_owned();
            }
            view
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            name: "a".into(),
            state,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn dot_colors() {
        assert_eq!(color(&status(ServiceState::Running), 0), "green");
        assert_eq!(color(&status(ServiceState::Backoff), 0), "amber");
        assert_eq!(color(&status(ServiceState::Fatal), 0), "red");
        assert_eq!(color(&status(ServiceState::Stopped), 0), "red");
        let mut flooded = status(ServiceState::Running);
        flooded.flood_until_ms = Some(10);
        assert_eq!(color(&flooded, 5), "amber");
        assert_eq!(color(&flooded, 11), "green");
    }

    fn config() -> Config {
        let text = r#"
[groups.telegram]
[services.send_text]
command = "true"
group = "telegram"
port = 5101
[services.send_media]
command = "true"
group = "telegram"
port = 5102
"#;
        crate::config::parse(std::path::Path::new("supervisor.toml"), text).unwrap()
    }

    fn view_at(snapshot: &Snapshot, now: Millis) -> StatusView {
        let redactor = Redactor::new(&[], std::iter::empty());
        build(
            &config(),
            snapshot,
            now,
            &HashMap::new(),
            &HashMap::new(),
            &redactor,
            &[],
        )
    }

    fn check(name: &str) -> CheckView {
        CheckView {
            check: name.into(),
            status: crate::checks::probe::Status::Ok,
            message: "HTTP 200".into(),
            value: None,
            at_ms: 1_000,
            failures: 0,
            alerting: false,
        }
    }

    #[test]
    fn clocks_move_with_now_not_with_the_snapshot() {
        let snapshot = Snapshot {
            at_ms: 10_000,
            services: vec![ServiceStatus {
                name: "send_text".into(),
                state: ServiceState::Running,
                since_ms: Some(4_000),
                ..ServiceStatus::default()
            }],
            ..Snapshot::default()
        };
        let a = view_at(&snapshot, 10_000);
        let b = view_at(&snapshot, 16_000);
        assert_eq!(a.services[0].uptime_ms, Some(6_000));
        assert_eq!(b.services[0].uptime_ms, Some(12_000));
        assert_eq!((b.at_ms, b.snapshot_at_ms), (16_000, 10_000));
        assert_eq!(b.state_warning, None);
        let warned = Snapshot {
            state_warning: Some("state.json was corrupt: moved aside".into()),
            ..snapshot
        };
        assert_eq!(
            view_at(&warned, 16_000).state_warning.as_deref(),
            Some("state.json was corrupt: moved aside")
        );
    }

    #[test]
    fn cards_in_file_order_and_a_dead_run_is_only_a_last_run() {
        let snapshot = Snapshot {
            at_ms: 10_000,
            services: vec![
                ServiceStatus {
                    name: "send_media".into(),
                    state: ServiceState::Stopped,
                    pid: None,
                    checks: vec![check("health")],
                    last_exit: Some(crate::core::ExitInfo {
                        at_ms: 9_000,
                        code: Some(0),
                        signal: None,
                        ran_ms: 5_000,
                    }),
                    message: Some(
                        "left stopped by the cancelled recovery of telegram: `tend start send_media` starts it"
                            .into(),
                    ),
                    ..ServiceStatus::default()
                },
                ServiceStatus {
                    name: "send_text".into(),
                    state: ServiceState::Running,
                    checks: vec![check("health")],
                    ..ServiceStatus::default()
                },
            ],
            ..Snapshot::default()
        };
        let v = view_at(&snapshot, 10_000);
        let names: Vec<&str> = v.services.iter().map(|c| c.status.name.as_str()).collect();
        assert_eq!(names, ["send_text", "send_media"]);
        let media = &v.services[1];
        assert!(media.status.checks.is_empty());
        assert_eq!(media.last_run.as_ref().unwrap().ended_ms, Some(9_000));
        assert_eq!(media.last_run.as_ref().unwrap().checks.len(), 1);
        assert!(media.cache_size.is_none() && media.usage.is_none());
        assert_eq!(
            media.status.message.as_deref(),
            Some("left stopped by the cancelled recovery of telegram: Start starts it")
        );
        assert_eq!(v.services[0].status.checks.len(), 1);
        assert!(v.services[0].last_run.is_none());
        assert_eq!(v.services[0].status.port, None);
    }
}
