//! The check system end to end: a real `tend up` running `tend-sim` services (and small shell services
//! and plugins), observed through `tend checks`, `tend status`, `tend diagnose`, the persisted history
//! and a local webhook receiver.
//!
//! Every check here runs every 50–300 ms with a timeout below its interval, and the emulator runs at
//! `--time-scale 0.001`, so each test takes a few seconds.

use std::time::{Duration, Instant};

use serde_json::json;
use tend::checks::probe::Status;
use tend::core::ServiceState;
use tend::state::StartReason;

use crate::config_builder::{Cfg, Check};
use crate::helper::*;

const T: Duration = Duration::from_secs(10);

/// A long-running shell service with an optional `port` that nothing listens on.
fn sleeper(name: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nstart_grace = \"50ms\"\nstop_timeout = \"2s\"\n{extra}\n"
    )
}

/// A service that ignores SIGTERM, so a stop takes its whole `stop_timeout` (2 s) and ends in SIGKILL.
fn stubborn(name: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.05; done\"]\nstart_grace = \"50ms\"\nstop_timeout = \"2s\"\n"
    )
}

/// The shipped `cache` check (dialog cache at least 1, a warning below 3900, readiness) every 100 ms.
fn cache_check() -> Check {
    Check::json("cache", "/stats", "/cache_size")
        .key("min", 1)
        .key("warn_below", 3900)
        .key("readiness", true)
        .every("100ms", "80ms")
}

fn now_ms() -> i64 {
    tend::clock::Clock::new().now_ms()
}

// ---- each kind, passing and failing -------------------------------------------------------------

