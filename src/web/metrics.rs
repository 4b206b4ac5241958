//! `/metrics` in the Prometheus text format: service states, readiness, restarts, check results,
//! error counts by type, flood waits and each group's flood model, alert delivery failures, build info
//! and the standard `process_*` metrics of tend itself. Behind the login, or a bearer token
//! (`[web] metrics_token_hash`, for Prometheus), unless `[web] metrics_public = true`.
//!
//! Prometheus conventions: counters end in `_total`, a unit is in every name that has one, one unit per
//! metric. The families are a table ([`FAMILIES`]): a header and a function from an [`Input`] (the
//! snapshot, the error counts, the configuration, tend's own process figures) to samples; one renderer
//! writes them all. Reads the snapshot only, never the core; `/proc/self` is read in [`process`].

use std::fmt::Write;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::WebState;
use crate::checks::monitor::ErrorReport;
use crate::config::Config;
use crate::core::flood_model::ModelParams;
use crate::core::{CheckView, ServiceState, ServiceStatus, Snapshot};

#[path = "metrics_process.rs"]
mod process;
pub(super) use process::ProcessStats;

/// Everything the families read.
pub(super) struct Input<'a> {
    pub snapshot: &'a Snapshot,
    pub errors: &'a [ErrorReport],
    pub config: &'a Config,
    /// tend's own process (`None` when `/proc/self` cannot be read).
    pub process: Option<ProcessStats>,
    pub alert_failures: u64,
}

const STATES: &[ServiceState] = &[
    ServiceState::Stopped,
    ServiceState::Waiting,
    ServiceState::Starting,
    ServiceState::Running,
    ServiceState::Backoff,
    ServiceState::Stopping,
    ServiceState::Exited,
    ServiceState::Fatal,
];

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) async fn metrics(State(state): State<WebState>, mut parts: Parts) -> Response {
    let settings = state.live().settings.clone();
    let token_ok = settings
        .metrics_token_hash
        .is_some_and(|expected| super::auth::bearer_matches(&parts, &expected));
    if !settings.metrics_public && !token_ok {
        if let Err(err) = Caller::from_request_parts(&mut parts, &state).await {
            return err.into_response();
        }
    }
    let snapshot = state.core.snapshot().borrow().clone();
    let mut errors = Vec::new();
    for s in &snapshot.services {
        if let Some(report) = state.monitor.errors(&s.name).await {
            errors.push(report);
        }
    }
    let config = state.live().config.clone();
    let input = Input {
        snapshot: &snapshot,
        errors: &errors,
        config: &config,
        process: ProcessStats::read(),
        alert_failures: crate::alerts::failures(),
    };
    let body = render(&input);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// One line of a family: its labels (name, unescaped value) and its value, formatted.
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: String,
}

/// One metric family: its header and how to read its samples off the snapshot.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Input) -> Vec<Sample>,
}

/// A sample per service, labelled `service`.
fn per_service(snapshot: &Snapshot, value: impl Fn(&ServiceStatus) -> String) -> Vec<Sample> {
    snapshot
        .services
        .iter()
        .map(|s| Sample {
            labels: vec![("service", s.name.clone())],
            value: value(s),
        })
        .collect()
}

/// A sample per check of each service with a value, labelled `service` and `check`.
fn per_check(snapshot: &Snapshot, value: impl Fn(&CheckView) -> Option<String>) -> Vec<Sample> {
    let mut samples = Vec::new();
    for s in &snapshot.services {
        for c in &s.checks {
            if let Some(value) = value(c) {
                samples.push(Sample {
                    labels: vec![("service", s.name.clone()), ("check", c.check.clone())],
                    value,
                });
            }
        }
    }
    samples
}

