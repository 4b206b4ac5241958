//! `tend diagnose`: a full check of every service, run now, with a verdict and one line of advice per
//! problem. Gathers from the core's snapshot, the analyzers' error reports and fresh probes; decides
//! nothing and changes nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::monitor::MonitorHandle;
use super::probe::{self, ProbeResult, Status};
use super::stats::GroupRow;
use crate::clock::{human_ms, Millis};
use crate::config::{CheckKind, Config};
use crate::core::{CoreHandle, ServiceState, ServiceStatus, Snapshot};

/// Below this the dialog cache is suspicious (the account has ~3,900 dialogs).
const CACHE_WARN_BELOW: f64 = 3900.0;
/// Pattern names whose group_by tables list chats the account cannot reach (the one list: the web
/// API's chat advice reads it too).
pub const CHAT_PATTERNS: &[&str] = &[
    "Cannot find chat",
    "Cannot resolve",
    "Could not find the input entity",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub at_ms: Millis,
    pub verdict: Status,
    pub services: Vec<ServiceDiagnosis>,
    pub recoveries: Vec<String>,
    /// One line per problem, most severe first.
    pub advice: Vec<Advice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub service: Option<String>,
    pub severity: Status,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDiagnosis {
    pub name: String,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub uptime_ms: Option<Millis>,
    pub port: Option<u16>,
    /// Something accepts connections on the port.
    pub listening: Option<bool>,
    /// Who holds the port when the service is not running.
    pub port_holder: Option<String>,
    /// A fresh probe of its http check (its /health), if it has one.
    pub health: Option<ProbeResult>,
    /// A fresh probe of its readiness json check (its /stats cache_size), if it has one.
    pub cache: Option<ProbeResult>,
    /// Error-type counts of the last hour, most frequent first (harmless types left out).
    pub errors_last_hour: Vec<(String, u64)>,
    /// The chats that keep failing, most frequent first.
    pub failing_chats: Vec<GroupRow>,
    /// The longest flood wait of the last 24 hours: (seconds, when).
    pub last_flood: Option<(u64, Millis)>,
    pub flood_until_ms: Option<Millis>,
    pub starts_24h: u32,
    pub next_start_ms: Millis,
    pub next_start_hold: Option<String>,
}

/// Runs the diagnosis now.
pub async fn diagnose(
    config: &Config,
    core: &CoreHandle,
    monitor: &MonitorHandle,
    http: &reqwest::Client,
) -> Option<Diagnosis> {
    let snapshot = core.status().await.ok()?;
    let mut services = Vec::new();
    for status in &snapshot.services {
        services.push(diagnose_service(config, status, &snapshot, monitor, http).await);
    }
    Some(judge(snapshot, services))
}

async fn diagnose_service(
    config: &Config,
    status: &ServiceStatus,
    snapshot: &Snapshot,
    monitor: &MonitorHandle,
    http: &reqwest::Client,
) -> ServiceDiagnosis {
    let timeout = Duration::from_secs(3);
    let mut listening = None;
    let mut port_holder = None;
    if let Some(port) = status.port {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let ok = probe::tcp::probe(addr, timeout).await.status == Status::Ok;
        listening = Some(ok);
        if !status.state.has_process() {
            port_holder = crate::process::port_holder(port).map(|h| h.to_string());
        }
    }
    let mut health = None;
    let mut cache = None;
    if status.state.has_process() {
        for check in config
            .checks
            .values()
            .filter(|c| c.services.contains(&status.name))
        {
            match &check.kind {
                kind @ CheckKind::Http { .. } if health.is_none() => {
                    if let Some(spec) =
                        super::spec::http_spec(kind, &status.name, status.port, timeout)
                    {
                        health = Some(probe::http::probe(http, &spec).await);
                    }
                }
                kind @ CheckKind::Json { .. } if cache.is_none() && check.readiness => {
                    if let Some(spec) =
                        super::spec::json_spec(kind, &status.name, status.port, timeout)
                    {
                        cache = Some(probe::json::probe(http, &spec).await.0);
                    }
                }
                _ => {}
            }
        }
    }
    let report = monitor.errors(&status.name).await.unwrap_or_default();
    let mut errors_last_hour: Vec<(String, u64)> = report
        .types
        .iter()
        .filter(|t| t.severity != super::classify::Severity::Info && t.last_1h > 0)
        .map(|t| (t.name.clone(), t.last_1h))
        .collect();
    errors_last_hour.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut failing_chats: Vec<GroupRow> = CHAT_PATTERNS
        .iter()
        .filter_map(|p| report.groups.get(*p))
        .flatten()
        .cloned()
        .collect();
    failing_chats.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    failing_chats.truncate(10);
    ServiceDiagnosis {
        name: status.name.clone(),
        state: status.state,
        pid: status.pid,
        uptime_ms: status.since_ms.map(|t| snapshot.at_ms - t),
        port: status.port,
        listening,
        port_holder,
        health,
        cache,
        errors_last_hour,
        failing_chats,
        last_flood: report.longest_flood,
        flood_until_ms: status.flood_until_ms,
        starts_24h: status.starts_24h,
        next_start_ms: status.next_start.at_ms,
        next_start_hold: status.next_start.hold.as_ref().map(|h| h.to_string()),
    }
}

/// The verdict and advice: pure, over what was gathered.
pub fn judge(snapshot: Snapshot, services: Vec<ServiceDiagnosis>) -> Diagnosis {
    let now = snapshot.at_ms;
    let mut advice = Vec::new();
    if let Some(warning) = &snapshot.state_warning {
        advice.push(Advice {
            service: None,
            severity: Status::Warning,
            text: format!("the state file was not usable at start: {warning}"),
        });
    }
    let mut say = |service: &str, severity: Status, text: String| {
        advice.push(Advice {
            service: Some(service.to_string()),
            severity,
            text,
        })
    };
    for (d, status) in services.iter().zip(&snapshot.services) {
        let n = &d.name;
        if let Some(loss) = &status.log_loss {
            say(
                n,
                Status::Critical,
                format!(
                    "{n}'s log cannot be written since {} ({}): {} lines lost so far, {} kept in memory; free space in the log directory",
                    loss.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    loss.error,
                    loss.lines_lost,
                    loss.lines_waiting
                ),
            );
        }
        match d.state {
            ServiceState::Fatal => say(
                n,
                Status::Critical,
                format!("{n} is crash-looping and waits for a human: read `tend logs {n}`, fix the cause, then `tend start {n}`"),
            ),
            ServiceState::Stopped if status.sticky_stop => say(
                n,
                Status::Warning,
                format!("{n} was stopped by hand; `tend start {n}` brings it back"),
            ),
            ServiceState::Stopped | ServiceState::Exited => say(
                n,
                Status::Critical,
                format!("{n} is not running ({})", d.state),
            ),
            ServiceState::Waiting | ServiceState::Backoff => say(
                n,
                Status::Warning,
                format!(
                    "{n} is down and starts in {} ({})",
                    human_ms(d.next_start_ms - now),
                    d.next_start_hold.as_deref().unwrap_or("backoff")
                ),
            ),
            _ => {}
        }
        if let Some(holder) = &d.port_holder {
            say(
                n,
                Status::Critical,
                format!("{holder}: an orphan of an earlier run? Stop it, or {n} cannot start"),
            );
        }
        if d.state == ServiceState::Running && d.listening == Some(false) {
            say(
                n,
                Status::Critical,
                format!(
                    "{n} runs but nothing listens on port {}",
                    d.port.unwrap_or(0)
                ),
            );
        }
        if let Some(h) = &d.health {
            if h.status == Status::Critical {
                say(
                    n,
                    Status::Critical,
                    format!("{n} health check fails: {}", h.message),
                );
            }
        }
        if let Some(c) = &d.cache {
            match c.value {
                Some(v) if v <= 0.0 => say(
                    n,
                    Status::Critical,
                    format!("{n} has an empty dialog cache: stuck after a FloodWait at start-up? Clear it with `tend recover GROUP` (not a plain restart)"),
                ),
                Some(v) if v < CACHE_WARN_BELOW => say(
                    n,
                    Status::Warning,
                    format!("{n} dialog cache holds {v} entities (normal ≈ 3,900+): if the account joined chats, `tend reload-cache {n}`"),
                ),
                None => say(n, Status::Warning, format!("{n} cache size unknown: {}", c.message)),
                _ => {}
            }
        }
        if let Some(until) = d.flood_until_ms.filter(|t| *t > now) {
            say(
                n,
                Status::Warning,
                format!("{n} is in a flood wait for {} more: do not restart it (every start fetches all dialogs)", human_ms(until - now)),
            );
        }
        if !d.failing_chats.is_empty() {
            let top: Vec<String> = d
                .failing_chats
                .iter()
                .take(3)
                .map(|r| format!("{} ×{}", r.key, r.count))
                .collect();
            say(
                n,
                Status::Warning,
                format!(
                    "{} chat(s) the account is not in (top: {}): check the automation's chat ids; a banned channel must be unbanned by its admin",
                    d.failing_chats.len(),
                    top.join(", ")
                ),
            );
        }
        if d.starts_24h >= 6 {
            say(
                n,
                Status::Warning,
                format!("{n} started {} times in 24 h: every start fetches all dialogs and risks a FloodWait", d.starts_24h),
            );
        }
    }
    let recoveries: Vec<String> = snapshot
        .recoveries
        .iter()
        .filter(|r| !r.recovery.is_finished())
        .map(|r| r.summary.clone())
        .collect();
    advice.sort_by_key(|a| std::cmp::Reverse(a.severity));
    let verdict = advice
        .iter()
        .map(|a| a.severity)
        .filter(|s| *s != Status::Unknown)
        .max()
        .unwrap_or(Status::Ok);
    Diagnosis {
        at_ms: now,
        verdict,
        services,
        recoveries,
        advice,
    }
}

/// The human-readable report.
pub fn render(d: &Diagnosis) -> String {
    let now = d.at_ms;
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("verdict: {}", d.verdict));
    for r in &d.recoveries {
        line(&mut out, format!("recovery: {r}"));
    }
    for s in &d.services {
        line(&mut out, String::new());
        let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        let up = s
            .uptime_ms
            .map(|u| format!(", up {}", human_ms(u)))
            .unwrap_or_default();
        line(&mut out, format!("{} — {}{pid}{up}", s.name, s.state));
        if let Some(port) = s.port {
            let listening = match s.listening {
                Some(true) => "listening",
                Some(false) => "not listening",
                None => "unknown",
            };
            line(&mut out, format!("  port {port}: {listening}"));
        }
        if let Some(h) = &s.health {
            // The probe's message already carries the latency ("HTTP 200 in 3 ms").
            line(&mut out, format!("  health: {} {}", h.status, h.message));
        }
        if let Some(c) = &s.cache {
            line(&mut out, format!("  cache: {} {}", c.status, c.message));
        }
        if s.errors_last_hour.is_empty() {
            line(&mut out, "  errors last hour: none".into());
        } else {
            let parts: Vec<String> = s
                .errors_last_hour
                .iter()
                .map(|(n, c)| format!("{n} ×{c}"))
                .collect();
            line(
                &mut out,
                format!("  errors last hour: {}", parts.join(", ")),
            );
        }
        for chat in s.failing_chats.iter().take(5) {
            line(
                &mut out,
                format!(
                    "  failing chat {}: ×{} (last {} ago)",
                    chat.key,
                    chat.count,
                    human_ms(now - chat.last_seen_ms)
                ),
            );
        }
        if let Some((secs, at)) = s.last_flood {
            line(
                &mut out,
                format!(
                    "  longest flood wait in 24 h: {secs}s, {} ago",
                    human_ms(now - at)
                ),
            );
        }
        let next = if s.next_start_ms <= now {
            "now".to_string()
        } else {
            format!(
                "in {} ({})",
                human_ms(s.next_start_ms - now),
                s.next_start_hold.as_deref().unwrap_or("-")
            )
        };
        line(
            &mut out,
            format!(
                "  starts in 24 h: {}; next start allowed {next}",
                s.starts_24h
            ),
        );
    }
    line(&mut out, String::new());
    if d.advice.is_empty() {
        line(&mut out, "advice: none, all is well".into());
    } else {
        line(&mut out, "advice:".into());
        for a in &d.advice {
            line(&mut out, format!("  [{}] {}", a.severity, a.text));
        }
    }
    out
}
