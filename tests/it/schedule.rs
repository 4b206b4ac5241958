//! Schedules end to end: a real `tend up` running `[[schedule]]` entries at second granularity against
//! emulated Telethon services (the emulator's own record says what reached it), the staggering rule,
//! the spacing a scheduled reload_cache takes up, no burst of missed runs after tend was down,
//! `tend schedules`, a schedule added by editing the file, the alert webhook and the JSON API.

use std::time::Duration;

use tend::schedule::{RunStatus, ScheduleView};
use tend::state::StartReason;
use tend_sim::{read_events, EventKind};

use crate::helper::*;

const T: Duration = Duration::from_secs(20);

/// `tend schedules --json`.
fn schedules(world: &World) -> Vec<ScheduleView> {
    let out = world.tend(&["schedules", "--json"]);
    assert_eq!(code(&out), 0, "tend schedules failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn schedule(world: &World, name: &str) -> ScheduleView {
    schedules(world)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no schedule {name} in `tend schedules`"))
}

/// How many `POST /reload_cache` the emulator on account `account` received.
fn reloads_seen(world: &World, account: &str) -> usize {
    read_events(&world.path().join("sim"), account)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.kind == EventKind::ReloadCache)
        .count()
}

/// Start records of `service` that were cache reloads asked by a schedule.
fn scheduled_reloads(world: &World, service: &str) -> Vec<tend::state::StartRecord> {
    world
        .starts(service)
        .into_iter()
        .filter(
            |r| matches!(&r.reason, StartReason::ReloadCache { by } if by.starts_with("schedule ")),
        )
        .collect()
}

fn reload_schedule(name: &str, cron: &str, service: &str) -> String {
    format!(
        "\n[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\naction = \"reload_cache\"\nservices = [\"{service}\"]\n"
    )
}

#[test]
fn a_schedule_reloads_the_cache_at_second_granularity() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sim_service("svc", "send_text", port, &[], ""),
        reload_schedule("refresh", "* * * * * *", "svc")
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_for(T, "two reloads received by the emulator", || {
        (reloads_seen(&world, "svc") >= 2).then_some(())
    });
    // The state file is written by its own task, a moment after the core recorded the reload.
    let records = wait_for(T, "two scheduled reloads in the state file", || {
        let records = scheduled_reloads(&world, "svc");
        (records.len() >= 2).then_some(records)
    });
    assert_eq!(
        records[0].reason,
        StartReason::ReloadCache {
            by: "schedule refresh".into()
        }
    );
    assert!(!records[0].forced, "a schedule never forces");
    // At second granularity: consecutive scheduled reloads are whole seconds apart, on the second.
    for pair in records.windows(2) {
        let apart = pair[1].at_ms - pair[0].at_ms;
        assert!(apart >= 900, "reloads {apart} ms apart: {records:?}");
    }
    let view = wait_for(T, "an ok outcome listed", || {
        let view = schedule(&world, "refresh");
        view.runs
            .iter()
            .any(|r| r.status == RunStatus::Ok)
            .then_some(view)
    });
    let ok = view
        .runs
        .iter()
        .find(|r| r.status == RunStatus::Ok)
        .unwrap();
    assert!(
        ok.message.starts_with("svc: dialog cache reload requested"),
        "{}",
        ok.message
    );
    assert_eq!(view.action, "reload_cache");
    assert_eq!(view.services, ["svc"]);
    assert!(world
        .read_log("svc")
        .contains("reloading the dialog cache (POST /reload_cache), asked by schedule refresh"));
}

