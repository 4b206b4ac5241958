//! `/metrics` in the Prometheus text format: service states, restarts, check results, error counts by
//! type and flood waits. Behind the login, or a bearer token (`[web] metrics_token_hash`, for
//! Prometheus), unless `[web] metrics_public = true`.
//!
//! The families are a table ([`FAMILIES`]): a header and a function from the snapshot to samples; one
//! renderer writes them all. Reads the snapshot only, never the core.

use std::fmt::Write;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::WebState;
use crate::checks::monitor::ErrorReport;
use crate::core::{CheckView, ServiceState, ServiceStatus, Snapshot};

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
    let body = render(&snapshot, &errors);
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
    samples: fn(&Snapshot, &[ErrorReport]) -> Vec<Sample>,
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
        samples: |snapshot, _| {
            per_service(snapshot, |s| {
                u8::from(s.state == ServiceState::Running).to_string()
            })
        },
    },
    Family {
        name: "tend_service_state",
        kind: "gauge",
        help: "1 for the service's current state.",
        samples: |snapshot, _| {
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
        name: "tend_service_restarts",
        kind: "gauge",
        help: "Starts since tend came up, not counting the first.",
        samples: |snapshot, _| per_service(snapshot, |s| s.restarts.to_string()),
    },
    Family {
        name: "tend_service_starts_24h",
        kind: "gauge",
        help: "Starts in the last 24 hours.",
        samples: |snapshot, _| per_service(snapshot, |s| s.starts_24h.to_string()),
    },
    Family {
        name: "tend_service_flood_wait_seconds",
        kind: "gauge",
        help: "Seconds left of a known flood wait (0: none).",
        samples: |snapshot, _| {
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
        samples: |snapshot, _| per_check(snapshot, |c| Some(c.status.nagios_code().to_string())),
    },
    Family {
        name: "tend_check_failures",
        kind: "gauge",
        help: "Failures in a row.",
        samples: |snapshot, _| per_check(snapshot, |c| Some(c.failures.to_string())),
    },
    Family {
        name: "tend_check_value",
        kind: "gauge",
        help: "The value a check measured (cache size, bytes, percent).",
        samples: |snapshot, _| {
            per_check(snapshot, |c| {
                c.value.filter(|v| v.is_finite()).map(|v| v.to_string())
            })
        },
    },
    Family {
        name: "tend_errors_total",
        kind: "counter",
        help: "Classified log records since tend started, by type.",
        samples: |_, errors| {
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
        name: "tend_recovery_active",
        kind: "gauge",
        help: "1 while a group's flood-wait recovery runs.",
        samples: |snapshot, _| {
            snapshot
                .recoveries
                .iter()
                .map(|r| Sample {
                    labels: vec![("group", r.recovery.group.clone())],
                    value: u8::from(!r.recovery.is_finished()).to_string(),
                })
                .collect()
        },
    },
];

/// The exposition text; pure.
pub(super) fn render(snapshot: &Snapshot, errors: &[ErrorReport]) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let name = family.name;
        let _ = writeln!(
            out,
            "# HELP {name} {}\n# TYPE {name} {}",
            family.help, family.kind
        );
        for sample in (family.samples)(snapshot, errors) {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", label(value)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), sample.value);
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
# HELP tend_service_restarts Starts since tend came up, not counting the first.
# TYPE tend_service_restarts gauge
tend_service_restarts{service="send_text"} 2
tend_service_restarts{service="a\"b"} 0
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
# HELP tend_check_failures Failures in a row.
# TYPE tend_check_failures gauge
tend_check_failures{service="send_text",check="cache"} 0
tend_check_failures{service="send_text",check="health"} 4
tend_check_failures{service="a\"b",check="mem"} 1
# HELP tend_check_value The value a check measured (cache size, bytes, percent).
# TYPE tend_check_value gauge
tend_check_value{service="send_text",check="cache"} 3913
# HELP tend_errors_total Classified log records since tend started, by type.
# TYPE tend_errors_total counter
tend_errors_total{service="send_text",type="FloodWait"} 7
# HELP tend_recovery_active 1 while a group's flood-wait recovery runs.
# TYPE tend_recovery_active gauge
tend_recovery_active{group="telegram"} 1
"#;
        assert_eq!(render(&snapshot, &errors), want);
    }
}