/// Every family, in the order they are exposed.
const FAMILIES: &[Family] = &[
    Family {
        name: "tend_service_up",
        kind: "gauge",
        help: "1 if the service is running.",
        samples: |&Input { snapshot, .. }| {
            per_service(snapshot, |s| {
                u8::from(s.state == ServiceState::Running).to_string()
            })
        },
    },
    Family {
        name: "tend_service_ready",
        kind: "gauge",
        help: "1 if the service is running and its readiness check passes (a zombie with an empty cache is 0).",
        samples: |&Input { snapshot, .. }| {
            per_service(snapshot, |s| {
                u8::from(s.state == ServiceState::Running && s.ready != Some(false)).to_string()
            })
        },
    },
    Family {
        name: "tend_service_start_time_seconds",
        kind: "gauge",
        help: "Unix time the current run started (no sample when not running).",
        samples: |&Input { snapshot, .. }| {
            snapshot
                .services
                .iter()
                .filter(|s| s.state.has_process())
                .filter_map(|s| {
                    s.since_ms.map(|ms| Sample {
                        labels: vec![("service", s.name.clone())],
                        value: seconds(ms),
                    })
                })
                .collect()
        },
    },
    Family {
        name: "tend_service_last_exit_code",
        kind: "gauge",
        help: "Exit code of the last run (128 + N for a signal N).",
        samples: |&Input { snapshot, .. }| {
            snapshot
                .services
                .iter()
                .filter_map(|s| {
                    let exit = s.last_exit.as_ref()?;
                    let code = exit.code.or(exit.signal.map(|n| 128 + n))?;
                    Some(Sample {
                        labels: vec![("service", s.name.clone())],
                        value: code.to_string(),
                    })
                })
                .collect()
        },
    },
    Family {
        name: "tend_service_dialog_cache_size",
        kind: "gauge",
        help: "Entities in the service's dialog cache (its /cache_size json check).",
        samples: |&Input { snapshot, config, .. }| {
            snapshot
                .services
                .iter()
                .filter_map(|s| {
                    let size = super::view::cache_size(config, s)?;
                    Some(Sample {
                        labels: vec![("service", s.name.clone())],
                        value: size.to_string(),
                    })
                })
                .collect()
        },
    },
    Family {
        name: "tend_service_state",
        kind: "gauge",
        help: "1 for the service's current state.",
        samples: |&Input { snapshot, .. }| {
            let mut samples = Vec::new();
            for s in &snapshot.services {
                for st in STATES {
                    samples.push(Sample {
                        labels: vec![("service", s.name.clone()), ("state", st.to_string())],
                        value: u8::from(s.state == *st).to_string(),
                    });
                }
            }
            samples
        },
    },
    Family {
        name: "tend_service_restarts_total",
        kind: "counter",
        help: "Starts since tend came up, not counting the first.",
        samples: |&Input { snapshot, .. }| per_service(snapshot, |s| s.restarts.to_string()),
    },
    Family {
        name: "tend_service_starts_24h",
        kind: "gauge",
        help: "Starts in the last 24 hours.",
        samples: |&Input { snapshot, .. }| per_service(snapshot, |s| s.starts_24h.to_string()),
    },
    Family {
        name: "tend_service_flood_wait_seconds",
        kind: "gauge",
        help: "Seconds left of a known flood wait (0: none).",
        samples: |&Input { snapshot, .. }| {
            let now = snapshot.at_ms;
            per_service(snapshot, |s| {
                let left = s
                    .flood_until_ms
                    .map_or(0, |t| ((t - now).max(0) + 999) / 1000);
                left.to_string()
            })
        },
    },
    Family {
        name: "tend_check_status",
        kind: "gauge",
        help: "Last result: 0 ok, 1 warning, 2 critical, 3 unknown.",
        samples: |&Input { snapshot, .. }| per_check(snapshot, |c| Some(c.status.nagios_code().to_string())),
    },
    Family {
        name: "tend_check_consecutive_failures",
        kind: "gauge",
        help: "Failures in a row.",
        samples: |&Input { snapshot, .. }| per_check(snapshot, |c| Some(c.failures.to_string())),
    },
    Family {
        name: "tend_check_value",
        kind: "gauge",
        help: "The value a check measured, in the check's own unit (see the check's kind).",
        samples: |&Input { snapshot, .. }| {
            per_check(snapshot, |c| {
                c.value.filter(|v| v.is_finite()).map(|v| v.to_string())
            })
        },
    },
    Family {
        name: "tend_errors_total",
        kind: "counter",
        help: "Classified log records since tend started, by type.",
        samples: |&Input { errors, .. }| {
            let mut samples = Vec::new();
            for r in errors {
                for t in &r.types {
                    samples.push(Sample {
                        labels: vec![("service", r.service.clone()), ("type", t.name.clone())],
                        value: t.total_since_tend_start.to_string(),
                    });
                }
            }
            samples
        },
    },
    Family {
        name: "tend_check_last_run_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the check's last result.",
        samples: |&Input { snapshot, .. }| per_check(snapshot, |c| Some(seconds(c.at_ms))),
    },
    Family {
        name: "tend_recovery_active",
        kind: "gauge",
        help: "1 while a group's flood-wait recovery runs (0 for every group without one).",
        samples: |&Input { snapshot, config, .. }| {
            config
                .groups
                .keys()
                .map(|group| {
                    let active = snapshot
                        .recoveries
                        .iter()
                        .any(|r| &r.recovery.group == group && !r.recovery.is_finished());
                    Sample {
                        labels: vec![("group", group.clone())],
                        value: u8::from(active).to_string(),
                    }
                })
                .collect()
        },
    },
    Family {
        name: "tend_group_flood_predicted_wait_seconds",
        kind: "gauge",
        help: "The flood wait the group's model predicts for a dialog sweep started now.",
        samples: |input| per_group(input, |p| seconds(p.wait_ms)),
    },
    Family {
        name: "tend_group_flood_strike_level",
        kind: "gauge",
        help: "The strike level the group's account is at (0: no recent flood waits).",
        samples: |input| per_group(input, |p| p.level.to_string()),
    },
    Family {
        name: "tend_alert_delivery_failures_total",
        kind: "counter",
        help: "Alerts given up on (refused, or retries exhausted) since tend started.",
        samples: |input| {
            vec![Sample {
                labels: Vec::new(),
                value: input.alert_failures.to_string(),
            }]
        },
    },
    Family {
        name: "tend_build_info",
        kind: "gauge",
        help: "Always 1; the version of tend in a label.",
        samples: |_| {
            vec![Sample {
                labels: vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                value: "1".to_string(),
            }]
        },
    },
    Family {
        name: "process_cpu_seconds_total",
        kind: "counter",
        help: "User and system CPU time tend spent, in seconds.",
        samples: |input| process::sample(input, |p| p.cpu_seconds.to_string()),
    },
    Family {
        name: "process_resident_memory_bytes",
        kind: "gauge",
        help: "tend's resident memory size in bytes.",
        samples: |input| process::sample(input, |p| p.resident_bytes.to_string()),
    },
    Family {
        name: "process_virtual_memory_bytes",
        kind: "gauge",
        help: "tend's virtual memory size in bytes.",
        samples: |input| process::sample(input, |p| p.virtual_bytes.to_string()),
    },
    Family {
        name: "process_start_time_seconds",
        kind: "gauge",
        help: "Start time of tend since the Unix epoch in seconds.",
        samples: |input| process::sample(input, |p| p.start_time_seconds.to_string()),
    },
    Family {
        name: "process_open_fds",
        kind: "gauge",
        help: "Open file descriptors of tend.",
        samples: |input| process::sample(input, |p| p.open_fds.to_string()),
    },
    Family {
        name: "process_max_fds",
        kind: "gauge",
        help: "tend's limit of open file descriptors.",
        samples: |input| process::sample(input, |p| p.max_fds.to_string()),
    },
];

