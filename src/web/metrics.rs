//! `/metrics` in the Prometheus text format: service states, restarts, check results, error counts by
//! type and flood waits. Behind the login unless `[web] metrics_public = true`.

use std::fmt::Write;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::WebState;
use crate::core::{ServiceState, Snapshot};

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
    if !state.settings.metrics_public {
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

/// The exposition text; pure.
pub(super) fn render(
    snapshot: &Snapshot,
    errors: &[crate::checks::monitor::ErrorReport],
) -> String {
    let mut out = String::new();
    let now = snapshot.at_ms;
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "tend_service_up",
        "gauge",
        "1 if the service is running.",
    );
    for s in &snapshot.services {
        let up = u8::from(s.state == ServiceState::Running);
        let _ = writeln!(
            out,
            "tend_service_up{{service=\"{}\"}} {up}",
            label(&s.name)
        );
    }
    family(
        &mut out,
        "tend_service_state",
        "gauge",
        "1 for the service's current state.",
    );
    for s in &snapshot.services {
        for st in STATES {
            let v = u8::from(s.state == *st);
            let _ = writeln!(
                out,
                "tend_service_state{{service=\"{}\",state=\"{st}\"}} {v}",
                label(&s.name)
            );
        }
    }
    family(
        &mut out,
        "tend_service_restarts",
        "gauge",
        "Starts since tend came up, not counting the first.",
    );
    for s in &snapshot.services {
        let _ = writeln!(
            out,
            "tend_service_restarts{{service=\"{}\"}} {}",
            label(&s.name),
            s.restarts
        );
    }
    family(
        &mut out,
        "tend_service_starts_24h",
        "gauge",
        "Starts in the last 24 hours.",
    );
    for s in &snapshot.services {
        let _ = writeln!(
            out,
            "tend_service_starts_24h{{service=\"{}\"}} {}",
            label(&s.name),
            s.starts_24h
        );
    }
    family(
        &mut out,
        "tend_service_flood_wait_seconds",
        "gauge",
        "Seconds left of a known flood wait (0: none).",
    );
    for s in &snapshot.services {
        let left = s
            .flood_until_ms
            .map_or(0, |t| ((t - now).max(0) + 999) / 1000);
        let _ = writeln!(
            out,
            "tend_service_flood_wait_seconds{{service=\"{}\"}} {left}",
            label(&s.name)
        );
    }
    family(
        &mut out,
        "tend_check_status",
        "gauge",
        "Last result: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    for s in &snapshot.services {
        for c in &s.checks {
            let _ = writeln!(
                out,
                "tend_check_status{{service=\"{}\",check=\"{}\"}} {}",
                label(&s.name),
                label(&c.check),
                c.status.nagios_code()
            );
        }
    }
    family(
        &mut out,
        "tend_check_failures",
        "gauge",
        "Failures in a row.",
    );
    for s in &snapshot.services {
        for c in &s.checks {
            let _ = writeln!(
                out,
                "tend_check_failures{{service=\"{}\",check=\"{}\"}} {}",
                label(&s.name),
                label(&c.check),
                c.failures
            );
        }
    }
    family(
        &mut out,
        "tend_check_value",
        "gauge",
        "The value a check measured (cache size, bytes, percent).",
    );
    for s in &snapshot.services {
        for c in &s.checks {
            if let Some(v) = c.value.filter(|v| v.is_finite()) {
                let _ = writeln!(
                    out,
                    "tend_check_value{{service=\"{}\",check=\"{}\"}} {v}",
                    label(&s.name),
                    label(&c.check)
                );
            }
        }
    }
    family(
        &mut out,
        "tend_errors_total",
        "counter",
        "Classified log records since tend started, by type.",
    );
    for r in errors {
        for t in &r.types {
            let _ = writeln!(
                out,
                "tend_errors_total{{service=\"{}\",type=\"{}\"}} {}",
                label(&r.service),
                label(&t.name),
                t.total_since_tend_start
            );
        }
    }
    family(
        &mut out,
        "tend_recovery_active",
        "gauge",
        "1 while a group's flood-wait recovery runs.",
    );
    for r in &snapshot.recoveries {
        let v = u8::from(!r.recovery.is_finished());
        let _ = writeln!(
            out,
            "tend_recovery_active{{group=\"{}\"}} {v}",
            label(&r.recovery.group)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::monitor::ErrorReport;

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
