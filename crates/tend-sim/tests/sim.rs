//! Integration tests of `tend-sim`: real processes on real ports writing real files. Each test owns a
//! temp dir (so its own account files), asks for port 0, and waits on conditions with deadlines.

#[path = "sim/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use nix::sys::signal::Signal;
use regex::Regex;
use serde_json::{json, Value};
use tend_sim::{read_account_state, Cause, Event, EventKind};

const VALID_CHAT: i64 = -1001234567890;
const MISSING: &str = "-1003519196381";
const BANNED: &str = "-1001111111111";
const READONLY: &str = "-1002222222222";

/// Seconds of the GetDialogs floods that started a flood (the strikes), in order.
fn strikes(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::FloodWait
                && e.method.as_deref() == Some("GetDialogs")
                && e.fresh == Some(true)
                && e.cause != Some(Cause::Forced)
        })
        .filter_map(|e| e.seconds)
        .collect()
}

fn count(events: &[Event], kind: EventKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

// ---------------------------------------------------------------------------------------------------
// Endpoints, shapes and status codes (TELETHON.md §3)

#[tokio::test]
async fn health_says_ok_before_the_dialog_cache_is_loaded() {
    let fx = Fixture::new();
    // A 55 s GetDialogs flood at start-up: the first sweep sleeps 550 ms (real) before it can finish.
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--force-flood", "55")
        .start()
        .await;
    sim.wait_stderr("INFO:telethon.client.users:Sleeping for ")
        .await;
    assert_eq!(sim.get("/health").await, (200, json!({"status": "ok"})));
    let stats = sim.stats().await;
    assert_eq!(stats["cache_size"], 0, "{stats}");
    assert_eq!(sim.state().await["warm"], false);

    sim.wait_line("INFO:send_text_bot:Telethon client started, dialog cache warmed up")
        .await;
    let stats = sim.stats().await;
    assert_eq!(
        keys(&stats),
        ["cache_size", "error_count", "last_errors", "uptime_seconds"]
    );
    assert_eq!(stats["cache_size"], 3978);
    assert_eq!(stats["error_count"], 0);
    assert!(stats["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(sim.state().await["warm"], true);
}

#[tokio::test]
async fn before_the_client_exists_every_endpoint_is_not_ready() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--client-delay", "100")
        .start()
        .await;
    assert_eq!(
        sim.get("/health").await,
        (503, json!({"status": "not_ready"}))
    );
    assert_eq!(
        sim.post("/send_text", &json!({"chat": VALID_CHAT, "text": "x"}))
            .await,
        (503, json!({"error": "telethon client not ready"}))
    );
    assert_eq!(
        sim.post("/send_text", &json!({"text": "x"})).await,
        (400, json!({"error": "chat is required"}))
    );
    assert_eq!(
        sim.post("/reload_cache", &json!({})).await,
        (503, json!({"status": "error", "error": "client not ready"}))
    );
    wait_for("the client to appear", || async {
        (sim.get("/health").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn send_text_answers_with_the_real_shapes_and_status_codes() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--missing-chats", &format!("{MISSING},@gone"))
        .opt("--banned-chats", BANNED)
        .opt("--readonly-chats", READONLY)
        .start()
        .await;
    sim.wait_warm().await;

    let (status, ok) = sim
        .post("/send_text", &json!({"chat": VALID_CHAT, "text": "hi"}))
        .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(
        keys(&ok),
        [
            "chat_id",
            "chat_type",
            "client_tagged_id",
            "client_tagged_name",
            "message_id",
            "status"
        ]
    );
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["chat_id"], VALID_CHAT);
    assert_eq!(ok["chat_type"], "group");
    assert_eq!(ok["client_tagged_id"], Value::Null);
    let first_id = ok["message_id"].as_i64().unwrap();

    let (status, tagged) = sim
        .post(
            "/send_text",
            &json!({"chat": VALID_CHAT.to_string(), "text": "hi", "tag_client": true,
                    "client_id": 7, "client_username": "bob"}),
        )
        .await;
    assert_eq!(status, 200, "{tagged}");
    assert_eq!(tagged["chat_id"], VALID_CHAT, "numeric strings become ints");
    assert_eq!(tagged["client_tagged_id"], 7);
    assert_eq!(tagged["client_tagged_name"], "bob");
    assert_eq!(tagged["message_id"].as_i64().unwrap(), first_id + 1);

    let (status, text) = sim
        .post_raw("/send_text", "application/json", "not json")
        .await;
    assert_eq!(
        (status, text.trim()),
        (400, r#"{"error":"chat is required"}"#)
    );

    // (chat, error text, class at the end of the traceback)
    let failures = [
        (
            json!(MISSING),
            "Не удалось найти чат -1003519196381 в диалогах".to_string(),
            "ValueError",
        ),
        (
            json!(BANNED),
            "You're banned from sending messages in supergroups/channels (caused by SendMessageRequest)".into(),
            "telethon.errors.rpcerrorlist.UserBannedInChannelError",
        ),
        (
            json!(READONLY),
            "You can't write in this chat (caused by SendMessageRequest)".into(),
            "telethon.errors.rpcerrorlist.ChatWriteForbiddenError",
        ),
        (
            json!("@gone"),
            r#"Cannot find any entity corresponding to "@gone""#.into(),
            "ValueError",
        ),
    ];
    for (chat, error, class) in &failures {
        let (status, body) = sim
            .post("/send_text", &json!({"chat": chat, "text": "hi"}))
            .await;
        assert_eq!(status, 500, "{chat}: {body}");
        assert_eq!(keys(&body), ["error", "status", "traceback"]);
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"], error.as_str());
        let tb = body["traceback"].as_str().unwrap();
        assert!(
            tb.starts_with("Traceback (most recent call last):\n"),
            "{tb}"
        );
        assert!(tb.ends_with(&format!("\n{class}: {error}")), "{tb}");
    }
    let (status, empty) = sim
        .post("/send_text", &json!({"chat": 5, "text": ""}))
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        empty["error"],
        "The provided message is empty (caused by SendMessageRequest)"
    );

    let stats = sim.stats().await;
    assert_eq!(stats["error_count"], 5);
    let errors: Vec<&str> = stats["last_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors[0],
        "ValueError: Не удалось найти чат -1003519196381 в диалогах"
    );
    assert_eq!(
        errors[1],
        "UserBannedInChannelError: You're banned from sending messages in supergroups/channels (caused by SendMessageRequest)"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ts = stats["last_errors"][0]["ts"].as_f64().unwrap();
    assert!((now - ts).abs() < 60.0, "ts is epoch seconds: {ts}");

    let (status, page) = sim.get_text("/send_media").await;
    assert_eq!(status, 404);
    assert!(page.contains("<title>404 Not Found</title>"), "{page}");
    assert_eq!(sim.get_text("/send_text").await.0, 405);
}

#[tokio::test]
async fn send_media_answers_with_the_real_shapes_and_status_codes() {
    let fx = Fixture::new();
    let sim = fx
        .sim("media")
        .opt("--service", "send_media")
        .opt("--time-scale", "0.01")
        .opt("--missing-chats", &format!("{MISSING},@gone"))
        .start()
        .await;
    sim.wait_warm().await;

    let (status, ok) = sim
        .post(
            "/send_media",
            &json!({"user_id": VALID_CHAT, "files": ["https://example.invalid/a.jpg"], "caption": "c"}),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(keys(&ok), ["count", "message_ids", "recipient", "status"]);
    assert_eq!(ok["recipient"], VALID_CHAT);
    assert_eq!(ok["count"], 1);

    let (status, album) = sim
        .post(
            "/send_media",
            &json!({"username": "@someone", "files": ["t.me/chan/5", {"url": "https://x.invalid/b.mp4", "supports_streaming": true}]}),
        )
        .await;
    assert_eq!(status, 200, "{album}");
    assert_eq!(album["recipient"], "@someone");
    assert_eq!(album["count"], 2);
    let ids: Vec<i64> = album["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids[1], ids[0] + 1);

    // (body, status)
    let table = [
        (json!({}), 400),
        (json!({"user_id": 1}), 400),
        (json!({"user_id": 1, "files": []}), 400),
        (json!({"user_id": 1, "files": [{"nope": 1}]}), 400),
        (json!({"user_id": 0, "files": ["a"]}), 400),
        (json!({"username": "@gone", "files": ["a"]}), 404),
        (
            json!({"user_id": 1, "files": ["https://t.me/c/1/expired"]}),
            410,
        ),
    ];
    for (body, want) in &table {
        let (status, v) = sim.post("/send_media", body).await;
        assert_eq!(status, *want, "{body}: {v}");
        assert_eq!(v["status"], "error", "{body}: {v}");
        assert!(v.get("trace").is_none(), "only 500s carry a trace: {v}");
    }

    let (status, miss) = sim
        .post("/send_media", &json!({"user_id": MISSING, "files": ["a"]}))
        .await;
    assert_eq!(status, 500, "{miss}");
    assert_eq!(keys(&miss), ["error", "status", "trace"]);
    assert_eq!(
        miss["error"],
        "Cannot resolve entity from user_id=-1003519196381. Make sure this session has an existing dialog with the user/channel, or use 'username'."
    );
    assert_eq!(sim.get_text("/send_text").await.0, 404);
}

#[tokio::test]
async fn reload_cache_returns_the_cache_size_and_is_itself_a_sweep() {
    let fx = Fixture::new();
    let sim = fx.sim("text").opt("--dialogs", "250").start().await;
    sim.wait_warm().await;
    assert_eq!(sim.stats().await["cache_size"], 250);
    let (status, body) = sim.post("/reload_cache", &json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "ok", "cache_size": 250}))
    );
    let events = sim.events();
    assert_eq!(count(&events, EventKind::ReloadCache), 1);
    let reload_sweep = events
        .iter()
        .find(|e| e.kind == EventKind::SweepStart && e.cause == Some(Cause::Reload))
        .expect("the reload swept");
    assert_eq!(reload_sweep.pages, Some(3), "ceil(250/100) pages");
    assert_eq!(
        reload_sweep.page,
        Some(3),
        "a small account floods at its last page"
    );
    assert_eq!(
        strikes(&events),
        vec![27],
        "the reload came within the window"
    );
}

// ---------------------------------------------------------------------------------------------------
// The account-wide flood model (TELETHON.md §6)

#[tokio::test]
async fn two_processes_on_one_account_flood_each_other_and_two_accounts_do_not() {
    let fx = Fixture::new();
    let text = fx.sim("text").spawn();
    let media = fx.sim("media").opt("--service", "send_media").spawn();
    let other = fx.sim("other").opt("--account", "other").spawn();
    let (text, media, other) = (
        text.listening().await,
        media.listening().await,
        other.listening().await,
    );
    for s in [&text, &media, &other] {
        s.wait_warm().await;
    }

    let main = fx.events("main");
    let starts: Vec<&Event> = main
        .iter()
        .filter(|e| e.kind == EventKind::SweepStart)
        .collect();
    assert_eq!(starts.len(), 2, "{main:?}");
    assert_eq!(
        starts[0].page, None,
        "the first sweep has nothing to collide with"
    );
    assert_eq!(starts[1].page, Some(20), "the second floods at page 20");
    assert_eq!(strikes(&main), vec![27]);
    let flood = main
        .iter()
        .find(|e| e.kind == EventKind::FloodWait && e.fresh == Some(true))
        .unwrap();
    assert_eq!(flood.pid, starts[1].pid, "the later sweeper got the flood");
    let second = if flood.pid == text.pid { &text } else { &media };
    assert!(
        second.stderr_lines().iter().any(|l| l
            == "INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait"),
        "{}",
        second.stderr()
    );
    assert_eq!(text.state().await["strikes"], 1);

    let others = fx.events("other");
    assert_eq!(count(&others, EventKind::SweepStart), 1);
    assert_eq!(count(&others, EventKind::FloodWait), 0, "{others:?}");
    assert_eq!(other.state().await["strikes"], 0);
    assert!(!other.stderr().contains("Sleeping"), "{}", other.stderr());
}

/// Model time now at `--time-scale 0.001` (see `clock.rs`: model ms = wall ms / scale).
fn model_now_ms() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (wall.as_secs_f64() * 1e6) as i64
}

/// Waits until no sweep started on `account` within the default 600 s window.
async fn wait_window_clear(fx: &Fixture, account: &str) {
    wait_for("the flood window to pass", || async {
        let st = read_account_state(&fx.state_dir(), account).unwrap();
        let last = st.last_sweep_ms.unwrap_or(0);
        (model_now_ms() - last >= 600_000).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_staged_restart_that_keeps_sweeps_a_window_apart_sees_no_flood() {
    let fx = Fixture::new();
    // Scenario (a): both at once; one of them floods.
    let text = fx.sim("text").start().await;
    let media = fx.sim("media").opt("--service", "send_media").start().await;
    text.wait_warm().await;
    media.wait_warm().await;
    assert_eq!(strikes(&fx.events("main")), vec![27]);
    drop((text, media));

    // Scenario (c): stop both; start one, then the other, each a window after the previous sweep.
    wait_window_clear(&fx, "main").await;
    let text = fx.sim("text2").start().await;
    text.wait_warm().await;
    wait_window_clear(&fx, "main").await;
    let media = fx
        .sim("media2")
        .opt("--service", "send_media")
        .start()
        .await;
    media.wait_warm().await;
    for sim in [&text, &media] {
        assert_eq!(
            count(&sim.events(), EventKind::FloodWait),
            0,
            "{}",
            sim.name
        );
        assert!(!sim.stderr().contains("Sleeping"), "{}", sim.stderr());
    }
    assert_eq!(strikes(&fx.events("main")), vec![27]);
}

#[tokio::test]
async fn waits_double_with_strikes_and_reset_after_a_quiet_double_window() {
    let fx = Fixture::new();
    let sim = fx.sim("text").start().await;
    sim.wait_warm().await;
    for want in [27, 54] {
        let (status, body) = sim.post("/reload_cache", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            sim.stderr_lines().iter().any(|l| l
                == &format!("INFO:telethon.client.users:Sleeping for {want}s (0:00:{want:02}) on GetDialogsRequest flood wait")),
            "{}",
            sim.stderr()
        );
    }
    let (status, body) = sim.post("/reload_cache", &json!({})).await;
    assert_eq!(
        (status, body),
        (
            500,
            json!({"status": "error", "error": "A wait of 108 seconds is required (caused by GetDialogsRequest)"})
        )
    );
    assert_eq!(strikes(&sim.events()), vec![27, 54, 108]);
    assert_eq!(sim.state().await["strikes"], 3);

    // 2 × FLOOD_WINDOW_S (1.2 s real at this scale) without a sweep: the streak is forgiven.
    wait_for("the strikes to reset", || async {
        (sim.state().await["strikes"] == 0).then_some(())
    })
    .await;
    assert_eq!(sim.post("/reload_cache", &json!({})).await.0, 200);
    assert_eq!(
        strikes(&sim.events()),
        vec![27, 54, 108],
        "outside the window"
    );
    assert_eq!(sim.post("/reload_cache", &json!({})).await.0, 200);
    assert_eq!(
        strikes(&sim.events()),
        vec![27, 54, 108, 27],
        "back to the base wait"
    );
}

#[tokio::test]
async fn a_flood_above_the_threshold_at_startup_leaves_a_zombie() {
    let fx = Fixture::new();
    let sim = fx.sim("text").opt("--force-flood", "3000").start().await;
    sim.wait_line("Exception in thread telethon-loop:").await;
    sim.wait_stderr("telethon.errors.rpcerrorlist.FloodWaitError: A wait of ")
        .await;
    let lines = sim.stderr_lines();
    let head = lines
        .iter()
        .position(|l| l == "Exception in thread telethon-loop:")
        .unwrap();
    assert_eq!(lines[head + 1], "Traceback (most recent call last):");
    let re = Regex::new(
        r"^telethon\.errors\.rpcerrorlist\.FloodWaitError: A wait of (\d+) seconds is required \(caused by GetDialogsRequest\)$",
    )
    .unwrap();
    let last = lines.iter().find_map(|l| re.captures(l)).unwrap();
    let seconds: u64 = last[1].parse().unwrap();
    assert!(
        (61..=3000).contains(&seconds),
        "above the 60 s threshold: {seconds}"
    );

    assert_eq!(sim.get("/health").await, (200, json!({"status": "ok"})));
    assert_eq!(sim.stats().await["cache_size"], 0);
    let state = sim.state().await;
    assert_eq!(state["zombie"], true, "{state}");
    assert_eq!(state["warm"], false);

    let started = Instant::now();
    let (status, body) = sim
        .post("/send_text", &json!({"chat": VALID_CHAT, "text": "x"}))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(55),
        "the send waited out run_coro's 60 s (60 ms here): {:?}",
        started.elapsed()
    );
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "");
    assert!(body["traceback"]
        .as_str()
        .unwrap()
        .ends_with("\nTimeoutError"));
    sim.wait_line("ERROR:send_text_bot:send_text failed: TimeoutError: ")
        .await;
    assert_eq!(
        sim.post("/reload_cache", &json!({})).await,
        (500, json!({"status": "error", "error": ""}))
    );
    let stats = sim.stats().await;
    assert_eq!(stats["last_errors"][0]["error"], "TimeoutError: ");
    let events = sim.events();
    assert_eq!(count(&events, EventKind::ThreadDied), 1);
    assert_eq!(count(&events, EventKind::SweepFailed), 1);
}

#[tokio::test]
async fn legacy_refetch_loops_into_ever_longer_floods() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--missing-chats", MISSING)
        .flag("--legacy-refetch")
        .start()
        .await;
    sim.wait_warm().await;
    let mut last = Value::Null;
    for _ in 0..3 {
        let (status, body) = sim
            .post("/send_text", &json!({"chat": MISSING, "text": "x"}))
            .await;
        assert_eq!(status, 500, "the pre-fix scripts answered 500: {body}");
        last = body;
    }
    assert_eq!(
        last["error"],
        "A wait of 108 seconds is required (caused by GetDialogsRequest)"
    );
    sim.wait_line("ERROR:send_text_bot:send_text failed: FloodWaitError: A wait of 108 seconds is required (caused by GetDialogsRequest)").await;
    let events = sim.events();
    assert_eq!(strikes(&events), vec![27, 54, 108]);
    let miss_sweeps = events
        .iter()
        .filter(|e| e.kind == EventKind::SweepStart && e.cause == Some(Cause::Miss))
        .count();
    assert_eq!(miss_sweeps, 3, "a full sweep per miss");

    // The client now remembers the flood: the next miss raises without asking Telegram.
    let asked = read_account_state(&fx.state_dir(), "main")
        .unwrap()
        .requests["GetDialogs"];
    let (status, body) = sim
        .post("/send_text", &json!({"chat": MISSING, "text": "x"}))
        .await;
    assert_eq!(status, 500);
    assert!(
        body["error"].as_str().unwrap().starts_with("A wait of "),
        "{body}"
    );
    assert_eq!(
        read_account_state(&fx.state_dir(), "main")
            .unwrap()
            .requests["GetDialogs"],
        asked
    );
    assert!(sim
        .events()
        .iter()
        .any(|e| e.kind == EventKind::FloodWait && e.detail.as_deref() == Some("local")));
}

#[tokio::test]
async fn the_fixed_service_refreshes_one_page_per_cooldown_and_learns_joined_chats() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--mini-refresh-cooldown", "100")
        .opt("--missing-chats", MISSING)
        .start()
        .await;
    sim.wait_warm().await;
    for _ in 0..2 {
        let (status, _) = sim
            .post("/send_text", &json!({"chat": MISSING, "text": "x"}))
            .await;
        assert_eq!(status, 500);
    }
    let events = sim.events();
    assert_eq!(
        count(&events, EventKind::MiniRefresh),
        1,
        "one per cooldown"
    );
    assert_eq!(
        strikes(&events),
        Vec::<u64>::new(),
        "one page never strikes"
    );
    let lines = sim.stderr_lines();
    let refreshes = lines
        .iter()
        .filter(|l| *l == "INFO:send_text_bot:Mini cache refresh: added/updated 100 dialogs, total cache: 3978")
        .count();
    assert_eq!(refreshes, 1);
    let warnings = lines
        .iter()
        .filter(|l| *l == "WARNING:send_text_bot:Cannot find chat -1003519196381 in cache (3978 entries) even after mini-refresh.")
        .count();
    assert_eq!(warnings, 2);

    // The account joins the chat; after the cooldown the next miss's refresh finds it.
    let joined = sim.fault(json!({"kind": "join", "chat": MISSING})).await;
    assert_eq!(joined["chat"], -1003519196381i64);
    let ok = wait_for("a send to the joined chat to succeed", || async {
        let (status, body) = sim
            .post("/send_text", &json!({"chat": MISSING, "text": "x"}))
            .await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(ok["chat_id"], -1003519196381i64);
    assert_eq!(sim.stats().await["cache_size"], 3979);
    assert!(count(&sim.events(), EventKind::MiniRefresh) >= 2);
}

#[tokio::test]
async fn send_floods_are_slept_through_and_long_ones_answered_429_without_a_log_line() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--send-rate", "3")
        .start()
        .await;
    sim.wait_warm().await;
    for _ in 0..4 {
        let (status, body) = sim
            .post("/send_text", &json!({"chat": VALID_CHAT, "text": "x"}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let re = Regex::new(
        r"^INFO:telethon\.client\.users:Sleeping for (\d+)s \(0:00:(\d\d)\) on SendMessageRequest flood wait$",
    )
    .unwrap();
    let slept: Vec<(u64, u64)> = sim
        .stderr_lines()
        .iter()
        .filter_map(|l| re.captures(l))
        .map(|c| (c[1].parse().unwrap(), c[2].parse().unwrap()))
        .collect();
    assert_eq!(slept.len(), 1, "{}", sim.stderr());
    assert!(
        (5..=15).contains(&slept[0].0) && slept[0].0 == slept[0].1,
        "{slept:?}"
    );

    let forced = sim
        .fault(json!({"kind": "flood", "method": "SendMessage", "seconds": 120}))
        .await;
    assert_eq!(forced["method"], "SendMessage");
    let (status, body) = sim
        .post("/send_text", &json!({"chat": VALID_CHAT, "text": "x"}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(keys(&body), ["error", "retry_after", "status"]);
    assert_eq!(body["error"], "FloodWait");
    let retry = body["retry_after"].as_u64().unwrap();
    assert!((110..=120).contains(&retry), "{retry}");
    let stats = sim.stats().await;
    assert_eq!(stats["error_count"], 1);
    assert_eq!(
        stats["last_errors"][0]["error"],
        format!("FloodWait: {retry}s")
    );
    assert!(
        !sim.stderr().contains("send_text failed"),
        "{}",
        sim.stderr()
    );
}

#[tokio::test]
async fn periodic_warmups_log_their_lines_and_a_failed_one_is_counted() {
    let fx = Fixture::new();
    // Warm-ups every 80 s fall inside the 600 s window: 27 s, 54 s (both slept), then 108 s (raised).
    let sim = fx
        .sim("text")
        .opt("--warmup-interval", "80")
        .opt("--pts-noise-interval", "50")
        .start()
        .await;
    sim.wait_line("INFO:send_text_bot:Periodic cache warmup started...")
        .await;
    sim.wait_line("INFO:send_text_bot:Periodic cache warmup done, 3978 entries")
        .await;
    sim.wait_line("ERROR:send_text_bot:Periodic cache warmup failed: A wait of 108 seconds is required (caused by GetDialogsRequest)").await;
    let early = Regex::new(
        r"^INFO:telethon\.client\.users:Sleeping early for (\d+)s \(0:00:\d\d\) on GetDialogsRequest flood wait$",
    )
    .unwrap();
    wait_for(
        "the next warm-up to sleep early on the remembered flood",
        || async {
            sim.stderr_lines()
                .iter()
                .any(|l| early.is_match(l))
                .then_some(())
        },
    )
    .await;
    let stats = sim.stats().await;
    let errors: Vec<&str> = stats["last_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert!(
        errors.contains(
            &"periodic_warmup: A wait of 108 seconds is required (caused by GetDialogsRequest)"
        ),
        "{errors:?}"
    );
    let periodic = sim
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::SweepStart && e.cause == Some(Cause::Periodic))
        .count();
    assert!(periodic >= 3);

    // PTS noise: five warnings, then the update loop gives up on a channel.
    sim.wait_stderr("WARNING:telethon.client.updates:Getting difference for channel updates ")
        .await;
    let lines = sim.stderr_lines();
    let give_up = lines
        .iter()
        .position(|l| l.starts_with("WARNING:telethon.client.updates:Getting difference"))
        .unwrap();
    let pts = "WARNING:telethon.client.users:Telegram is having internal issues PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)";
    let before: Vec<&String> = lines[..give_up]
        .iter()
        .filter(|l| l.starts_with("WARNING:telethon.client.users:"))
        .collect();
    assert!(
        before.len() >= 5 && before.iter().all(|l| *l == pts),
        "{before:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Log lines equal the texts of TELETHON.md (§1, §6), character for character

#[tokio::test]
async fn log_lines_equal_the_texts_of_telethon_md() {
    let fx = Fixture::new();
    let text = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--missing-chats", MISSING)
        .opt("--banned-chats", BANNED)
        .opt("--readonly-chats", READONLY)
        .start()
        .await;
    let media = fx
        .sim("media")
        .opt("--service", "send_media")
        .opt("--time-scale", "0.01")
        .opt("--account", "media")
        .opt("--missing-chats", "-1003772791180")
        .start()
        .await;
    // At scale 1 the forced flood is seen at its exact length by the first page.
    let zombie = fx
        .sim("zombie")
        .opt("--account", "zombie")
        .opt("--time-scale", "1")
        .opt("--force-flood", "3000")
        .start()
        .await;
    text.wait_warm().await;
    media.wait_warm().await;

    // Drive every situation once.
    assert_eq!(text.post("/reload_cache", &json!({})).await.0, 200);
    for chat in [MISSING, BANNED, READONLY] {
        let (status, _) = text
            .post("/send_text", &json!({"chat": chat, "text": "x"}))
            .await;
        assert_eq!(status, 500);
    }
    text.fault(json!({"kind": "pts_noise"})).await;
    text.wait_stderr("WARNING:telethon.client.updates:").await;
    text.fault(json!({"kind": "crash_thread"})).await;
    let (status, _) = text
        .post("/send_text", &json!({"chat": VALID_CHAT, "text": "x"}))
        .await;
    assert_eq!(status, 500);
    let raw = r#"{"user_id":-1003772791180,"files":["https://example.invalid/a.jpg"]}"#;
    assert_eq!(
        media
            .post_raw("/send_media", "application/json", raw)
            .await
            .0,
        500
    );
    zombie.wait_line("Exception in thread telethon-loop:").await;

    let table: &[(&SimProc, &str)] = &[
        (&text, "INFO:telethon.network.mtprotosender:Connecting to 149.154.167.51:443/TcpFull..."),
        (&text, "INFO:telethon.network.mtprotosender:Connection to 149.154.167.51:443/TcpFull complete!"),
        (&text, "INFO:telethon.client.updates:Account is now banned in 3760957276 so we can no longer fetch updates from it"),
        (&text, "INFO:send_text_bot:Telethon client started, dialog cache warmed up"),
        (&text, "INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait"),
        (&text, "INFO:send_text_bot:Mini cache refresh: added/updated 100 dialogs, total cache: 3978"),
        (&text, "WARNING:send_text_bot:Cannot find chat -1003519196381 in cache (3978 entries) even after mini-refresh."),
        (&text, "ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381 в диалогах"),
        (&text, "ERROR:send_text_bot:send_text failed: UserBannedInChannelError: You're banned from sending messages in supergroups/channels (caused by SendMessageRequest)"),
        (&text, "ERROR:send_text_bot:send_text failed: ChatWriteForbiddenError: You can't write in this chat (caused by SendMessageRequest)"),
        (&text, "WARNING:telethon.client.users:Telegram is having internal issues PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)"),
        (&text, "Exception in thread telethon-loop:"),
        (&text, "ConnectionError: Connection to Telegram failed 5 time(s)"),
        (&text, "ERROR:send_text_bot:send_text failed: TimeoutError: "),
        (&media, "INFO:send_media_bot:Telethon client started, dialog cache warmed up"),
        (&media, r#"INFO:send_media_webhook:[send_media] CT=application/json RAW={"user_id":-1003772791180,"files":["https://example.invalid/a.jpg"]}"#),
        (&media, "WARNING:send_media_bot:Cannot resolve entity uid=-1003772791180, cache has 3978 entries even after mini-refresh."),
        (&media, "ERROR:send_media_bot:send_media failed: ValueError: Cannot resolve entity from user_id=-1003772791180. Make sure this session has an existing dialog with the user/channel, or use 'username'."),
        (&zombie, "Exception in thread telethon-loop:"),
        (&zombie, "Traceback (most recent call last):"),
        (&zombie, "telethon.errors.rpcerrorlist.FloodWaitError: A wait of 3000 seconds is required (caused by GetDialogsRequest)"),
    ];
    for (sim, line) in table {
        sim.wait_line(line).await;
    }
    let pts_lines = text
        .stderr_lines()
        .iter()
        .filter(|l| {
            l.starts_with("WARNING:telethon.client.users:Telegram is having internal issues")
        })
        .count();
    assert_eq!(pts_lines, 5, "request_retries = 5");
    let give_up = Regex::new(r"^WARNING:telethon\.client\.updates:Getting difference for channel updates \d{10} caused ValueError; ending getting difference prematurely until server issues are resolved$").unwrap();
    assert!(text.stderr_lines().iter().any(|l| give_up.is_match(l)));

    // Every physical line starts a record or continues one (TELETHON.md §2 parser rule): nothing else.
    let record = Regex::new(r"^((DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:|Exception in thread |Traceback |  |[\w.]+(Error|Exception)\b)").unwrap();
    for sim in [&text, &media, &zombie] {
        for line in sim.stderr_lines() {
            assert!(
                record.is_match(&line),
                "{}: unexpected line {line:?}",
                sim.name
            );
        }
    }
}

#[tokio::test]
async fn asctime_format_and_gunicorn_banner() {
    let fx = Fixture::new();
    let mut sim = fx
        .sim("text")
        .opt("--log-format", "asctime")
        .flag("--gunicorn-banner")
        .start()
        .await;
    sim.wait_warm().await;
    let asctime = Regex::new(
        r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - telethon\.network\.mtprotosender - INFO - Connecting to 149\.154\.167\.51:443/TcpFull\.\.\.$",
    )
    .unwrap();
    assert!(
        sim.stderr_lines().iter().any(|l| asctime.is_match(l)),
        "{}",
        sim.stderr()
    );

    let pid = sim.pid;
    let head = format!(
        r"^\[\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} [+-]\d{{4}}\] \[{pid}\] \[INFO\] "
    );
    let banner = [
        "Starting gunicorn 23.0.0".to_string(),
        format!("Listening at: http://127.0.0.1:{} ({pid})", sim.port),
        "Using worker: gevent".into(),
        format!("Booting worker with pid: {pid}"),
    ];
    let out: Vec<String> = sim.stdout().lines().map(str::to_string).collect();
    assert_eq!(out.len(), 4, "{out:?}");
    for (line, want) in out.iter().zip(&banner) {
        let re = Regex::new(&format!("{head}{}$", regex::escape(want))).unwrap();
        assert!(re.is_match(line), "{line:?} is not {want:?}");
    }
    sim.signal(Signal::SIGTERM);
    assert_eq!(sim.wait_exit().await.code(), Some(0));
    let out = sim.stdout();
    for want in [
        "[INFO] Handling signal: term",
        &format!("[INFO] Worker exiting (pid: {pid})"),
        "[INFO] Shutting down: Master",
    ] {
        assert!(out.contains(want), "{want} missing in {out}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Fault switches

#[tokio::test]
async fn crash_after_and_the_exit_faults_end_the_process_with_their_code() {
    let fx = Fixture::new();
    let mut flagged = fx
        .sim("flagged")
        .opt("--crash-after", "300")
        .opt("--exit-code", "3")
        .start()
        .await;
    let mut now = fx.sim("now").opt("--account", "b").start().await;
    let mut later = fx.sim("later").opt("--account", "c").start().await;
    let answer = now.fault(json!({"kind": "exit", "code": 7})).await;
    assert_eq!(answer, json!({"status": "ok", "code": 7}));
    later
        .fault(json!({"kind": "crash", "after_s": 50, "code": 4}))
        .await;
    assert_eq!(flagged.wait_exit().await.code(), Some(3));
    assert_eq!(now.wait_exit().await.code(), Some(7));
    assert_eq!(later.wait_exit().await.code(), Some(4));
    let exit = fx
        .events("main")
        .into_iter()
        .find(|e| e.kind == EventKind::Exit)
        .unwrap();
    assert_eq!(exit.detail.as_deref(), Some("crash_after: exit code 3"));
}

#[tokio::test]
async fn crash_thread_flag_makes_a_zombie_that_still_answers_health() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--crash-thread-after", "50")
        .start()
        .await;
    sim.wait_line("ConnectionError: Connection to Telegram failed 5 time(s)")
        .await;
    assert_eq!(sim.get("/health").await.0, 200);
    assert_eq!(sim.state().await["zombie"], true);
    let (status, v) = sim
        .post("/__emu/fault", &json!({"kind": "crash_thread"}))
        .await;
    assert_eq!(status, 400, "already dead: {v}");
}

#[tokio::test]
async fn hang_stalls_every_endpoint_but_the_control_api_until_cleared_or_expired() {
    let fx = Fixture::new();
    let sim = fx.sim("text").opt("--time-scale", "0.01").start().await;
    sim.wait_warm().await;
    sim.fault(json!({"kind": "hang"})).await;
    assert_eq!(
        sim.get_within("/health", Duration::from_millis(300)).await,
        None
    );
    assert_eq!(
        sim.get_within("/stats", Duration::from_millis(300)).await,
        None
    );
    assert_eq!(sim.state().await["faults"]["hang"], true);
    sim.fault(json!({"kind": "clear"})).await;
    assert_eq!(sim.get("/health").await.0, 200);

    // 50 nominal seconds = 500 ms: the call is answered once the hang expires.
    sim.fault(json!({"kind": "hang", "seconds": 50})).await;
    let started = Instant::now();
    assert_eq!(
        sim.get_within("/health", Duration::from_secs(10)).await,
        Some(200)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn health_can_be_slow_or_never_answer() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--time-scale", "0.01")
        .opt("--health-delay", "40")
        .start()
        .await;
    let started = Instant::now();
    assert_eq!(sim.get("/health").await.0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );

    sim.fault(json!({"kind": "health_hang"})).await;
    assert_eq!(
        sim.get_within("/health", Duration::from_millis(300)).await,
        None
    );
    assert_eq!(sim.get("/stats").await.0, 200, "only /health hangs");
    sim.fault(json!({"kind": "health_hang", "on": false})).await;
    sim.fault(json!({"kind": "health_delay", "seconds": 0}))
        .await;
    assert_eq!(
        sim.get_within("/health", Duration::from_secs(10)).await,
        Some(200)
    );
}

#[tokio::test]
async fn refuse_start_fails_at_import_by_flag_and_for_the_next_starts_by_fault() {
    let fx = Fixture::new();
    let mut refused = fx
        .sim("refused")
        .opt("--account", "flag")
        .flag("--refuse-start")
        .opt("--exit-code", "5")
        .spawn();
    assert_eq!(refused.wait_exit().await.code(), Some(5));
    let lines = refused.stderr_lines();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("Traceback (most recent call last):")
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("sqlite3.OperationalError: database is locked")
    );

    let running = fx.sim("text").start().await;
    let v = running
        .fault(json!({"kind": "refuse_start", "times": 2}))
        .await;
    assert_eq!(v["times"], 2);
    drop(running);
    for attempt in 0..2 {
        let mut p = fx.sim(&format!("retry{attempt}")).spawn();
        assert_eq!(
            p.wait_exit().await.code(),
            Some(1),
            "start {attempt} refused"
        );
    }
    let third = fx.sim("third").start().await;
    third.wait_warm().await;
    let exits: Vec<String> = fx
        .events("main")
        .into_iter()
        .filter(|e| e.kind == EventKind::Exit)
        .filter_map(|e| e.detail)
        .collect();
    assert_eq!(
        exits,
        ["refuse_start: exit code 1", "refuse_start: exit code 1"]
    );
}

#[tokio::test]
async fn sigterm_exits_zero_unless_ignored() {
    let fx = Fixture::new();
    let mut plain = fx.sim("plain").start().await;
    let mut stubborn = fx
        .sim("stubborn")
        .opt("--account", "stubborn")
        .flag("--ignore-sigterm")
        .start()
        .await;
    plain.wait_warm().await;
    plain.signal(Signal::SIGTERM);
    assert_eq!(plain.wait_exit().await.code(), Some(0));
    let details: Vec<Option<String>> = fx
        .events("main")
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Signal | EventKind::Exit))
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        details,
        [
            Some("SIGTERM".to_string()),
            Some("shutdown: exit code 0".to_string())
        ]
    );

    stubborn.signal(Signal::SIGTERM);
    stubborn
        .wait_event(EventKind::Signal, |e| {
            e.detail.as_deref() == Some("SIGTERM ignored")
        })
        .await;
    assert!(stubborn.is_running());
    assert_eq!(stubborn.get("/health").await.0, 200);
    stubborn
        .fault(json!({"kind": "ignore_sigterm", "on": false}))
        .await;
    stubborn.signal(Signal::SIGTERM);
    assert_eq!(stubborn.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn a_grandchild_outlives_its_parent_in_the_same_process_group() {
    let fx = Fixture::new();
    let mut sim = fx.sim("text").flag("--spawn-grandchild").start().await;
    let ev = sim.wait_event(EventKind::Grandchild, |_| true).await;
    let grandchild: u32 = ev.detail.unwrap().parse().unwrap();
    assert_eq!(
        live_pgid(grandchild),
        Some(sim.pid as i32),
        "same process group"
    );
    let via_api = sim.fault(json!({"kind": "spawn_grandchild"})).await;
    let second = via_api["pid"].as_u64().unwrap() as u32;
    assert_eq!(live_pgid(second), Some(sim.pid as i32));

    sim.signal(Signal::SIGKILL);
    sim.wait_exit().await;
    assert_eq!(
        live_pgid(grandchild),
        Some(sim.pid as i32),
        "it outlived the parent"
    );
    drop(sim); // kills the group
    wait_for("the grandchildren to die with their group", || async {
        (live_pgid(grandchild).is_none() && live_pgid(second).is_none()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn memory_grows_at_the_requested_rate_up_to_the_cap() {
    let fx = Fixture::new();
    let sim = fx
        .sim("text")
        .opt("--grow-memory-mb-per-s", "400")
        .opt("--grow-memory-max-mb", "64")
        .start()
        .await;
    let base = rss_kb(sim.pid).unwrap();
    wait_for("RSS to grow by 48 MB", || async {
        (rss_kb(sim.pid).unwrap_or(0) >= base + 48 * 1024).then_some(())
    })
    .await;
    wait_for("the growth to reach its cap", || async {
        let grown = sim.state().await["faults"]["memory_grown_mb"]
            .as_f64()
            .unwrap();
        assert!(grown <= 64.0, "{grown}");
        (grown >= 63.9).then_some(())
    })
    .await;
    sim.fault(json!({"kind": "clear"})).await;
    assert_eq!(sim.state().await["faults"]["memory_grown_mb"], 0.0);
}

#[tokio::test]
async fn output_floods_both_streams_by_flag_and_by_fault() {
    let fx = Fixture::new();
    let flagged = fx
        .sim("flagged")
        .opt("--flood-output", "5000")
        .start()
        .await;
    let api = fx.sim("api").opt("--account", "api").start().await;
    api.fault(json!({"kind": "flood_output", "lines_per_s": 5000}))
        .await;
    for sim in [&flagged, &api] {
        wait_for("500 lines on each stream", || async {
            let out = sim
                .stdout()
                .lines()
                .filter(|l| l.starts_with("flood-output: stdout line "))
                .count();
            let err = sim
                .stderr()
                .lines()
                .filter(|l| l.starts_with("INFO:send_text_bot:flood-output: stderr line "))
                .count();
            (out >= 500 && err >= 500).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_forced_flood_is_recorded_and_hits_the_next_request() {
    let fx = Fixture::new();
    let sim = fx.sim("text").opt("--time-scale", "0.01").start().await;
    sim.wait_warm().await;
    let v = sim
        .fault(json!({"kind": "flood", "method": "GetDialogs", "seconds": 40}))
        .await;
    assert_eq!(
        v,
        json!({"status": "ok", "method": "GetDialogs", "seconds": 40})
    );
    let state = sim.state().await;
    assert!(
        state["flood_until"]["GetDialogs"].as_i64().unwrap()
            > state["model_now_ms"].as_i64().unwrap(),
        "{state}"
    );
    assert_eq!(sim.post("/reload_cache", &json!({})).await.0, 200);
    let events = sim.events();
    let forced = events
        .iter()
        .find(|e| e.kind == EventKind::FloodWait && e.cause == Some(Cause::Forced))
        .unwrap();
    assert_eq!(forced.seconds, Some(40));
    assert!(events.iter().any(|e| e.kind == EventKind::Sleep
        && e.cause == Some(Cause::Reload)
        && e.seconds.is_some_and(|s| s <= 40)));
    assert!(sim.stderr().contains("on GetDialogsRequest flood wait"));

    let (status, bad) = sim
        .post(
            "/__emu/fault",
            &json!({"kind": "flood", "method": "GetHistory", "seconds": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"].as_str().unwrap().contains("unknown method"),
        "{bad}"
    );
    let (status, _) = sim.post("/__emu/fault", &json!({"kind": "nonsense"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_control_api_is_off_without_emu_control() {
    let fx = Fixture::new();
    let sim = fx.sim("text").no_control().start().await;
    let (status, page) = sim.get_text("/__emu/state").await;
    assert_eq!(status, 404);
    assert!(page.contains("<title>404 Not Found</title>"));
    assert_eq!(sim.get("/health").await.0, 200);
}

#[tokio::test]
async fn a_taken_port_is_reported_with_what_to_do() {
    let fx = Fixture::new();
    let first = fx.sim("first").start().await;
    let mut second = fx
        .sim("second")
        .opt("--account", "second")
        .opt("--port", &first.port.to_string())
        .spawn();
    assert_eq!(second.wait_exit().await.code(), Some(1));
    let err = second.stderr();
    assert!(
        err.contains(&format!("binding 127.0.0.1:{}", first.port))
            && err.contains("choose another --port"),
        "{err}"
    );
}

#[test]
fn help_documents_every_option() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--service",
        "--port",
        "--account",
        "--state-dir",
        "--dialogs",
        "--seed",
        "--log-format",
        "--gunicorn-banner",
        "--time-scale",
        "--legacy-refetch",
        "--missing-chats",
        "--banned-chats",
        "--readonly-chats",
        "--banned-channels",
        "--flood-window",
        "--flood-base",
        "--warmup-interval",
        "--pts-noise-interval",
        "--send-rate",
        "--crash-after",
        "--exit-code",
        "--refuse-start",
        "--ignore-sigterm",
        "--spawn-grandchild",
        "--grow-memory-mb-per-s",
        "--flood-output",
        "--health-delay",
        "--force-flood",
        "EMU_CONTROL",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let bad = std::process::Command::new(BIN)
        .args(["--service", "send_text", "--time-scale", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--time-scale 0"));
}