#[test]
fn http_check_fails_on_a_hung_service_raises_an_alert_and_clears_it() {
    let port = free_port();
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &[], ""))
        .check(
            Check::http("health", "/health")
                .key("body_contains", "ok")
                .every("100ms", "80ms"),
        )
        .check(
            Check::http("wrong_body", "/health")
                .key("body_contains", "ready-and-willing")
                .every("100ms", "80ms")
                .on_fail(3, "none"),
        )
        .check(
            Check::http("wrong_status", "/health")
                .key("expect_status", vec![204])
                .every("100ms", "80ms")
                .on_fail(3, "none"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    let ok = world.wait_check("health", "text", "a pass", T, |v| v.status == Status::Ok);
    assert!(ok.message.starts_with("HTTP 200 in "), "{}", ok.message);
    // Under load a run may time out instead (also critical): wait for the failure this test is about.
    let wrong = world.wait_check("wrong_body", "text", "a failure on the body", T, |v| {
        v.status == Status::Critical && v.message.starts_with("body lacks")
    });
    assert_eq!(wrong.message, "body lacks \"ready-and-willing\"");
    let wrong = world.wait_check("wrong_status", "text", "a failure on the status", T, |v| {
        v.status == Status::Critical && v.message.starts_with("HTTP 200")
    });
    assert_eq!(wrong.message, "HTTP 200 (expected 204)");

    // Every endpoint stalls: the check times out, fails, and the third failure in a row raises the alert.
    sim_fault(port, json!({"kind": "hang"}));
    let failing = world.wait_check("health", "text", "the alert state", T, |v| v.alerting);
    assert_eq!(failing.status, Status::Critical);
    assert!(failing.failures >= 3, "{failing:?}");
    assert_eq!(failing.message, "no answer within 80ms");
    assert!(world
        .read_log("text")
        .contains("ALERT: check health failed 3 times in a row: no answer within 80ms"));
    // The alert state comes with 3 failures whatever the action; `none` only sends nothing.
    let quiet = world.check_view("wrong_body", "text").unwrap();
    assert!(quiet.failures >= 3 && quiet.alerting, "{quiet:?}");

    sim_fault(port, json!({"kind": "clear"}));
    let cleared = world.wait_check("health", "text", "a pass again", T, |v| {
        v.status == Status::Ok
    });
    assert_eq!((cleared.failures, cleared.alerting), (0, false));
    assert!(world
        .read_log("text")
        .contains("alert cleared: check health passes again"));
}

#[test]
fn json_check_records_the_cache_size_warns_below_3900_and_marks_ready() {
    let (full, small) = (free_port(), free_port());
    let body = Cfg::new()
        .service(sim_service("full", "send_text", full, &[], ""))
        .service(sim_service(
            "small",
            "send_media",
            small,
            &["--dialogs", "500"],
            "",
        ))
        .check(cache_check());
    let world = World::new(&body.build());
    let _tend = world.up();
    let view = world.wait_check("cache", "full", "the full cache", T, |v| {
        v.value == Some(3978.0)
    });
    assert_eq!(view.status, Status::Ok);
    assert_eq!(view.message, "cache_size 3978");
    let view = world.wait_check("cache", "small", "the small cache", T, |v| {
        v.value == Some(500.0)
    });
    assert_eq!(view.status, Status::Warning);
    assert_eq!(view.message, "cache_size 500 below 3900");
    // A warning still answers: ready, and never a failure.
    assert_eq!(view.failures, 0);
    let status = world.status();
    for s in &status.services {
        assert_eq!(s.ready, Some(true), "{} ready: {s:#?}", s.name);
        let cache = s.checks.iter().find(|c| c.check == "cache").unwrap();
        assert!(cache.value.is_some());
    }
}

#[test]
fn a_zombie_left_by_a_long_flood_wait_at_start_up_is_detected() {
    let port = free_port();
    // A GetDialogs flood at start-up far above Telethon's 60 s threshold (5000 model seconds, 5 s real;
    // the wait the sweep gets is a little shorter by then): the start-up sweep raises, the Telethon
    // thread dies with a traceback, and /health keeps saying ok with cache_size 0.
    let body = Cfg::new()
        .service(sim_service(
            "text",
            "send_text",
            port,
            &["--force-flood", "5000"],
            "",
        ))
        .check(Check::http("health", "/health").every("100ms", "80ms"))
        .check(cache_check().grace("1500ms"))
        .check(
            Check::new("errors", "log")
                .key("critical", vec!["FloodWait"])
                .every("100ms", "80ms")
                .key("window", "1h")
                .on_fail(1, "alert"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    // Inside the grace period the zombie's empty cache is critical but does not count.
    // (The very first poll may come before the HTTP server is up: connection refused, no value.)
    let early = world.wait_check("cache", "text", "a critical result", T, |v| {
        v.status == Status::Critical && v.value.is_some()
    });
    let since = world.service("text").since_ms.unwrap();
    if early.at_ms - since < 1400 {
        assert_eq!(
            early.failures, 0,
            "a failure inside the grace counted: {early:?}"
        );
    }
    assert_eq!(early.value, Some(0.0));
    assert_eq!(early.message, "cache_size 0 below the minimum 1");
    let late = world.wait_check("cache", "text", "the alert state", T, |v| v.alerting);
    assert!(
        late.at_ms - since >= 1500,
        "alert before the grace ended: {late:?}"
    );
    // /health says ok for the zombie all the while.
    world.wait_check("health", "text", "/health ok", T, |v| {
        v.status == Status::Ok
    });
    let status = world.service("text");
    assert_eq!(status.ready, Some(false));

    // The thread's traceback is one record, classified by its last line, with the wait's seconds.
    let errors = world.wait_check("errors", "text", "the FloodWait record", T, |v| {
        v.status == Status::Critical && v.message.contains("FloodWait")
    });
    // The account's ban notice at start-up is a warning: listed, never a failure.
    assert_eq!(errors.message, "Banned ×1, FloodWait ×1 in the last 1h");
    let flood_until = world.service("text").flood_until_ms.expect("a flood wait");
    let left = flood_until - now_ms();
    assert!(
        (4_000_000..=5_000_000).contains(&left),
        "a flood wait of about 5000 s ends in {left} ms"
    );
    let d = world.diagnose();
    assert_eq!(d.verdict, Status::Critical);
    let text = &d.services[0];
    assert_eq!(
        text.errors_last_hour,
        vec![("Banned".to_string(), 1), ("FloodWait".to_string(), 1)]
    );
    let (seconds, _) = text.last_flood.expect("the longest flood wait");
    assert!((4000..=5000).contains(&seconds), "{seconds}");
    assert!(world
        .read_log("text")
        .contains(&format!("A wait of {seconds} seconds is required")));
    assert_eq!(text.cache.as_ref().unwrap().value, Some(0.0));
    assert!(
        d.advice
            .iter()
            .any(|a| a.text.contains("empty dialog cache")),
        "{:#?}",
        d.advice
    );
}

#[test]
fn a_flood_wait_on_the_send_path_is_seen_in_stats_once_per_entry() {
    let port = free_port();
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &[], ""))
        .check(
            Check::json("cache", "/stats", "/cache_size")
                .key("min", 1)
                .key("events", "/last_errors")
                .every("100ms", "80ms"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    world.wait_check("cache", "text", "a first result", T, |v| {
        v.status == Status::Ok
    });
    // A SendMessage flood far above the 60 s threshold: the send is answered 429 and the scripts log
    // nothing; only /stats last_errors says "FloodWait: Ns". (Model seconds: 50,000 at this scale is
    // 50 s of real time, so it is still running for the second send.)
    sim_fault(
        port,
        json!({"kind": "flood", "method": "SendMessage", "seconds": 50000}),
    );
    assert_eq!(send_text(port, json!("@somebody")), 429);
    let until = wait_for(T, "the flood wait in tend status", || {
        world.service("text").flood_until_ms
    });
    assert!(until - now_ms() > 40_000_000, "flood until {until}");
    let log = world.read_log("text");
    assert!(
        !log.contains("FloodWait") && !log.contains("A wait of"),
        "the send path logs no flood wait:\n{log}"
    );
    let count = |world: &World| -> u64 {
        world.diagnose().services[0]
            .errors_last_hour
            .iter()
            .find(|(n, _)| n == "FloodWait")
            .map_or(0, |(_, c)| *c)
    };
    assert_eq!(count(&world), 1);
    // Later polls see the same entry again; it is not counted again.
    let seen = world.check_view("cache", "text").unwrap().at_ms;
    world.wait_check("cache", "text", "three more polls", T, |v| {
        v.at_ms > seen + 250
    });
    assert_eq!(count(&world), 1);
    assert_eq!(send_text(port, json!("@somebody")), 429);
    wait_for(T, "the second entry counted", || {
        (count(&world) == 2).then_some(())
    });
}

#[test]
fn a_send_path_flood_wait_before_the_first_stats_poll_still_counts() {
    let port = free_port();
    // The service is started by hand, so the json check's first poll comes a whole interval after
    // the flood wait is already in /stats.
    let body = Cfg::new()
        .service(sim_service(
            "text",
            "send_text",
            port,
            &[],
            "autostart = false",
        ))
        .check(
            Check::json("cache", "/stats", "/cache_size")
                .key("events", "/last_errors")
                .every("4s", "1s"),
        )
        .check(Check::new("port", "tcp").every("50ms", "40ms"));
    let world = World::new(&body.build());
    let _tend = world.up();
    assert_eq!(code(&world.tend(&["start", "text"])), 0);
    world.wait_check("port", "text", "the port open", T, |v| {
        v.status == Status::Ok
    });
    sim_fault(
        port,
        json!({"kind": "flood", "method": "SendMessage", "seconds": 50000}),
    );
    assert_eq!(send_text(port, json!("@somebody")), 429);
    // The check polls at once when the service starts (probably before the flood wait), then every
    // 4 s: either way the entry must be counted exactly when it shows up in /stats.
    wait_for(T, "the flood wait in tend status", || {
        world.service("text").flood_until_ms
    });
}

#[test]
fn log_check_counts_a_traceback_once_and_joins_lines_split_across_pipe_reads() {
    let world = World::new("");
    // A logger.exception traceback written line by line with pauses, a line cut in two writes in the
    // middle of a UTF-8 character (the first byte of "ч" is \321), PTS noise (harmless), then quiet.
    let script = world.script(
        "service.sh",
        r#"
emit() { printf '%s\n' "$1" >&2; sleep 0.05; }
emit 'ERROR:send_text_bot:Periodic dialog fetch crashed'
emit 'Traceback (most recent call last):'
emit '  File "/opt/app.py", line 71, in warm'
emit '    await client.get_dialogs()'
emit 'telethon.errors.rpcerrorlist.FloodWaitError: A wait of 1800 seconds is required (caused by GetDialogsRequest)'
printf 'ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти \321' >&2
sleep 0.3
printf '\207ат -1003519196381 в диалогах\n' >&2
emit 'WARNING:telethon.client.users:Telegram is having internal issues PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)'
exec sleep 1000
"#,
    );
    let service = format!(
        "[services.text]\ncommand = [{}]\nstart_grace = \"50ms\"\n",
        toml::Value::from(script.display().to_string())
    );
    let body = Cfg::new().service(service).check(
        Check::new("errors", "log")
            .every("100ms", "80ms")
            .key("window", "1h")
            .on_fail(1, "none"),
    );
    world.write_config(&body.build());
    let _tend = world.up();
    let view = world.wait_check("errors", "text", "both records counted", T, |v| {
        v.value == Some(2.0)
    });
    assert_eq!(view.status, Status::Critical);
    assert_eq!(
        view.message,
        "Cannot find chat ×1, FloodWait ×1 in the last 1h"
    );
    let log = world.read_log("text");
    assert!(
        log.contains("Не удалось найти чат -1003519196381 в диалогах"),
        "the split line is whole in the log:\n{log}"
    );
    let d = world.diagnose();
    let text = &d.services[0];
    assert_eq!(
        text.errors_last_hour,
        vec![
            ("Cannot find chat".to_string(), 1),
            ("FloodWait".to_string(), 1)
        ],
        "one traceback = one FloodWait; PTS noise is harmless"
    );
    assert_eq!(text.last_flood.map(|(s, _)| s), Some(1800));
    let chats: Vec<(&str, u64)> = text
        .failing_chats
        .iter()
        .map(|r| (r.key.as_str(), r.count))
        .collect();
    assert_eq!(chats, vec![("-1003519196381", 1)]);
    let left = world.service("text").flood_until_ms.unwrap() - now_ms();
    assert!((1_700_000..=1_800_000).contains(&left), "{left}");
}

#[test]
fn group_by_tables_the_chats_that_keep_failing() {
    let port = free_port();
    let (a, b, c) = ("-1003519196381", "-1003772791180", "-1003701558914");
    let missing = format!("{a},{b},{c}");
    let args = ["--missing-chats", missing.as_str()];
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &args, ""))
        .check(
            Check::new("errors", "log")
                .every("100ms", "80ms")
                .key("window", "1h"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    world.wait_check("errors", "text", "a first result", T, |_| true);
    let started = now_ms();
    for (chat, times) in [(a, 3), (b, 2), (c, 1)] {
        for _ in 0..times {
            let id: i64 = chat.parse().unwrap();
            assert_eq!(send_text(port, json!(id)), 500);
        }
    }
    let view = world.wait_check("errors", "text", "six failed sends", T, |v| {
        v.value == Some(6.0)
    });
    // An error, but not one of the check's critical types.
    assert_eq!(view.status, Status::Warning);
    assert_eq!(
        view.message,
        "Banned ×1, Cannot find chat ×6 in the last 1h"
    );
    let d = world.diagnose();
    let rows = &d.services[0].failing_chats;
    let table: Vec<(&str, u64)> = rows.iter().map(|r| (r.key.as_str(), r.count)).collect();
    assert_eq!(table, vec![(a, 3), (b, 2), (c, 1)]);
    for row in rows {
        assert!(
            started - 1000 <= row.first_seen_ms && row.first_seen_ms <= row.last_seen_ms,
            "{row:?}"
        );
    }
    assert_eq!(
        d.services[0].errors_last_hour,
        vec![
            ("Cannot find chat".to_string(), 6),
            ("Banned".to_string(), 1)
        ],
        "the WARNING cache-miss lines are not counted twice"
    );
    assert!(d
        .advice
        .iter()
        .any(|x| x.text.contains("3 chat(s) the account is not in")));
}

#[test]
fn tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one() {
    let (open, closed) = (free_port(), free_port());
    let body = Cfg::new()
        .service(sim_service("text", "send_text", open, &[], ""))
        .service(sleeper("deaf", &format!("port = {closed}")))
        .check(Check::new("port", "tcp").every("100ms", "80ms"));
    let world = World::new(&body.build());
    let _tend = world.up();
    let ok = world.wait_check("port", "text", "a pass", T, |v| v.status == Status::Ok);
    assert!(
        ok.message
            .starts_with(&format!("port {open} accepts connections")),
        "{}",
        ok.message
    );
    let bad = world.wait_check("port", "deaf", "the alert", T, |v| v.alerting);
    assert_eq!(bad.status, Status::Critical);
    assert_eq!(bad.message, format!("connection refused on port {closed}"));
}

#[test]
fn process_check_measures_the_tree_rss_and_cpu() {
    let port = free_port();
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &[], ""))
        .raw("[services.busy]\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\nstart_grace = \"50ms\"")
        .check(
            Check::new("resources", "process")
                .services(&["text"])
                .key("max_rss", "1GB")
                .every("100ms", "80ms"),
        )
        .check(
            Check::new("tiny", "process")
                .services(&["text"])
                .key("max_rss", "1MiB")
                .every("100ms", "80ms")
                .on_fail(3, "none"),
        )
        .check(
            Check::new("cpu", "process")
                .services(&["busy"])
                .key("max_cpu", 20)
                .every("200ms", "100ms")
                .on_fail(3, "none"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    // The first run may measure the process a moment after its exec, before it loaded anything.
    let ok = world.wait_check(
        "resources",
        "text",
        "a pass on the loaded process",
        T,
        |v| v.status == Status::Ok && v.value.is_some_and(|rss| rss > 1_048_576.0),
    );
    let rss = ok.value.expect("the RSS is recorded");
    assert!(rss < 1e9, "RSS {rss}");
    assert!(ok.message.starts_with("RSS "), "{}", ok.message);
    let tiny = world.wait_check("tiny", "text", "a failure on the RSS", T, |v| {
        v.status == Status::Critical && v.message.starts_with("RSS")
    });
    assert!(tiny.message.contains("over the limit"), "{}", tiny.message);
    // (Under load a run may hit its timeout first; wait for the verdict on the CPU.)
    let busy = world.wait_check("cpu", "busy", "the CPU over its limit", T, |v| {
        v.status == Status::Critical && v.message.contains("CPU ")
    });
    assert!(busy.message.contains("CPU "), "{}", busy.message);
    assert!(
        busy.message.contains("over the limit 20%"),
        "{}",
        busy.message
    );
}

#[test]
fn exec_plugins_follow_the_nagios_convention_and_a_hung_one_is_killed() {
    let world = World::new("");
    let port = free_port();
    for (name, code, out) in [
        ("ok", 0, "CACHE OK - 3978 entries | cache=3978"),
        ("warn", 1, "CACHE WARNING - 3800 entries | cache=3800"),
        ("crit", 2, "CACHE CRITICAL - empty"),
        ("unknown", 3, "UNKNOWN - no answer"),
    ] {
        world.script(
            &format!("check_{name}.sh"),
            &format!("echo '{out}'\nexit {code}"),
        );
    }
    world.script(
        "check_env.sh",
        "echo \"$TEND_SERVICE port=$TEND_PORT pid=$TEND_PID check=$TEND_CHECK\"",
    );
    world.script("check_hang.sh", "echo $$ > hang.pid\nexec sleep 30");
    let mut body = Cfg::new().service(sleeper("svc", &format!("port = {port}")));
    for name in ["ok", "warn", "crit", "unknown", "env"] {
        body = body.check(
            Check::exec(name, &format!("./check_{name}.sh"))
                .every("200ms", "150ms")
                .on_fail(3, "none"),
        );
    }
    body = body.check(Check::exec("hang", "./check_hang.sh").every("300ms", "200ms"));
    world.write_config(&body.build());
    let _tend = world.up();
    let pid = world
        .wait_state("svc", ServiceState::Running, T)
        .pid
        .unwrap();
    for (name, status, message) in [
        ("ok", Status::Ok, "CACHE OK - 3978 entries"),
        ("warn", Status::Warning, "CACHE WARNING - 3800 entries"),
        ("crit", Status::Critical, "CACHE CRITICAL - empty"),
        ("unknown", Status::Unknown, "UNKNOWN - no answer"),
    ] {
        // Waits on the plugin's own text: a run killed at its timeout on a loaded machine says so.
        let view = world.wait_check(name, "svc", message, T, |v| v.message == message);
        assert_eq!(view.status, status, "{view:?}");
    }
    // UNKNOWN says nothing about the service: it never counts as a failure.
    let unknown = world.check_view("unknown", "svc").unwrap();
    assert_eq!(unknown.failures, 0);
    let env = world.wait_check("env", "svc", "a result", T, |v| {
        v.message.starts_with("svc ")
    });
    assert_eq!(env.message, format!("svc port={port} pid={pid} check=env"));
    let hang = world.wait_check("hang", "svc", "the timeout", T, |_| true);
    assert_eq!(hang.status, Status::Unknown);
    assert_eq!(hang.message, "plugin timed out after 200ms (killed)");
    let plugin: u32 = std::fs::read_to_string(world.path().join("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(T, "the hung plugin killed", || {
        (!pid_alive(plugin)).then_some(())
    });
}

// ---- scheduling: concurrency, grace, after, spacing, silence ------------------------------------

#[test]
fn a_hung_check_delays_neither_other_checks_nor_the_core() {
    let world = World::new("");
    let port = free_port();
    world.script("check_hang.sh", "exec sleep 30");
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &[], ""))
        .check(Check::exec("hang", "./check_hang.sh").every("2500ms", "2s"))
        .check(Check::new("port", "tcp").every("50ms", "40ms"));
    world.write_config(&body.build());
    let mut tend = world.up();
    world.wait_check("port", "text", "a first result", T, |_| true);
    // While the plugin hangs, the core answers at once.
    let asked = Instant::now();
    world.status();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "tend status took {:?}",
        asked.elapsed()
    );
    world.wait_check("hang", "text", "the plugin's timeout", T, |v| {
        v.message.contains("timed out")
    });
    // The history (saved at shutdown) has every result: the tcp check kept its pace throughout.
    tend.signal(libc::SIGTERM);
    tend.wait_exit(T);
    let history = world.check_history();
    let points = |check: &str| {
        history
            .iter()
            .find(|s| s.check == check && s.service == "text")
            .unwrap_or_else(|| panic!("no {check} series"))
            .points
            .clone()
    };
    let hang = points("hang");
    let first_hang = hang[0].at_ms - hang[0].duration_ms as i64;
    let last_hang = hang[0].at_ms;
    assert!(hang[0].duration_ms >= 2000, "{:?}", hang[0]);
    let tcp: Vec<i64> = points("port")
        .iter()
        .map(|p| p.at_ms)
        .filter(|t| (first_hang..=last_hang).contains(t))
        .collect();
    assert!(
        tcp.len() >= 10,
        "only {} tcp results while the plugin hung for 2 s",
        tcp.len()
    );
    let gap = tcp.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gap < 1000, "a {gap} ms gap between tcp results");
}