/// Milliseconds as seconds with millisecond precision (`1.5`, `12`).
fn seconds(ms: i64) -> String {
    (ms as f64 / 1000.0).to_string()
}

/// A sample per group with a flood model, from its prediction for a sweep started now.
fn per_group(
    input: &Input,
    value: impl Fn(&crate::core::flood_model::Prediction) -> String,
) -> Vec<Sample> {
    let now = input.snapshot.at_ms;
    input
        .snapshot
        .accounts
        .iter()
        .map(|account| {
            let spacing = input
                .config
                .groups
                .get(&account.group)
                .map_or(0, |g| g.min_start_spacing.as_millis() as i64);
            let params = ModelParams::new(spacing, input.config.supervisor.output_time_scale);
            Sample {
                labels: vec![("group", account.group.clone())],
                value: value(&account.model.predict(now, &params)),
            }
        })
        .collect()
}

/// The exposition text; pure.
pub(super) fn render(input: &Input) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let name = family.name;
        let _ = writeln!(
            out,
            "# HELP {name} {}\n# TYPE {name} {}",
            family.help, family.kind
        );
        for sample in (family.samples)(input) {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", label(value)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {}", sample.value);
            } else {
                let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), sample.value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// Two services (one with two checks, one with an awkward name), error counts and a recovery.
    fn fixture() -> (Snapshot, Vec<ErrorReport>) {
        use crate::checks::classify::Severity;
        use crate::checks::probe::Status;
        use crate::checks::stats::TypeSummary;
        use crate::core::{CheckView, RecoveryView, ServiceStatus};
        let check = |name: &str, status, value, failures| CheckView {
            check: name.into(),
            status,
            message: String::new(),
            value,
            at_ms: 0,
            failures,
            alerting: false,
        };
        let text = ServiceStatus {
            name: "send_text".into(),
            state: ServiceState::Running,
            restarts: 2,
            starts_24h: 3,
            flood_until_ms: Some(10_500),
            checks: vec![
                check("cache", Status::Ok, Some(3913.0), 0),
                check("health", Status::Critical, None, 4),
            ],
            ..ServiceStatus::default()
        };
        let odd = ServiceStatus {
            name: "a\"b".into(),
            state: ServiceState::Backoff,
            checks: vec![check("mem", Status::Warning, Some(f64::NAN), 1)],
            ..ServiceStatus::default()
        };
        let recovery =
            crate::recovery::Recovery::new("telegram", vec!["send_text".into()], "test", 0);
        let snapshot = Snapshot {
            at_ms: 1_000,
            services: vec![text, odd],
            recoveries: vec![RecoveryView {
                recovery,
                summary: String::new(),
                until_ms: None,
            }],
            ..Snapshot::default()
        };
        let flood = TypeSummary {
            name: "FloodWait".into(),
            severity: Severity::Error,
            total_since_tend_start: 7,
            total_since_service_start: 1,
            last_10m: 0,
            last_1h: 0,
            last_seen_ms: 0,
            samples: Vec::new(),
            last_seconds: None,
        };
        let errors = vec![ErrorReport {
            service: "send_text".into(),
            types: vec![flood],
            ..ErrorReport::default()
        }];
        (snapshot, errors)
    }

    #[test]
    fn exposition_text_is_pinned() {
        let (snapshot, errors) = fixture();
        let want = r#"# HELP tend_service_up 1 if the service is running.
# TYPE tend_service_up gauge
tend_service_up{service="send_text"} 1
tend_service_up{service="a\"b"} 0
# HELP tend_service_ready 1 if the service is running and its readiness check passes (a zombie with an empty cache is 0).
# TYPE tend_service_ready gauge
tend_service_ready{service="send_text"} 1
tend_service_ready{service="a\"b"} 0
# HELP tend_service_start_time_seconds Unix time the current run started (no sample when not running).
# TYPE tend_service_start_time_seconds gauge
# HELP tend_service_last_exit_code Exit code of the last run (128 + N for a signal N).
# TYPE tend_service_last_exit_code gauge
# HELP tend_service_dialog_cache_size Entities in the service's dialog cache (its /cache_size json check).
# TYPE tend_service_dialog_cache_size gauge
# HELP tend_service_state 1 for the service's current state.
# TYPE tend_service_state gauge
tend_service_state{service="send_text",state="stopped"} 0
tend_service_state{service="send_text",state="waiting"} 0
tend_service_state{service="send_text",state="starting"} 0
tend_service_state{service="send_text",state="running"} 1
tend_service_state{service="send_text",state="backoff"} 0
tend_service_state{service="send_text",state="stopping"} 0
tend_service_state{service="send_text",state="exited"} 0
tend_service_state{service="send_text",state="fatal"} 0
tend_service_state{service="a\"b",state="stopped"} 0
tend_service_state{service="a\"b",state="waiting"} 0
tend_service_state{service="a\"b",state="starting"} 0
tend_service_state{service="a\"b",state="running"} 0
tend_service_state{service="a\"b",state="backoff"} 1
tend_service_state{service="a\"b",state="stopping"} 0
tend_service_state{service="a\"b",state="exited"} 0
tend_service_state{service="a\"b",state="fatal"} 0
# HELP tend_service_restarts_total Starts since tend came up, not counting the first.
# TYPE tend_service_restarts_total counter
tend_service_restarts_total{service="send_text"} 2
tend_service_restarts_total{service="a\"b"} 0
# HELP tend_service_starts_24h Starts in the last 24 hours.
# TYPE tend_service_starts_24h gauge
tend_service_starts_24h{service="send_text"} 3
tend_service_starts_24h{service="a\"b"} 0
# HELP tend_service_flood_wait_seconds Seconds left of a known flood wait (0: none).
# TYPE tend_service_flood_wait_seconds gauge
tend_service_flood_wait_seconds{service="send_text"} 10
tend_service_flood_wait_seconds{service="a\"b"} 0
# HELP tend_check_status Last result: 0 ok, 1 warning, 2 critical, 3 unknown.
# TYPE tend_check_status gauge
tend_check_status{service="send_text",check="cache"} 0
tend_check_status{service="send_text",check="health"} 2
tend_check_status{service="a\"b",check="mem"} 1
# HELP tend_check_consecutive_failures Failures in a row.
# TYPE tend_check_consecutive_failures gauge
tend_check_consecutive_failures{service="send_text",check="cache"} 0
tend_check_consecutive_failures{service="send_text",check="health"} 4
tend_check_consecutive_failures{service="a\"b",check="mem"} 1
# HELP tend_check_value The value a check measured, in the check's own unit (see the check's kind).
# TYPE tend_check_value gauge
tend_check_value{service="send_text",check="cache"} 3913
# HELP tend_errors_total Classified log records since tend started, by type.
# TYPE tend_errors_total counter
tend_errors_total{service="send_text",type="FloodWait"} 7
# HELP tend_check_last_run_timestamp_seconds Unix time of the check's last result.
# TYPE tend_check_last_run_timestamp_seconds gauge
tend_check_last_run_timestamp_seconds{service="send_text",check="cache"} 0
tend_check_last_run_timestamp_seconds{service="send_text",check="health"} 0
tend_check_last_run_timestamp_seconds{service="a\"b",check="mem"} 0
# HELP tend_recovery_active 1 while a group's flood-wait recovery runs (0 for every group without one).
# TYPE tend_recovery_active gauge
tend_recovery_active{group="telegram"} 1
# HELP tend_group_flood_predicted_wait_seconds The flood wait the group's model predicts for a dialog sweep started now.
# TYPE tend_group_flood_predicted_wait_seconds gauge
# HELP tend_group_flood_strike_level The strike level the group's account is at (0: no recent flood waits).
# TYPE tend_group_flood_strike_level gauge
# HELP tend_alert_delivery_failures_total Alerts given up on (refused, or retries exhausted) since tend started.
# TYPE tend_alert_delivery_failures_total counter
tend_alert_delivery_failures_total 2
# HELP tend_build_info Always 1; the version of tend in a label.
# TYPE tend_build_info gauge
tend_build_info{version="0.1.0"} 1
# HELP process_cpu_seconds_total User and system CPU time tend spent, in seconds.
# TYPE process_cpu_seconds_total counter
# HELP process_resident_memory_bytes tend's resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
# HELP process_virtual_memory_bytes tend's virtual memory size in bytes.
# TYPE process_virtual_memory_bytes gauge
# HELP process_start_time_seconds Start time of tend since the Unix epoch in seconds.
# TYPE process_start_time_seconds gauge
# HELP process_open_fds Open file descriptors of tend.
# TYPE process_open_fds gauge
# HELP process_max_fds tend's limit of open file descriptors.
# TYPE process_max_fds gauge
"#;
        let dir = std::env::temp_dir();
        let text = "[services.send_text]\ncommand = \"sleep 1000\"\ngroup = \"telegram\"\n\
                    [groups.telegram]\n";
        let config = crate::config::parse(&dir.join("metrics-test.toml"), text).unwrap();
        let input = Input {
            snapshot: &snapshot,
            errors: &errors,
            config: &config,
            process: None,
            alert_failures: 2,
        };
        assert_eq!(render(&input), want);
    }
}
