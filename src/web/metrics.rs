//! `/metrics` in the Prometheus text format: service states, restarts, check results, error counts by
//! type and flood waits. Behind the login, or a bearer token (`[web] metrics_token_hash`, for
//! Prometheus), unless `[web] metrics_public = true`.

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

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