#[test]
fn grace_after_a_start_and_counters_reset_on_restart() {
    let closed = free_port();
    let body = Cfg::new()
        .service(sleeper("deaf", &format!("port = {closed}")))
        .check(
            Check::new("port", "tcp")
                .every("100ms", "80ms")
                .grace("1500ms"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    let check_grace = |world: &World| {
        let since = world.service("deaf").since_ms.unwrap();
        let early = world.wait_check("port", "deaf", "a result of this run", T, |v| {
            v.at_ms > since
        });
        assert_eq!(early.status, Status::Critical);
        if early.at_ms - since < 1400 {
            assert_eq!(early.failures, 0, "counted inside the grace: {early:?}");
        }
        let counted = world.wait_check("port", "deaf", "failures counted", T, |v| v.failures >= 3);
        assert!(counted.at_ms - since >= 1500, "{counted:?}");
        assert!(counted.alerting);
    };
    check_grace(&world);
    let out = world.tend(&["restart", "deaf"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    // The new run starts from zero (and its own grace); the alert stays up until a pass.
    check_grace(&world);
}

#[test]
fn after_3_is_honoured_and_the_restart_starts_the_count_again() {
    let world = World::new("");
    // Runs 1-2 fail, 3 passes, 4-6 fail: only the third failure in a row (run 6) asks for the restart.
    // Every run logs its number and the service's pid; from run 7 on it passes. (The timeout is roomy:
    // a run killed at its timeout is UNKNOWN, which counts neither way and would shift the sequence.)
    world.script(
        "check_flaky.sh",
        r#"n=$(( $(cat runs 2>/dev/null || echo 0) + 1 ))
echo $n > runs
echo "$n $TEND_PID" >> runs.log
case $n in 1|2|4|5|6) echo "run $n fails"; exit 2 ;; esac
echo "run $n passes"
exit 0"#,
    );
    let body = Cfg::new().service(sleeper("svc", "")).check(
        Check::exec("flaky", "./check_flaky.sh")
            .every("600ms", "550ms")
            .grace("0s")
            .on_fail(3, "restart"),
    );
    world.write_config(&body.build());
    let _tend = world.up();
    let s = wait_for(T, "the check's restart", || {
        let s = world.service("svc");
        (s.restarts == 1 && s.state == ServiceState::Running).then_some(s)
    });
    assert_eq!(
        s.last_start.unwrap().reason,
        StartReason::Check {
            check: "flaky".into()
        }
    );
    let new_pid = s.pid.unwrap().to_string();
    wait_for(T, "a run on the new process", || {
        let log = std::fs::read_to_string(world.path().join("runs.log")).ok()?;
        log.lines()
            .any(|l| l.ends_with(&format!(" {new_pid}")))
            .then_some(())
    });
    let log = std::fs::read_to_string(world.path().join("runs.log")).unwrap();
    let runs: Vec<(u32, String)> = log
        .lines()
        .map(|l| {
            let (n, pid) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), pid.to_string())
        })
        .collect();
    let first_pid = &runs[0].1;
    for (n, pid) in &runs {
        if *n <= 6 {
            assert_eq!(
                pid, first_pid,
                "run {n} saw a restart before 3 failures in a row: {runs:?}"
            );
        }
    }
    let after = world.check_view("flaky", "svc").unwrap();
    assert_eq!(after.failures, 0);
    assert_eq!(world.service("svc").restarts, 1, "exactly one restart");
}

#[test]
fn the_restart_action_obeys_the_restart_spacing() {
    let world = World::new("");
    world.script("check_fail.sh", "echo 'always down'\nexit 2");
    let body = Cfg::new()
        .service(sleeper("svc", "min_restart_interval = \"1s\""))
        .check(
            Check::exec("down", "./check_fail.sh")
                .every("100ms", "80ms")
                .grace("0s")
                .on_fail(1, "restart"),
        );
    world.write_config(&body.build());
    let _tend = world.up();
    let starts = wait_for(T, "three starts", || {
        let starts = world.starts("svc");
        (starts.len() >= 3).then_some(starts)
    });
    for pair in starts.windows(2) {
        let gap = pair[1].at_ms - pair[0].at_ms;
        assert!(gap >= 1000, "starts {gap} ms apart: {starts:?}");
        assert_eq!(
            pair[1].reason,
            StartReason::Check {
                check: "down".into()
            }
        );
        assert!(!pair[1].forced);
    }
    let log = world.read_log("svc");
    assert!(
        log.contains("check down asks for a restart (always down); held by min_restart_interval"),
        "{log}"
    );
}

#[test]
fn the_reload_cache_action_posts_once_per_episode_and_obeys_the_spacing() {
    let (free, held) = (free_port(), free_port());
    // A minimum the 3978 dialogs never reach: the check fails on both services all along.
    let held_table = sim_service(
        "held",
        "send_media",
        held,
        &[],
        "min_restart_interval = \"1h\"",
    );
    let body = Cfg::new()
        .service(sim_service("free", "send_text", free, &[], ""))
        .service(held_table)
        .check(
            Check::json("cache", "/stats", "/cache_size")
                .key("min", 4000)
                .every("100ms", "80ms")
                .grace("0s")
                .on_fail(2, "reload_cache"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    wait_for(T, "the reload's answer", || {
        world
            .read_log("free")
            .contains("reload_cache answered HTTP 200")
            .then_some(())
    });
    // Well into the episode on both: still one reload on `free`, none on `held`.
    world.wait_check("cache", "free", "ten failures", T, |v| v.failures >= 10);
    world.wait_check("cache", "held", "ten failures", T, |v| v.failures >= 10);
    let reloads = |name: &str| {
        world
            .starts(name)
            .into_iter()
            .filter(|s| matches!(s.reason, StartReason::ReloadCache { .. }))
            .collect::<Vec<_>>()
    };
    let done = reloads("free");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        done[0].reason,
        StartReason::ReloadCache {
            by: "check cache".into()
        }
    );
    assert!(world
        .read_log("free")
        .contains("reloading the dialog cache (POST /reload_cache), asked by check cache"));
    let sweeps = tend_sim::read_events(&world.path().join("sim"), "free")
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == tend_sim::EventKind::ReloadCache)
        .count();
    assert_eq!(sweeps, 1, "the service saw one reload");
    assert!(reloads("held").is_empty(), "{:?}", world.starts("held"));
    assert_eq!(world.starts("held").len(), 1);
}

#[test]
fn a_sticky_stop_silences_the_check_actions() {
    let world = World::new("");
    world.script(
        "check_act.sh",
        "if [ -e fail ]; then echo 'down'; exit 2; fi\necho up",
    );
    world.script("check_tick.sh", "echo tick");
    let body = Cfg::new()
        .service(stubborn("svc"))
        .service(sleeper("witness", ""))
        .check(
            Check::exec("act", "./check_act.sh")
                .services(&["svc"])
                .every("100ms", "80ms")
                .grace("0s")
                .on_fail(3, "restart"),
        )
        .check(
            Check::exec("tick", "./check_tick.sh")
                .services(&["witness"])
                .every("50ms", "40ms"),
        );
    world.write_config(&body.build());
    let _tend = world.up();
    world.wait_state("svc", ServiceState::Running, T);
    // The stop takes 2 s (SIGTERM is ignored); the check fails all along, and its action is silenced.
    let mut stop = std::process::Command::new(TEND)
        .arg("-c")
        .arg(world.config_path())
        .args(["stop", "svc"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    world.wait_state("svc", ServiceState::Stopping, T);
    std::fs::write(world.path().join("fail"), "").unwrap();
    let failing = world.wait_check("act", "svc", "3 failures while stopping", T, |v| {
        v.failures >= 3
    });
    assert_eq!(failing.status, Status::Critical);
    assert!(stop.wait().unwrap().success());
    assert!(world.read_log("svc").contains("sending SIGKILL"));
    // Let more check time pass, measured on the witness: nothing starts it again.
    let from = now_ms();
    world.wait_check("tick", "witness", "a second of checks", T, |v| {
        v.at_ms > from + 1000
    });
    let s = world.service("svc");
    assert_eq!(s.state, ServiceState::Stopped);
    assert!(s.sticky_stop);
    assert_eq!(world.starts("svc").len(), 1, "{:?}", world.starts("svc"));
    // The diagnosis says so, and how to undo it.
    let d = world.diagnose();
    let svc = d.services.iter().find(|s| s.name == "svc").unwrap();
    assert_eq!((svc.state, svc.pid), (ServiceState::Stopped, None));
    assert!(svc.health.is_none());
    assert_eq!(d.verdict, Status::Warning);
    assert_eq!(
        d.advice[0].text,
        "svc was stopped by hand; `tend start svc` brings it back"
    );
}

#[test]
fn a_running_recovery_silences_the_check_actions() {
    let world = World::new("");
    // `act` fails once the file `fail` exists; `ready` never passes, so the recovery waits for it.
    world.script(
        "check_act.sh",
        "if [ -e fail ]; then echo 'down'; exit 2; fi\necho up",
    );
    world.script("check_never.sh", "echo 'not ready'\nexit 2");
    let body = Cfg::new()
        .raw(
            "[groups.acct]\n\
             # The account's window, as far as this test is concerned: starts this far apart never flood.\n\
             min_start_spacing = \"1ms\"\n[groups.acct.recovery]\ncooldown = \"100ms\"\nmargin = \"0s\"\n\
             pause = \"100ms\"\nready_timeout = \"20s\"\n\n",
        )
        .service(sleeper("svc", "group = \"acct\""))
        .check(
            Check::exec("act", "./check_act.sh")
                .every("100ms", "80ms")
                .grace("0s")
                .on_fail(1, "restart"),
        )
        .check(
            Check::exec("ready", "./check_never.sh")
                .every("100ms", "80ms")
                .key("readiness", true)
                .on_fail(1, "none"),
        );
    world.write_config(&body.build());
    let _tend = world.up();
    world.wait_state("svc", ServiceState::Running, T);
    let out = world.tend(&["recover", "acct"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let s = wait_for(T, "the recovery's start of svc", || {
        let s = world.service("svc");
        (s.last_start.as_ref()?.reason == StartReason::Recovery && s.state == ServiceState::Running)
            .then_some(s)
    });
    std::fs::write(world.path().join("fail"), "").unwrap();
    let failing = world.wait_check("act", "svc", "failures", T, |v| v.failures >= 5);
    assert!(failing.at_ms > s.since_ms.unwrap());
    assert_eq!(
        world.service("svc").pid,
        s.pid,
        "restarted during the recovery"
    );
    assert_eq!(world.starts("svc").len(), 2, "{:?}", world.starts("svc"));

    // Without the recovery the same failures restart it: the silence was the recovery's doing.
    let out = world.tend(&["recover", "acct", "--cancel"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let restarted = wait_for(T, "the check's restart", || {
        let s = world.service("svc");
        (s.last_start.as_ref()?.reason
            == StartReason::Check {
                check: "act".into(),
            })
        .then_some(s)
    });
    assert_ne!(restarted.pid, s.pid);
}

// ---- history, alerts, diagnose ------------------------------------------------------------------

#[test]
fn check_history_survives_a_restart_of_tend() {
    let port = free_port();
    let body = Cfg::new()
        .service(sim_service("text", "send_text", port, &[], ""))
        .check(Check::new("port", "tcp").every("50ms", "40ms"));
    let world = World::new(&body.build());
    let first_run = {
        let mut tend = world.up();
        world.wait_check("port", "text", "some results", T, |_| true);
        let from = now_ms();
        world.wait_check("port", "text", "more results", T, |v| v.at_ms > from + 200);
        tend.signal(libc::SIGTERM);
        tend.wait_exit(T);
        let history = world.check_history();
        assert_eq!(history.len(), 1, "{history:?}");
        assert!(history[0].points.len() >= 4, "{history:?}");
        history[0].points.clone()
    };
    let mut tend = world.up();
    let from = now_ms();
    world.wait_check("port", "text", "results of the new run", T, |v| {
        v.at_ms > from + 200
    });
    tend.signal(libc::SIGTERM);
    tend.wait_exit(T);
    let history = world.check_history();
    let points = &history[0].points;
    assert_eq!(
        &points[..first_run.len()],
        &first_run[..],
        "the first run's points are kept"
    );
    let last_of_first = first_run.last().unwrap().at_ms;
    assert!(
        points[first_run.len()..]
            .iter()
            .all(|p| p.at_ms > last_of_first),
        "the second run appends"
    );
    assert!(points.len() > first_run.len());
}

/// The check alerts among everything delivered (tend's start is announced too).
fn check_alerts(all: &[serde_json::Value]) -> Vec<serde_json::Value> {
    all.iter()
        .filter(|a| a["kind"] == "check")
        .cloned()
        .collect()
}

#[test]
fn the_alert_webhook_gets_exactly_one_alert_per_episode() {
    let port = free_port();
    // The receiver refuses the first POST: tend retries, and the alert still arrives once.
    let receiver = Receiver::start(1);
    let alerts = format!(
        "[alerts]\nwebhook = {}\nretries = 3\nretry_delay = \"50ms\"\n\n",
        toml::Value::from(receiver.url.as_str())
    );
    let body = Cfg::new()
        .raw(&alerts)
        .service(sim_service("text", "send_text", port, &[], ""))
        .check(Check::http("health", "/health").every("200ms", "150ms"));
    let world = World::new(&body.build());
    let _tend = world.up();
    world.wait_check("health", "text", "a pass", T, |v| v.status == Status::Ok);
    for episode in 1..=2 {
        sim_fault(port, json!({"kind": "hang"}));
        // Well into the episode: three failures raise it, three more change nothing.
        world.wait_check("health", "text", "six failures", T, |v| v.failures >= 6);
        sim_fault(port, json!({"kind": "clear"}));
        world.wait_check("health", "text", "a pass", T, |v| v.status == Status::Ok);
        let accepted = wait_for(T, "the resolved notice", || {
            let accepted = check_alerts(&receiver.accepted());
            (accepted.len() == 2 * episode).then_some(accepted)
        });
        let states: Vec<&str> = accepted
            .iter()
            .map(|a| a["status"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["firing", "resolved"].repeat(episode));
    }
    let accepted = check_alerts(&receiver.accepted());
    let alert = &accepted[0];
    assert_eq!(alert["schema"], "tend.alert/v1");
    assert_eq!(alert["service"], "text");
    assert_eq!(alert["details"]["check"], "health");
    assert_eq!(alert["details"]["message"], "no answer within 150ms");
    assert_eq!(
        alert["id"], accepted[1]["id"],
        "firing and resolved share the id"
    );
    assert_eq!(
        receiver.attempts().len(),
        receiver.accepted().len() + 1,
        "one retry"
    );
}

#[test]
fn diagnose_and_checks_report_every_service() {
    let (text_port, media_port) = (free_port(), free_port());
    let missing = ["--missing-chats", "-1003850591916"];
    let body = Cfg::new()
        .service(sim_service("text", "send_text", text_port, &missing, ""))
        .service(sim_service(
            "media",
            "send_media",
            media_port,
            &["--force-flood", "5000"],
            "",
        ))
        .check(
            Check::http("health", "/health")
                .key("body_contains", "ok")
                .every("100ms", "80ms"),
        )
        .check(cache_check().grace("200ms"))
        .check(
            Check::new("errors", "log")
                .every("100ms", "80ms")
                .key("window", "1h"),
        );
    let world = World::new(&body.build());
    let _tend = world.up();
    world.wait_check("cache", "text", "warm", T, |v| v.status == Status::Ok);
    world.wait_check("cache", "media", "the zombie", T, |v| v.failures >= 1);
    for _ in 0..2 {
        assert_eq!(send_text(text_port, json!(-1003850591916i64)), 500);
    }
    world.wait_check("errors", "text", "the misses", T, |v| v.value == Some(2.0));
    world.wait_check("errors", "media", "the flood", T, |v| {
        v.status == Status::Critical && v.message.contains("FloodWait")
    });

    let out = world.tend(&["diagnose"]);
    assert_eq!(code(&out), 1, "verdict critical = exit 1");
    let text = stdout(&out);
    assert!(text.starts_with("verdict: CRITICAL"), "{text}");
    assert!(text.contains("failing chat -1003850591916: ×2"), "{text}");
    assert!(text.contains("longest flood wait in 24 h: "), "{text}");

    let d = world.diagnose();
    let status = world.status();
    assert_eq!(d.verdict, Status::Critical);
    let names: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["media", "text"]);
    for s in &d.services {
        let live = status.services.iter().find(|x| x.name == s.name).unwrap();
        assert_eq!(s.state, ServiceState::Running);
        assert_eq!(s.pid, live.pid);
        assert_eq!(s.listening, Some(true));
        let health = s.health.as_ref().expect("a fresh /health probe");
        assert_eq!(health.status, Status::Ok, "{health:?}");
        assert!(health.message.starts_with("HTTP 200"));
        assert_eq!(s.starts_24h, 1);
        assert!(s.next_start_ms <= d.at_ms);
    }
    let media = &d.services[0];
    assert_eq!(media.cache.as_ref().unwrap().value, Some(0.0));
    assert_eq!(
        media.errors_last_hour,
        vec![("Banned".to_string(), 1), ("FloodWait".to_string(), 1)]
    );
    assert!(media
        .last_flood
        .is_some_and(|(s, _)| (4000..=5000).contains(&s)));
    assert!(media.flood_until_ms.unwrap() > d.at_ms);
    let text_d = &d.services[1];
    assert_eq!(text_d.cache.as_ref().unwrap().value, Some(3978.0));
    assert_eq!(
        text_d.errors_last_hour,
        vec![
            ("Cannot find chat".to_string(), 2),
            ("Banned".to_string(), 1)
        ]
    );
    assert_eq!(text_d.failing_chats[0].key, "-1003850591916");
    let advice: Vec<(Option<&str>, Status)> = d
        .advice
        .iter()
        .map(|a| (a.service.as_deref(), a.severity))
        .collect();
    assert_eq!(
        advice[0],
        (Some("media"), Status::Critical),
        "{:#?}",
        d.advice
    );
    assert!(d
        .advice
        .iter()
        .any(|a| a.service.as_deref() == Some("media") && a.text.contains("flood wait")));
    assert!(d
        .advice
        .iter()
        .any(|a| a.service.as_deref() == Some("text") && a.text.contains("not in")));

    // `tend checks` lists every check on every service with its last result.
    let rows = world.checks();
    let listed: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.check.as_str(), r.service.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("cache", "media", "json"),
            ("cache", "text", "json"),
            ("errors", "media", "log"),
            ("errors", "text", "log"),
            ("health", "media", "http"),
            ("health", "text", "http"),
        ]
    );
    assert!(rows.iter().all(|r| r.last.is_some()), "{rows:#?}");
    let table = stdout(&world.tend(&["checks"]));
    assert!(table.starts_with("CHECK"), "{table}");
    assert!(table.contains("cache_size 3978"), "{table}");
    assert!(
        table.contains("cache_size 0 below the minimum 1"),
        "{table}"
    );
}
