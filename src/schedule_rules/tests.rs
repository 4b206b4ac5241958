//! Schedule tests over explicit UTC times: next runs, expression forms and errors, the missed-run rule
//! and the stagger check.

use std::time::Duration;

use chrono::{Datelike, NaiveDateTime, Weekday};

use super::*;

/// Epoch ms of a UTC time written "2025-03-30 02:30:00.000".
fn at(text: &str) -> i64 {
    let format = if text.contains('.') {
        "%Y-%m-%d %H:%M:%S%.3f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    NaiveDateTime::parse_from_str(text, format)
        .unwrap_or_else(|err| panic!("{text}: {err}"))
        .and_utc()
        .timestamp_millis()
}

fn spec(name: &str, cron: &str, action: ScheduleAction, services: &[&str]) -> ScheduleSpec {
    ScheduleSpec {
        name: name.to_string(),
        cron: cron.to_string(),
        action,
        services: services.iter().map(|s| s.to_string()).collect(),
        enabled: true,
    }
}

const DIAGNOSE: ScheduleAction = ScheduleAction::Diagnose { alert: false };

fn schedule(cron: &str) -> Schedule {
    Schedule::new(spec("test", cron, DIAGNOSE, &[])).unwrap_or_else(|err| panic!("{cron}: {err}"))
}

fn reload(name: &str, cron: &str, service: &str) -> Schedule {
    Schedule::new(spec(name, cron, ScheduleAction::ReloadCache, &[service])).unwrap()
}

#[test]
fn next_after_is_strictly_later_at_second_granularity() {
    let every_10s = schedule("*/10 * * * * *");
    // (after, expected next)
    let table = [
        ("2025-01-01 12:00:00.000", "2025-01-01 12:00:10"),
        ("2025-01-01 12:00:09.999", "2025-01-01 12:00:10"),
        ("2025-01-01 12:00:10.000", "2025-01-01 12:00:20"),
        ("2025-01-01 12:00:10.001", "2025-01-01 12:00:20"),
        ("2025-01-01 23:59:55.000", "2025-01-02 00:00:00"),
    ];
    for (after, expected) in table {
        assert_eq!(
            every_10s.next_after(at(after)),
            Some(at(expected)),
            "{after}"
        );
    }
    let at_second_7 = schedule("7 * * * * *");
    assert_eq!(
        at_second_7.next_after(at("2025-01-01 12:00:07.500")),
        Some(at("2025-01-01 12:01:07"))
    );
}

#[test]
fn five_fields_run_at_second_zero_like_the_six_field_form() {
    let five = schedule("*/30 * * * *");
    let six = schedule("0 */30 * * * *");
    assert_eq!(five.expression(), "0 */30 * * * *");
    let mut t = at("2025-06-01 10:07:13");
    for _ in 0..5 {
        let next = five.next_after(t).unwrap();
        assert_eq!(Some(next), six.next_after(t));
        assert_eq!(next % MINUTE_MS, 0, "a 5-field run is on second 0");
        t = next;
    }
    assert_eq!(t, at("2025-06-01 12:30:00"));
    // Day names work in five fields: the next weekday run after a Saturday is a Monday.
    let weekdays = schedule("0 4 * * MON-FRI");
    let next = weekdays.next_after(at("2025-06-07 12:00:00")).unwrap();
    let date = DateTime::<Utc>::from_timestamp_millis(next).unwrap();
    assert_eq!(date.weekday(), Weekday::Mon);
    assert_eq!(next, at("2025-06-09 04:00:00"));
}

#[test]
fn seven_fields_with_a_year_and_shortcuts() {
    let once = schedule("0 0 3 1 1 * 2030");
    assert_eq!(
        once.next_after(at("2029-05-01 00:00:00")),
        Some(at("2030-01-01 03:00:00"))
    );
    assert_eq!(once.next_after(at("2030-01-01 03:00:00")), None);
    assert_eq!(once.due(None, at("2031-01-01 00:00:00")), Due::Never);
    let hourly = schedule("@hourly");
    assert_eq!(
        hourly.next_after(at("2025-01-01 12:59:59")),
        Some(at("2025-01-01 13:00:00"))
    );
}

#[test]
fn times_are_utc_without_daylight_saving_gaps() {
    // 02:30 does not exist in Central Europe on 2025-03-30 and happens twice on 2025-10-26; in UTC
    // every day has exactly one, 24 hours apart.
    let nightly = schedule("0 30 2 * * *");
    for day in ["2025-03-29", "2025-10-25"] {
        let first = nightly.next_after(at(&format!("{day} 00:00:00"))).unwrap();
        assert_eq!(first, at(&format!("{day} 02:30:00")));
        let second = nightly.next_after(first).unwrap();
        let third = nightly.next_after(second).unwrap();
        assert_eq!(second - first, 24 * 3_600_000, "{day}");
        assert_eq!(third - second, 24 * 3_600_000, "{day}");
    }
}

#[test]
fn bad_expressions_say_what_was_expected() {
    let cases = [
        ("*/30 * *", "has 3 field(s)"),
        ("0 0 0 0 0 0 0 0", "has 8 field(s)"),
        ("0 61 * * * *", "is not a valid expression"),
        ("0 0 * * * XYZ", "is not a valid expression"),
        ("", "has 0 field(s)"),
    ];
    for (cron, what) in cases {
        let err = Schedule::new(spec("nightly", cron, ScheduleAction::Restart, &["a"]))
            .expect_err(cron)
            .to_string();
        assert!(err.starts_with("schedule `nightly`: cron = \""), "{err}");
        assert!(err.contains(what), "{cron}: {err}");
        assert!(
            err.contains("sec min hour day-of-month month day-of-week [year]"),
            "{err}"
        );
    }
    let err = Schedule::new(spec("weekly", "0 4 * * 1-5", ScheduleAction::Restart, &[]))
        .expect_err("numbered weekdays in 5 fields");
    assert!(
        matches!(err, ScheduleError::NumericWeekday { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("MON-FRI"), "{err}");
    // Six fields use the crate's numbering (1 = Sunday) and are accepted as written.
    assert_eq!(
        schedule("0 0 4 * * 1").next_after(at("2025-06-02 00:00:00")),
        Some(at("2025-06-08 04:00:00")),
        "2025-06-08 is a Sunday"
    );
}

#[test]
fn due_runs_on_time_and_waits_otherwise() {
    let half_hourly = schedule("0 */30 * * * *");
    // (last run, now, expected)
    let table = [
        // The timer fires on time (or a little late): run.
        (
            Some("2025-01-01 11:30:00"),
            "2025-01-01 12:00:00",
            Due::RunNow,
        ),
        (
            Some("2025-01-01 11:30:00"),
            "2025-01-01 12:00:59.999",
            Due::RunNow,
        ),
        // Already ran this time: wait for the next.
        (
            Some("2025-01-01 12:00:00.250"),
            "2025-01-01 12:10:00",
            Due::NotYet {
                next_ms: at("2025-01-01 12:30:00"),
            },
        ),
        // Never ran and tend just started between two times: no catch-up, wait.
        (
            None,
            "2025-01-01 12:10:00",
            Due::NotYet {
                next_ms: at("2025-01-01 12:30:00"),
            },
        ),
        // Never ran, but the time passed within the grace (tend came up just after it).
        (None, "2025-01-01 12:00:30", Due::RunNow),
        // The clock stepped back behind the last run: nothing runs twice.
        (
            Some("2025-01-01 12:30:00"),
            "2025-01-01 12:20:00",
            Due::NotYet {
                next_ms: at("2025-01-01 13:00:00"),
            },
        ),
    ];
    for (last, now, expected) in table {
        assert_eq!(
            half_hourly.due(last.map(at), at(now)),
            expected,
            "last {last:?}, now {now}"
        );
    }
}

#[test]
fn tend_down_for_three_hours_skips_with_a_count_instead_of_a_burst() {
    let half_hourly = schedule("0 */30 * * * *");
    let last = at("2025-01-01 12:00:00");
    let now = at("2025-01-01 15:10:00");
    // 12:30, 13:00, 13:30, 14:00, 14:30, 15:00 passed while tend was down.
    assert_eq!(half_hourly.due(Some(last), now), Due::Skip { missed: 6 });
    // The caller records the skip at `now`; from then on the schedule is back on its times.
    assert_eq!(
        half_hourly.due(Some(now), now),
        Due::NotYet {
            next_ms: at("2025-01-01 15:30:00")
        }
    );
    // Back up just after a time: one catch-up run, not seven.
    assert_eq!(
        half_hourly.due(Some(last), at("2025-01-01 15:00:20")),
        Due::RunNow
    );
    // The grace is exclusive: a minute late is too late.
    assert_eq!(
        half_hourly.due(Some(last), at("2025-01-01 15:01:00")),
        Due::Skip { missed: 6 }
    );
}

#[test]
fn the_catch_up_grace_is_configurable() {
    let every_minute = schedule("0 * * * * *").with_catch_up_grace(Duration::from_millis(500));
    let last = at("2025-01-01 12:00:00");
    assert_eq!(
        every_minute.due(Some(last), at("2025-01-01 12:01:00.400")),
        Due::RunNow
    );
    assert_eq!(
        every_minute.due(Some(last), at("2025-01-01 12:01:00.600")),
        Due::Skip { missed: 1 }
    );
}

#[test]
fn a_very_long_outage_saturates_the_missed_count() {
    let every_second = schedule("* * * * * *");
    let due = every_second.due(
        Some(at("2025-01-01 00:00:00")),
        at("2025-02-01 00:00:00.500"),
    );
    assert_eq!(
        due,
        Due::RunNow,
        "the latest second passed 0.5 s ago: within the grace"
    );
    let every_second = every_second.with_catch_up_grace(Duration::ZERO);
    let due = every_second.due(
        Some(at("2025-01-01 00:00:00")),
        at("2025-02-01 00:00:00.500"),
    );
    assert_eq!(
        due,
        Due::Skip {
            missed: MISSED_COUNT_CAP
        }
    );
}

/// Conflicts as (a, b, a's run, b's run) for short assertions.
fn clashes(conflicts: Vec<Conflict>) -> Vec<(String, String, i64, i64)> {
    conflicts
        .into_iter()
        .map(|c| (c.a, c.b, c.a_ms, c.b_ms))
        .collect()
}

#[test]
fn stagger_catches_both_services_reloading_on_the_half_hour() {
    let start = at("2025-01-01 00:00:00");
    let horizon = (start, start + 24 * 3_600_000);
    let a_minute = |a: &Schedule, b: &Schedule| {
        (a.spec().action.fetches_dialogs() && b.spec().action.fetches_dialogs())
            .then_some(MINUTE_MS)
    };

    let clash = [
        reload("text_reload", "*/30 * * * *", "send_text"),
        reload("media_reload", "0 */30 * * * *", "send_media"),
    ];
    assert_eq!(
        clashes(stagger_conflicts(&clash, horizon, a_minute)),
        vec![("text_reload".into(), "media_reload".into(), start, start)]
    );

    let staggered = [
        reload("text_reload", "0 0,30 * * * *", "send_text"),
        reload("media_reload", "0 15,45 * * * *", "send_media"),
    ];
    assert!(stagger_conflicts(&staggered, horizon, a_minute).is_empty());

    // Different seconds of one minute are too close; so are 20 seconds across a minute boundary.
    let seconds_apart = [
        reload("a", "10 5 3 * * *", "send_text"),
        reload("b", "50 5 3 * * *", "send_media"),
        reload("c", "10 6 3 * * *", "send_media"),
    ];
    assert_eq!(
        clashes(stagger_conflicts(&seconds_apart, horizon, a_minute)),
        vec![
            (
                "a".into(),
                "b".into(),
                at("2025-01-01 03:05:10"),
                at("2025-01-01 03:05:50")
            ),
            (
                "b".into(),
                "c".into(),
                at("2025-01-01 03:05:50"),
                at("2025-01-01 03:06:10")
            ),
        ]
    );
    // A full minute apart is far enough.
    let a_minute_apart = [
        reload("a", "10 5 3 * * *", "send_text"),
        reload("b", "10 6 3 * * *", "send_media"),
    ];
    assert!(stagger_conflicts(&a_minute_apart, horizon, a_minute).is_empty());

    // A diagnose does not fetch dialogs: the predicate lets it share the minute.
    let mixed = [
        reload("text_reload", "0 */30 * * * *", "send_text"),
        Schedule::new(spec("report", "0 */30 * * * *", DIAGNOSE, &["send_text"])).unwrap(),
    ];
    assert!(stagger_conflicts(&mixed, horizon, a_minute).is_empty());
}

#[test]
fn a_spacing_gap_finds_runs_that_are_minutes_apart() {
    let day = at("2025-01-01 00:00:00");
    let horizon = (day, day + 7 * 24 * 3_600_000);
    let eleven_minutes = |_: &Schedule, _: &Schedule| Some(11 * MINUTE_MS + 1000);
    // 10 minutes apart every half hour: inside an 11-minute spacing.
    let close = [
        reload("a", "0 0,30 * * * *", "send_text"),
        reload("b", "0 10,40 * * * *", "send_media"),
    ];
    assert_eq!(
        clashes(stagger_conflicts(&close, horizon, eleven_minutes)),
        vec![("a".into(), "b".into(), day, at("2025-01-01 00:10:00"))]
    );
    // 15 minutes apart: fine.
    let staggered = [
        reload("a", "0 0,30 * * * *", "send_text"),
        reload("b", "0 15,45 * * * *", "send_media"),
    ];
    assert!(stagger_conflicts(&staggered, horizon, eleven_minutes).is_empty());
    // Exactly the spacing apart is still a clash (the later run would be refused by milliseconds):
    // the gap asked for is the spacing plus a second.
    let exact = [
        reload("a", "0 0 * * * *", "send_text"),
        reload("b", "0 11 * * * *", "send_media"),
    ];
    assert_eq!(stagger_conflicts(&exact, horizon, eleven_minutes).len(), 1);
    // A weekly run meets a half-hourly one on Mondays only: found on the first Monday, 2025-01-06.
    let weekly = [
        reload("nightly", "0 5 3 * * MON", "send_text"),
        reload("half_hourly", "0 0,30 * * * *", "send_media"),
    ];
    assert_eq!(
        clashes(stagger_conflicts(&weekly, horizon, eleven_minutes)),
        vec![(
            "nightly".into(),
            "half_hourly".into(),
            at("2025-01-06 03:05:00"),
            at("2025-01-06 03:00:00")
        )]
    );
}

#[test]
fn dense_second_schedules_stay_cheap() {
    // Both every other second, offset by one: 1 s apart everywhere, never closer. A walk over every
    // second of a month would take long; the step cap ends it.
    let day = at("2025-01-01 00:00:00");
    let pair = [
        reload("even", "*/2 * * * * *", "send_text"),
        reload("odd", "1/2 * * * * *", "send_media"),
    ];
    let started = std::time::Instant::now();
    assert!(stagger_conflicts(&pair, (day, day + 35 * 86_400_000), |_, _| Some(1000)).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        clashes(stagger_conflicts(&pair, (day, day + 86_400_000), |_, _| {
            Some(1001)
        })),
        vec![("even".into(), "odd".into(), day, day + 1000)]
    );
}

#[test]
fn stagger_looks_only_inside_the_horizon() {
    // Both run at 03:00 only; a horizon that ends before 03:00 (exclusive end) sees no clash.
    let pair = [
        reload("a", "0 0 3 * * *", "send_text"),
        reload("b", "30 0 3 * * *", "send_media"),
    ];
    let always = |_: &Schedule, _: &Schedule| Some(MINUTE_MS);
    let day = at("2025-01-01 00:00:00");
    assert!(stagger_conflicts(&pair, (day, at("2025-01-01 03:00:00")), always).is_empty());
    assert_eq!(
        clashes(stagger_conflicts(
            &pair,
            (at("2025-01-01 03:00:00"), at("2025-01-01 03:01:00")),
            always
        )),
        vec![(
            "a".into(),
            "b".into(),
            at("2025-01-01 03:00:00"),
            at("2025-01-01 03:00:30")
        )]
    );
    // A horizon starting after a's run: a does not run in it (its next run is a day later).
    assert!(stagger_conflicts(
        &pair,
        (at("2025-01-01 03:00:10"), at("2025-01-02 00:00:00")),
        always
    )
    .is_empty());
}

#[test]
fn problems_leave_the_name_and_expression_to_the_caller() {
    let err = Schedule::new(spec("x", "*/30 * *", ScheduleAction::Restart, &[])).unwrap_err();
    assert_eq!(err.problem(), "has 3 field(s)");
    let err = Schedule::new(spec("x", "0 61 * * * *", ScheduleAction::Restart, &[])).unwrap_err();
    assert!(
        err.problem().starts_with("is not a valid expression ("),
        "{}",
        err.problem()
    );
    let err = Schedule::new(spec("x", "0 4 * * 1", ScheduleAction::Restart, &[])).unwrap_err();
    assert!(err.problem().contains("MON-FRI"), "{}", err.problem());
}

#[test]
fn action_names_and_dialog_fetches() {
    let exec = ScheduleAction::Exec {
        command: vec!["true".into()],
        cwd: std::path::PathBuf::from("/"),
        timeout: Duration::from_secs(1),
    };
    let table = [
        (ScheduleAction::ReloadCache, "reload_cache", true),
        (ScheduleAction::Restart, "restart", true),
        (DIAGNOSE, "diagnose", false),
        (exec, "exec", false),
    ];
    for (action, name, fetches) in table {
        assert_eq!(action.name(), name);
        assert_eq!(action.fetches_dialogs(), fetches, "{name}");
    }
}
