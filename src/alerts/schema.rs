//! The one JSON shape of every alert tend sends (`schema = "tend.alert/v1"`), and [`Mapper`]: the pure
//! translation of the core's [`Event`]s and [`Snapshot`]s into alerts, over explicit time. No I/O here:
//! delivery is `super::Sender`'s, subscribing is `super::task`'s.
//!
//! An alert condition has a stable `id` (same for its `firing` and `resolved` alerts, and across
//! restarts of tend), so receivers can de-duplicate; `labels` carry `alertname`, `service`, `group`,
//! `severity` and `host` for Alertmanager-style grouping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check_result::Status;
use crate::clock::Millis;
use crate::config::AlertSettings;
use crate::core::{Event, ServiceState, Snapshot};

/// The version of the payload; bumped on an incompatible change.
pub const SCHEMA: &str = "tend.alert/v1";

/// How bad it is. Ordered: a receiver's `min_severity` passes that severity and worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// `firing` while the condition holds, `resolved` once it is over (one-off events only fire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert, as POSTed to every receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub schema: String,
    /// Stable for one condition: `HOST/KIND/SUBJECT` (e.g. `vps1/check/send_text/alive`).
    pub id: String,
    /// `check`, `crash`, `fatal`, `recovery`, `flood_wait`, `reload_failed`, `tend_started`, `diagnosis`.
    pub kind: String,
    pub status: AlertStatus,
    pub severity: Severity,
    pub service: Option<String>,
    pub group: Option<String>,
    pub host: String,
    /// One line for a human (a chat message).
    pub summary: String,
    pub at_ms: Millis,
    /// The status page, when tend has one (`[alerts] page_url` or `[web] listen`).
    pub page_url: Option<String>,
    /// For grouping: alertname, service, group, severity, host.
    pub labels: BTreeMap<String, String>,
    /// Kind-specific facts (check name and status, exit code, recovery stage, flood wait end).
    pub details: serde_json::Value,
}

/// What every alert carries besides its own facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub host: String,
    pub page_url: Option<String>,
    pub settings: AlertSettings,
    /// Each service's group, to fill `group` on service alerts.
    pub groups: BTreeMap<String, String>,
}

/// What identifies an alert and how bad it is (the rest is summary, time and details).
struct Head<'a> {
    kind: &'a str,
    subject: &'a str,
    status: AlertStatus,
    severity: Severity,
    service: Option<&'a str>,
    group: Option<&'a str>,
}

/// Turns events into alerts, remembering just enough to alert on *changes*.
#[derive(Debug, Clone)]
pub struct Mapper {
    pub context: Context,
    /// Check (service, check) -> the severity it fired with, while firing, and whether the core's
    /// alert state (CRITICAL) fired it: then only the core's clearing resolves it.
    checks: BTreeMap<(String, String), (Severity, bool)>,
    /// The last exit of each service (for the crash alert that follows it).
    exits: BTreeMap<String, String>,
    fatal: BTreeMap<String, ()>,
    /// Groups with a recovery in progress.
    recovering: BTreeMap<String, ()>,
    /// Services with a known flood wait, and until when.
    floods: BTreeMap<String, Millis>,
    reload_failed: bool,
}

impl Mapper {
    pub fn new(context: Context) -> Mapper {
        Mapper {
            context,
            checks: BTreeMap::new(),
            exits: BTreeMap::new(),
            fatal: BTreeMap::new(),
            recovering: BTreeMap::new(),
            floods: BTreeMap::new(),
            reload_failed: false,
        }
    }