#[test]
fn schedules_that_would_fetch_dialogs_in_the_same_minute_are_refused() {
    let (a, b) = (free_port(), free_port());
    let body = format!(
        "[groups.acct]\n{}{}{}{}",
        sim_service("a", "send_text", a, &[], "group = \"acct\""),
        sim_service("b", "send_media", b, &[], "group = \"acct\""),
        reload_schedule("text", "*/30 * * * *", "a"),
        reload_schedule("media", "0 0,30 * * * *", "b"),
    );
    let world = World::new(&body);
    let out = world.tend(&["check"]);
    assert_eq!(code(&out), 5, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("schedule[2].cron")
            && err.contains("schedules `text` (line")
            && err.contains("and `media` both fetch dialogs of group acct")
            && err.contains("at the same time (00:00:00 UTC)"),
        "{err}"
    );
    assert!(
        err.contains(
            "cron = \"0 0,30 * * * *\" for `text` and cron = \"0 15,45 * * * *\" for `media`"
        ),
        "the help suggests an offset: {err}"
    );
    // `tend up` refuses it the same way and starts nothing.
    let out = world.tend(&["up"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(!world.log_path("a").exists());
}

#[test]
fn a_staggered_pair_both_fires_never_closer_than_the_group_spacing() {
    let (a, b) = (free_port(), free_port());
    // Seconds 0, 4, 8, ... for a and 2, 6, 10, ... for b would be 2 s apart: the spacing exactly,
    // refused by the validation. 0/6 and 3/6 are 3 s apart.
    let body = format!(
        "[groups.acct]\nmin_start_spacing = \"2s\"\n{}{}{}{}",
        sim_service("a", "send_text", a, &[], "group = \"acct\""),
        sim_service("b", "send_media", b, &[], "group = \"acct\""),
        reload_schedule("text", "0/6 * * * * *", "a"),
        reload_schedule("media", "3/6 * * * * *", "b"),
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_for(
        Duration::from_secs(40),
        "a scheduled reload on each service",
        || {
            (!scheduled_reloads(&world, "a").is_empty()
                && !scheduled_reloads(&world, "b").is_empty())
            .then_some(())
        },
    );
    wait_for(T, "both emulators received their reload", || {
        (reloads_seen(&world, "a") >= 1 && reloads_seen(&world, "b") >= 1).then_some(())
    });
    // Every dialog fetch of the account (starts and reloads of both) at least the spacing apart.
    let mut fetches: Vec<i64> = ["a", "b"]
        .iter()
        .flat_map(|s| world.starts(s))
        .map(|r| r.at_ms)
        .collect();
    fetches.sort_unstable();
    for pair in fetches.windows(2) {
        assert!(
            pair[1] - pair[0] >= 2000,
            "two fetches {} ms apart: {fetches:?}",
            pair[1] - pair[0]
        );
    }
    let (text, media) = (
        scheduled_reloads(&world, "a")[0].at_ms,
        scheduled_reloads(&world, "b")[0].at_ms,
    );
    assert_ne!(text / 1000, media / 1000, "in different seconds");
}

#[test]
fn a_scheduled_reload_takes_up_the_group_spacing() {
    let port = free_port();
    let body = format!(
        "[groups.g]\nmin_start_spacing = \"4s\"\n{}{}\n[services.other]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\ngroup = \"g\"\nautostart = false\n",
        sim_service("svc", "send_text", port, &[], "group = \"g\""),
        reload_schedule("refresh", "*/6 * * * * *", "svc"),
    );
    let world = World::new(&body);
    let _tend = world.up();
    let reload = wait_for(T, "a scheduled reload recorded", || {
        scheduled_reloads(&world, "svc").into_iter().next()
    });
    // Right after it, a start of another member of the group is refused by the spacing, and the next
    // allowed start is the spacing after the reload.
    let out = world.tend(&["restart", "other"]);
    assert_eq!(code(&out), 4, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("group g spacing"), "{}", stdout(&out));
    let other = world.service("other");
    let next = other.next_start;
    let newest = world.starts("svc").iter().map(|r| r.at_ms).max().unwrap();
    assert!(newest >= reload.at_ms);
    assert_eq!(next.at_ms, newest + 4000, "{next:?}");
    assert!(matches!(
        next.hold,
        Some(tend::core::Hold::GroupSpacing { .. })
    ));
}

#[test]
fn a_refused_reload_is_the_runs_outcome_and_is_not_retried() {
    let port = free_port();
    // The service's own start holds its reloads for an hour: every run is refused, each only once.
    let body = format!(
        "{}{}",
        sim_service(
            "svc",
            "send_text",
            port,
            &[],
            "min_restart_interval = \"1h\""
        ),
        reload_schedule("refresh", "*/2 * * * * *", "svc"),
    );
    let world = World::new(&body);
    let _tend = world.up();
    let view = wait_for(T, "two refused runs", || {
        let view = schedule(&world, "refresh");
        (view
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Refused)
            .count()
            >= 2)
            .then_some(view)
    });
    let refused = &view.runs[0];
    assert!(
        refused
            .message
            .contains("svc: refused by min_restart_interval (allowed in 59m")
            && refused.message.contains("not retried"),
        "{}",
        refused.message
    );
    // Refusals are whole runs two seconds apart, not a retry loop.
    let times: Vec<i64> = view
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Refused)
        .map(|r| r.at_ms)
        .collect();
    for pair in times.windows(2) {
        assert!(pair[0] - pair[1] >= 1500, "{times:?}");
    }
    assert_eq!(reloads_seen(&world, "svc"), 0);
    let table = stdout(&world.tend(&["schedules"]));
    assert!(table.contains("refused"), "{table}");
}

/// The appended lines of `file` as nanosecond timestamps.
fn stamps(world: &World, file: &str) -> Vec<i128> {
    std::fs::read_to_string(world.path().join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

const STAMP_EVERY_SECOND: &str = r#"
[services.idle]
command = ["sh", "-c", "exec sleep 1000"]

[[schedule]]
name = "stamp"
cron = "* * * * * *"
action = "exec"
command = ["sh", "-c", "date +%s%N >> stamps"]
timeout = "5s"
"#;

#[test]
fn runs_missed_while_tend_was_down_are_not_replayed_in_a_burst() {
    let world = World::new(STAMP_EVERY_SECOND);
    let mut tend = world.up();
    wait_for(T, "two runs", || {
        (stamps(&world, "stamps").len() >= 2).then_some(())
    });
    tend.signal(libc::SIGTERM);
    tend.wait_exit(T);
    let before = stamps(&world, "stamps").len();
    // Three scheduled seconds pass while tend is down.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        stamps(&world, "stamps").len(),
        before,
        "nothing runs while tend is down"
    );
    let _tend = world.up();
    wait_for(T, "three runs after the restart", || {
        (stamps(&world, "stamps").len() >= before + 3).then_some(())
    });
    let after = &stamps(&world, "stamps")[before..];
    // One catch-up run at most: it may land just before the next second's regular run, but a replay
    // of the three missed runs would put three or more within half a second.
    for window in after.windows(3) {
        assert!(
            window[2] - window[0] > 500_000_000,
            "three runs within half a second: {after:?}"
        );
    }
}

#[test]
fn tend_down_for_hours_skips_the_missed_runs_with_a_count() {
    // An hourly exec at the minute five minutes ago: its latest time passed long before the catch-up
    // grace, so nothing runs when tend comes up; the runs missed are counted.
    let five_ago = chrono::Utc::now() - chrono::Duration::minutes(5);
    let minute = five_ago.format("%M").to_string();
    let body = format!(
        "[services.idle]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\n\
         [[schedule]]\nname = \"hourly\"\ncron = \"0 {minute} * * * *\"\naction = \"exec\"\n\
         command = [\"sh\", \"-c\", \"echo ran >> ran\"]\n"
    );
    let world = World::new(&body);
    let mut tend = world.up();
    wait_for(T, "the schedule state saved", || {
        world
            .path()
            .join("state/schedules.json")
            .exists()
            .then_some(())
    });
    tend.signal(libc::SIGTERM);
    tend.wait_exit(T);
    // As if tend had been down for three hours: its last run was then.
    let path = world.path().join("state/schedules.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let three_hours_ago = chrono::Utc::now().timestamp_millis() - 3 * 3_600_000 + 60_000;
    state["schedules"]["hourly"]["last_run_ms"] = three_hours_ago.into();
    std::fs::write(&path, state.to_string()).unwrap();

    let _tend = world.up();
    let view = wait_for(T, "the skipped runs recorded", || {
        let view = schedule(&world, "hourly");
        view.last().is_some().then_some(view)
    });
    let last = view.last().unwrap();
    assert_eq!(last.status, RunStatus::Skipped);
    assert_eq!(
        last.message,
        "3 missed run(s) while tend was not running were skipped, not replayed"
    );
    assert!(!world.path().join("ran").exists(), "nothing was replayed");
    let next = view.next_ms.unwrap() - chrono::Utc::now().timestamp_millis();
    assert!(
        (50 * 60_000..=56 * 60_000).contains(&next),
        "next run in {next} ms"
    );
}

#[test]
fn tend_schedules_lists_each_entry_with_its_next_run() {
    let port = free_port();
    let body = format!(
        "{}{}\n[[schedule]]\nname = \"report\"\ncron = \"@daily\"\naction = \"diagnose\"\n\
         \n[[schedule]]\nname = \"off\"\ncron = \"0 0 3 * * *\"\naction = \"exec\"\ncommand = \"true\"\nenabled = false\n",
        sim_service("svc", "send_text", port, &[], ""),
        reload_schedule("refresh", "0 */30 * * * *", "svc"),
    );
    let world = World::new(&body);
    let _tend = world.up();
    let table = stdout(&world.tend(&["schedules"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("NEXT RUN")
            && lines[0].contains("OUTCOME"),
        "{table}"
    );
    let refresh = lines.iter().find(|l| l.starts_with("refresh")).unwrap();
    assert!(
        refresh.contains("0 */30 * * * *")
            && refresh.contains("reload_cache")
            && refresh.contains("svc"),
        "{refresh}"
    );
    assert!(
        refresh.contains(" UTC (in "),
        "absolute UTC time and a countdown: {refresh}"
    );
    let off = lines.iter().find(|l| l.starts_with("off")).unwrap();
    assert!(off.contains("disabled") && off.contains("true"), "{off}");

    let list = schedules(&world);
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["refresh", "report", "off"], "configuration order");
    let now = chrono::Utc::now().timestamp_millis();
    let next = list[0].next_ms.unwrap();
    assert!(next > now && next - now <= 30 * 60_000, "{next} vs {now}");
    assert_eq!(next % (30 * 60_000), 0, "on the half hour");
    let daily = list[1].next_ms.unwrap();
    assert_eq!(daily % 86_400_000, 0, "@daily is midnight UTC");
    assert_eq!(list[2].next_ms, None);
    assert!(!list[2].enabled);
}

#[test]
fn a_schedule_added_by_editing_the_file_appears_and_fires() {
    let idle = "[services.idle]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\n";
    let world = World::new(idle);
    let _tend = world.up();
    assert!(schedules(&world).is_empty());
    assert!(stdout(&world.tend(&["schedules"])).starts_with("no schedules"));

    // STAMP_EVERY_SECOND has the same idle service, plus the schedule.
    world.write_config(STAMP_EVERY_SECOND);
    let view = wait_for(T, "the added schedule listed", || {
        schedules(&world).into_iter().find(|s| s.name == "stamp")
    });
    assert!(view.next_ms.is_some());
    wait_for(T, "the added schedule's runs", || {
        (stamps(&world, "stamps").len() >= 2).then_some(())
    });
    let view = wait_for(T, "an ok outcome", || {
        let view = schedule(&world, "stamp");
        view.runs
            .iter()
            .any(|r| r.status == RunStatus::Ok)
            .then_some(view)
    });
    assert!(
        view.runs.iter().any(|r| r.message == "exit 0"),
        "{:?}",
        view.runs
    );
    // Nothing restarted for a schedule change.
    assert_eq!(world.starts("idle").len(), 1);

    // Removed again (an explicit reload this time): it disappears and stops running.
    world.write_config(idle);
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for(T, "the schedule gone", || {
        schedules(&world).is_empty().then_some(())
    });
    let count = stamps(&world, "stamps").len();
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        stamps(&world, "stamps").len() <= count + 1,
        "still running after removal"
    );
}

#[test]
fn a_scheduled_diagnosis_is_posted_to_the_alert_webhook() {
    let receiver = Receiver::start(0);
    let body = format!(
        "[services.idle]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\n\
         [alerts]\nwebhook = \"{}\"\nretry_delay = \"100ms\"\n\
         [[schedule]]\nname = \"report\"\ncron = \"*/2 * * * * *\"\naction = \"diagnose\"\nalert = true\n",
        receiver.url
    );
    let world = World::new(&body);
    let _tend = world.up();
    let posted = wait_for(T, "the report posted", || {
        receiver
            .accepted()
            .into_iter()
            .find(|p| p["kind"] == "diagnosis")
    });
    // The same schema as every other alert.
    assert_eq!(posted["schema"], "tend.alert/v1");
    assert_eq!(posted["details"]["schedule"], "report");
    assert!(
        posted["details"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("idle"),
        "{posted}"
    );
    let view = wait_for(T, "the outcome", || {
        let view = schedule(&world, "report");
        view.last()
            .is_some_and(|r| r.status == RunStatus::Ok)
            .then_some(view)
    });
    assert!(
        view.last()
            .unwrap()
            .message
            .contains("posted to the alert webhook"),
        "{:?}",
        view.last()
    );
}

/// One HTTP/1.1 exchange with headers: status, Set-Cookie (first) and body.
fn web(port: u16, method: &str, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().to_string())
        })
        .and_then(|c| c.split(';').next().map(str::to_string))
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (status, set_cookie, body)
}

#[test]
fn the_status_page_api_shows_the_schedules() {
    let hash = std::process::Command::new(TEND)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"a long enough password\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
    let web_port = free_port();
    let body = format!(
        "[services.idle]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\n\
         [web]\nlisten = \"127.0.0.1:{web_port}\"\n\
         [[web.users]]\nname = \"ann\"\npassword_hash = \"{hash}\"\n\
         [[schedule]]\nname = \"stamp\"\ncron = \"* * * * * *\"\naction = \"exec\"\n\
         command = [\"sh\", \"-c\", \"echo hello; date +%s%N >> stamps\"]\n"
    );
    let world = World::new(&body);
    let _tend = world.up();
    let (status, cookie, _) = wait_for(T, "the page", || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).ok()?;
        Some(web(
            web_port,
            "POST",
            "/api/login",
            "",
            r#"{"user":"ann","password":"a long enough password"}"#,
        ))
    });
    assert_eq!(status, 200);
    wait_for(T, "a run", || {
        (!stamps(&world, "stamps").is_empty()).then_some(())
    });
    let (status, _, body) = wait_for(T, "a run listed by the API", || {
        let reply = web(web_port, "GET", "/api/schedules", &cookie, "");
        reply.2.contains("exit 0").then_some(reply)
    });
    assert_eq!(status, 200);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stamp = &value["schedules"][0];
    assert_eq!(stamp["name"], "stamp");
    assert_eq!(stamp["action"], "exec");
    assert!(stamp["next_ms"].as_i64().unwrap() > value["at_ms"].as_i64().unwrap() - 1000);
    assert_eq!(stamp["runs"][0]["status"], "ok");
    assert_eq!(stamp["runs"][0]["message"], "exit 0: hello");
    // The status view carries them too (the page renders its Schedules section from it).
    let (_, _, status_body) = web(web_port, "GET", "/api/status", &cookie, "");
    let view: serde_json::Value = serde_json::from_str(&status_body).unwrap();
    assert_eq!(view["schedules"][0]["name"], "stamp");
    // No login, no schedules.
    assert_eq!(web(web_port, "GET", "/api/schedules", "", "").0, 401);
}

#[test]
fn a_scheduled_restart_is_recorded_as_the_schedules_start() {
    let body = "[services.svc]\ncommand = [\"sleep\", \"1000\"]\nstart_grace = \"10ms\"\nstop_timeout = \"2s\"\n\
                [[schedule]]\nname = \"nightly\"\ncron = \"*/2 * * * * *\"\naction = \"restart\"\nservices = [\"svc\"]\n";
    let world = World::new(body);
    let _tend = world.up();
    let first = world
        .wait_state("svc", tend::core::ServiceState::Running, T)
        .pid;
    let restarted = wait_for(T, "a scheduled restart", || {
        let s = world.service("svc");
        (s.pid.is_some() && s.pid != first && s.state.has_process()).then_some(s)
    });
    let reason = restarted.last_start.expect("a start").reason;
    assert_eq!(
        reason,
        tend::state::StartReason::Schedule {
            entry: "nightly".into()
        }
    );
}
