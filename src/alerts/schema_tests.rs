//! Table tests of [`Mapper`]: which events become which alerts, with stable ids.

use super::*;
use crate::check_result::ProbeResult;
use crate::core::{CheckReport, ServiceStatus};

fn mapper() -> Mapper {
    Mapper::new(Context {
        host: "vps1".into(),
        page_url: Some("http://127.0.0.1:9/".into()),
        settings: AlertSettings::defaults(),
        groups: BTreeMap::from([("send_text".to_string(), "telegram".to_string())]),
    })
}

fn check(status: Status, message: &str, at_ms: Millis) -> Event {
    Event::Check {
        report: CheckReport {
            check: "alive".into(),
            service: "send_text".into(),
            result: ProbeResult::new(status, message),
            at_ms,
        },
    }
}

type Brief = (String, AlertStatus, Severity);

fn brief(alerts: &[Alert]) -> Vec<Brief> {
    alerts
        .iter()
        .map(|a| (a.id.clone(), a.status, a.severity))
        .collect()
}

#[test]
fn check_changes_fire_once_and_resolve_with_the_same_id() {
    let mut m = mapper();
    let id = "vps1/check/send_text/alive".to_string();
    let table: &[(Status, &str, Vec<Brief>)] = &[
        (Status::Ok, "fine", vec![]),
        (
            Status::Warning,
            "slow",
            vec![(id.clone(), AlertStatus::Firing, Severity::Warning)],
        ),
        (Status::Warning, "slow", vec![]),
        (
            Status::Ok,
            "fine",
            vec![(id.clone(), AlertStatus::Resolved, Severity::Warning)],
        ),
        (
            Status::Unknown,
            "plugin timed out after 5s (killed)",
            vec![(id.clone(), AlertStatus::Firing, Severity::Critical)],
        ),
        (
            Status::Ok,
            "fine",
            vec![(id.clone(), AlertStatus::Resolved, Severity::Critical)],
        ),
        (
            Status::Unknown,
            "cannot parse",
            vec![(id.clone(), AlertStatus::Firing, Severity::Warning)],
        ),
        // CRITICAL is the core's alert state (3 in a row); a single one changes nothing here.
        (Status::Critical, "down", vec![]),
    ];
    for (n, (status, message, want)) in table.iter().enumerate() {
        let got = m.on_event(&check(*status, message, n as Millis));
        assert_eq!(&brief(&got), want, "row {n}: {status:?} {message}");
    }
}

#[test]
fn every_alert_carries_the_common_fields() {
    let mut m = mapper();
    let a = m.on_event(&check(Status::Warning, "slow", 7)).remove(0);
    assert_eq!(a.schema, SCHEMA);
    assert_eq!(a.host, "vps1");
    assert_eq!(a.group.as_deref(), Some("telegram"));
    assert_eq!(a.page_url.as_deref(), Some("http://127.0.0.1:9/"));
    assert_eq!(a.labels["alertname"], "tend_check");
    assert_eq!(a.labels["severity"], "warning");
    assert_eq!(a.labels["group"], "telegram");
    assert_eq!(a.summary, "send_text check alive is WARNING: slow");
}

#[test]
fn a_severity_set_to_off_sends_nothing() {
    let mut m = mapper();
    m.context.settings.check_warning = None;
    assert!(m.on_event(&check(Status::Warning, "slow", 1)).is_empty());
}

#[test]
fn crash_fatal_and_recovery() {
    let mut m = mapper();
    let state = |from, to| Event::StateChanged {
        name: "send_text".into(),
        from,
        to,
        at_ms: 5,
    };
    use ServiceState::*;
    let crash = m.on_event(&state(Running, Backoff));
    assert_eq!(
        brief(&crash),
        [(
            "vps1/crash/send_text".into(),
            AlertStatus::Firing,
            Severity::Warning
        )]
    );
    let fatal = m.on_event(&state(Starting, Fatal));
    assert_eq!(
        brief(&fatal),
        [(
            "vps1/fatal/send_text".into(),
            AlertStatus::Firing,
            Severity::Critical
        )]
    );
    let back = m.on_event(&state(Fatal, Starting));
    assert_eq!(
        brief(&back),
        [(
            "vps1/fatal/send_text".into(),
            AlertStatus::Resolved,
            Severity::Critical
        )]
    );
    assert!(m.on_event(&state(Stopping, Stopped)).is_empty());

    let stage = |stage: &str| Event::Recovery {
        group: "telegram".into(),
        stage: stage.into(),
        summary: stage.into(),
        at_ms: 9,
    };
    let phases: Vec<String> = ["stopping", "cooldown", "done"]
        .iter()
        .flat_map(|s| m.on_event(&stage(s)))
        .map(|a| a.details["phase"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(phases, ["started", "stage", "ended"]);
}

#[test]
fn flood_waits_and_failed_reloads_come_from_the_snapshot() {
    let mut m = mapper();
    let snap = |at_ms: Millis, flood: Option<Millis>, error: Option<&str>| Snapshot {
        at_ms,
        services: vec![ServiceStatus {
            name: "send_text".into(),
            group: Some("telegram".into()),
            flood_until_ms: flood,
            ..ServiceStatus::default()
        }],
        config_error: error.map(str::to_string),
        ..Snapshot::default()
    };
    let fired = m.on_snapshot(&snap(1_000, Some(31_000), Some("bad key")));
    assert_eq!(
        brief(&fired),
        [
            (
                "vps1/flood_wait/send_text".into(),
                AlertStatus::Firing,
                Severity::Warning
            ),
            (
                "vps1/reload_failed/config".into(),
                AlertStatus::Firing,
                Severity::Critical
            ),
        ]
    );
    assert_eq!(
        fired[0].summary,
        "send_text hit a Telegram flood wait of 30s"
    );
    assert!(m
        .on_snapshot(&snap(2_000, Some(31_000), Some("bad key")))
        .is_empty());
    // The wait's end passed: over, even though the field is still set.
    let over = m.on_snapshot(&snap(31_000, Some(31_000), None));
    assert_eq!(
        brief(&over),
        [
            (
                "vps1/flood_wait/send_text".into(),
                AlertStatus::Resolved,
                Severity::Warning
            ),
            (
                "vps1/reload_failed/config".into(),
                AlertStatus::Resolved,
                Severity::Critical
            ),
        ]
    );
}

#[test]
fn a_core_alert_is_resolved_once_by_the_core() {
    let mut m = mapper();
    let core = |raised: bool| Event::Alert {
        service: "send_text".into(),
        check: "alive".into(),
        raised,
        message: "down".into(),
        at_ms: 3,
    };
    let id = "vps1/check/send_text/alive".to_string();
    assert_eq!(
        brief(&m.on_event(&core(true))),
        [(id.clone(), AlertStatus::Firing, Severity::Critical)]
    );
    // The core sends the passing result before clearing its alert state: only the clearing resolves.
    assert!(m.on_event(&check(Status::Ok, "fine", 4)).is_empty());
    assert_eq!(
        brief(&m.on_event(&core(false))),
        [(id, AlertStatus::Resolved, Severity::Critical)]
    );
    assert!(m.on_event(&core(false)).is_empty());
}