    fn alert(
        &self,
        head: Head,
        summary: String,
        at_ms: Millis,
        details: serde_json::Value,
    ) -> Alert {
        let Head {
            kind,
            subject,
            status,
            severity,
            service,
            group,
        } = head;
        let host = self.context.host.clone();
        let group = group
            .map(str::to_string)
            .or_else(|| service.and_then(|s| self.context.groups.get(s).cloned()));
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), format!("tend_{kind}"));
        labels.insert("severity".to_string(), severity.as_str().to_string());
        labels.insert("host".to_string(), host.clone());
        if let Some(service) = service {
            labels.insert("service".to_string(), service.to_string());
        }
        if let Some(group) = &group {
            labels.insert("group".to_string(), group.clone());
        }
        Alert {
            schema: SCHEMA.to_string(),
            id: format!("{host}/{kind}/{subject}"),
            kind: kind.to_string(),
            status,
            severity,
            service: service.map(str::to_string),
            group,
            host,
            summary,
            at_ms,
            page_url: self.context.page_url.clone(),
            labels,
            details,
        }
    }

    /// tend came up (or re-executed into a new binary).
    pub fn started(&self, reexec: bool, at_ms: Millis) -> Alert {
        let how = if reexec { "re-executed" } else { "started" };
        self.alert(
            Head {
                kind: "tend_started",
                subject: "tend",
                status: AlertStatus::Firing,
                severity: Severity::Info,
                service: None,
                group: None,
            },
            format!("tend {how} on {}", self.context.host),
            at_ms,
            serde_json::json!({ "reexec": reexec, "version": env!("CARGO_PKG_VERSION") }),
        )
    }

    /// A scheduled `diagnose` with `alert = true`: its verdict (OK -> info, WARNING/UNKNOWN -> warning,
    /// CRITICAL -> critical) and the report's text in `details.text`.
    pub fn diagnosis(
        &self,
        schedule: &str,
        verdict: Status,
        summary: String,
        text: String,
        at_ms: Millis,
    ) -> Alert {
        let severity = match verdict {
            Status::Ok => Severity::Info,
            Status::Warning | Status::Unknown => Severity::Warning,
            Status::Critical => Severity::Critical,
        };
        self.alert(
            Head {
                kind: "diagnosis",
                subject: schedule,
                status: AlertStatus::Firing,
                severity,
                service: None,
                group: None,
            },
            summary,
            at_ms,
            serde_json::json!({ "schedule": schedule, "verdict": verdict, "text": text }),
        )
    }

    /// The severity a check result alerts with (`None`: OK, or that kind of result is set to `off`).
    /// CRITICAL goes through the core's alert state (3 failures in a row outside the start grace), so
    /// a service still starting does not page anyone.
    fn check_severity(&self, status: Status, message: &str) -> Option<Severity> {
        let s = &self.context.settings;
        match status {
            Status::Ok | Status::Critical => None,
            Status::Warning => s.check_warning,
            Status::Unknown if is_timeout(message) => s.check_timeout,
            Status::Unknown => s.check_unknown,
        }
    }

    pub fn on_event(&mut self, event: &Event) -> Vec<Alert> {
        match event {
            Event::Check { report } => {
                let key = (report.service.clone(), report.check.clone());
                let wanted = self.check_severity(report.result.status, &report.result.message);
                let firing = self.checks.get(&key).copied();
                if firing.is_some_and(|(_, by_core)| by_core) {
                    return Vec::new();
                }
                let firing = firing.map(|(severity, _)| severity);
                let subject = format!("{}/{}", report.service, report.check);
                let details = serde_json::json!({
                    "check": report.check,
                    "check_status": report.result.status,
                    "message": report.result.message,
                });
                match (firing, wanted) {
                    (None, Some(severity)) => {
                        self.checks.insert(key, (severity, false));
                        vec![self.alert(
                            Head {
                                kind: "check",
                                subject: &subject,
                                status: AlertStatus::Firing,
                                severity,
                                service: Some(&report.service),
                                group: None,
                            },
                            format!(
                                "{} check {} is {}: {}",
                                report.service,
                                report.check,
                                status_word(report.result.status),
                                report.result.message
                            ),
                            report.at_ms,
                            details,
                        )]
                    }
                    // Back to OK (a CRITICAL in between keeps it firing until the core clears it).
                    (Some(severity), None) if report.result.status == Status::Ok => {
                        self.checks.remove(&key);
                        vec![self.alert(
                            Head {
                                kind: "check",
                                subject: &subject,
                                status: AlertStatus::Resolved,
                                severity,
                                service: Some(&report.service),
                                group: None,
                            },
                            format!("{} check {} is OK again", report.service, report.check),
                            report.at_ms,
                            details,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            Event::Alert {
                service,
                check,
                raised,
                message,
                at_ms,
            } => {
                let Some(severity) = self.context.settings.check_critical else {
                    return Vec::new();
                };
                let key = (service.clone(), check.clone());
                let status = if *raised {
                    self.checks.insert(key, (severity, true));
                    AlertStatus::Firing
                } else if self.checks.remove(&key).is_some() {
                    AlertStatus::Resolved
                } else {
                    // Resolved already (a WARNING cleared by an OK), or raised before tend restarted.
                    return Vec::new();
                };
                let summary = if *raised {
                    format!("{service} check {check} is CRITICAL: {message}")
                } else {
                    format!("{service} check {check} is OK again")
                };
                vec![self.alert(Head { kind: "check", subject: &format!("{service}/{check}"), status, severity, service: Some(service), group: None }, summary, *at_ms, serde_json::json!({ "check": check, "check_status": if *raised { "critical" } else { "ok" }, "message": message }))]
            }
            Event::Exited { name, exit, .. } => {
                self.exits.insert(name.clone(), exit.to_string());
                Vec::new()
            }
            Event::StateChanged {
                name,
                from,
                to,
                at_ms,
            } => self.on_state(name, *from, *to, *at_ms),
            Event::Recovery {
                group,
                stage,
                summary,
                at_ms,
            } => {
                let ended = matches!(stage.as_str(), "done" | "cancelled");
                let was = self.recovering.contains_key(group);
                let (status, severity, what) = match (was, ended) {
                    (false, false) => {
                        self.recovering.insert(group.clone(), ());
                        (AlertStatus::Firing, Severity::Warning, "started")
                    }
                    (true, false) => (AlertStatus::Firing, Severity::Info, "stage"),
                    (_, true) => {
                        self.recovering.remove(group);
                        (AlertStatus::Resolved, Severity::Warning, "ended")
                    }
                };
                vec![self.alert(
                    Head {
                        kind: "recovery",
                        subject: group,
                        status,
                        severity,
                        service: None,
                        group: Some(group),
                    },
                    format!("recovery of {group} {what}: {summary}"),
                    *at_ms,
                    serde_json::json!({ "stage": stage, "phase": what }),
                )]
            }
            Event::Spawned { .. } | Event::Notice { .. } => Vec::new(),
        }
    }

    fn on_state(
        &mut self,
        name: &str,
        from: ServiceState,
        to: ServiceState,
        at_ms: Millis,
    ) -> Vec<Alert> {
        let exit = self.exits.get(name).cloned().unwrap_or_default();
        let details = serde_json::json!({ "from": from, "to": to, "exit": exit });
        let mut out = Vec::new();
        if to == ServiceState::Fatal && self.fatal.insert(name.to_string(), ()).is_none() {
            out.push(self.alert(
                Head {
                    kind: "fatal",
                    subject: name,
                    status: AlertStatus::Firing,
                    severity: Severity::Critical,
                    service: Some(name),
                    group: None,
                },
                format!(
                    "{name} is fatal (crash loop, last {exit}); it waits for `tend start {name}`"
                ),
                at_ms,
                details.clone(),
            ));
        } else if to == ServiceState::Backoff
            && matches!(from, ServiceState::Running | ServiceState::Starting)
        {
            out.push(self.alert(
                Head {
                    kind: "crash",
                    subject: name,
                    status: AlertStatus::Firing,
                    severity: Severity::Warning,
                    service: Some(name),
                    group: None,
                },
                format!("{name} crashed ({exit}); restarting"),
                at_ms,
                details.clone(),
            ));
        }
        if from == ServiceState::Fatal
            && to != ServiceState::Fatal
            && self.fatal.remove(name).is_some()
        {
            out.push(self.alert(
                Head {
                    kind: "fatal",
                    subject: name,
                    status: AlertStatus::Resolved,
                    severity: Severity::Critical,
                    service: Some(name),
                    group: None,
                },
                format!("{name} is no longer fatal (now {to})"),
                at_ms,
                details,
            ));
        }
        out
    }

    /// Conditions only the snapshot shows: a flood wait a service reported, a failed reload.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Alert> {
        let now = snapshot.at_ms;
        let mut out = Vec::new();
        for service in &snapshot.services {
            let until = service.flood_until_ms.filter(|u| *u > now);
            let known = self.floods.get(&service.name).copied();
            match (known, until) {
                (None, Some(until)) => {
                    self.floods.insert(service.name.clone(), until);
                    out.push(self.alert(
                        Head {
                            kind: "flood_wait",
                            subject: &service.name,
                            status: AlertStatus::Firing,
                            severity: Severity::Warning,
                            service: Some(&service.name),
                            group: service.group.as_deref(),
                        },
                        format!(
                            "{} hit a Telegram flood wait of {}s",
                            service.name,
                            (until - now + 999) / 1000
                        ),
                        now,
                        serde_json::json!({ "until_ms": until }),
                    ));
                }
                (Some(_), None) => {
                    self.floods.remove(&service.name);
                    out.push(self.alert(
                        Head {
                            kind: "flood_wait",
                            subject: &service.name,
                            status: AlertStatus::Resolved,
                            severity: Severity::Warning,
                            service: Some(&service.name),
                            group: service.group.as_deref(),
                        },
                        format!("{}'s flood wait is over", service.name),
                        now,
                        serde_json::json!({}),
                    ));
                }
                (Some(_), Some(until)) => {
                    self.floods.insert(service.name.clone(), until);
                }
                (None, None) => {}
            }
        }
        match (&snapshot.config_error, self.reload_failed) {
            (Some(error), false) => {
                self.reload_failed = true;
                out.push(self.alert(
                    Head {
                        kind: "reload_failed",
                        subject: "config",
                        status: AlertStatus::Firing,
                        severity: Severity::Critical,
                        service: None,
                        group: None,
                    },
                    format!("reloading the configuration failed; the last good one runs: {error}"),
                    now,
                    serde_json::json!({ "error": error }),
                ));
            }
            (None, true) => {
                self.reload_failed = false;
                out.push(self.alert(
                    Head {
                        kind: "reload_failed",
                        subject: "config",
                        status: AlertStatus::Resolved,
                        severity: Severity::Critical,
                        service: None,
                        group: None,
                    },
                    "the configuration loads again".to_string(),
                    now,
                    serde_json::json!({}),
                ));
            }
            _ => {}
        }
        out
    }
}

/// The Nagios word for a status, as operators know it from their other monitoring.
fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        Status::Warning => "WARNING",
        Status::Critical => "CRITICAL",
        Status::Unknown => "UNKNOWN",
    }
}

/// A probe that ran out of time ("plugin timed out after 5s", "no answer within 5s").
fn is_timeout(message: &str) -> bool {
    message.contains("timed out") || message.contains("no answer within")
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
