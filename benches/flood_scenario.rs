//! `cargo bench --bench flood_scenario`: one scripted hour of faults on two emulated services that share
//! a Telegram account, run twice: under tend's shipped policy and under a naive `restart = "always"`
//! with a 1 s delay. Prints dialog fetches, FloodWaits and downtime per service, counted from the
//! emulator's own record of what happened. Time-scaled: one model hour lasts 3.6 s.
//!
//! The faults: send_text crashes 5 model minutes after every start (a flaky service); send_media crashes
//! 15 model minutes after every start.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tend_sim::{read_events, EventKind};

const TEND: &str = env!("CARGO_BIN_EXE_tend");
const SCALE: f64 = 0.001;
const HOUR_MS: u64 = 3600;

fn service(name: &str, crash_after: u32, policy: &str) -> String {
    format!(
        r#"
[services.{name}]
command = "{TEND} sim --service {name} --port 0 --account main --state-dir sim --time-scale {SCALE} --crash-after {crash_after} --exit-code 1 --warmup-interval 0 --pts-noise-interval 0"
start_grace = "30ms"
stop_timeout = "1s"
{policy}
"#
    )
}

/// The shipped supervisor.toml's policy, every duration times the scale.
const TEND_POLICY: &str = r#"group = "telegram"
min_restart_interval = "600ms"
[SERVICE.backoff]
initial = "10ms"
max = "900ms"
give_up_after = 0"#;

const NAIVE_POLICY: &str = r#"[SERVICE.backoff]
initial = "1ms"
max = "1ms"
give_up_after = 0"#;

struct Figures {
    fetches: usize,
    floods: usize,
    downtime_ms: i64,
}

fn run(label: &str, with_group: bool) -> BTreeMap<String, Figures> {
    let dir = tempfile::tempdir().unwrap();
    let (policy, group) = if with_group {
        (
            TEND_POLICY,
            "[groups.telegram]\nmin_start_spacing = \"660ms\"\nmax_starts = 6\nwindow = \"3600ms\"\n",
        )
    } else {
        (NAIVE_POLICY, "")
    };
    let body = format!(
        "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{group}{}{}",
        service(
            "send_text",
            300,
            &policy.replace("SERVICE", "services.send_text")
        ),
        service(
            "send_media",
            900,
            &policy.replace("SERVICE", "services.send_media")
        ),
    );
    std::fs::write(dir.path().join("supervisor.toml"), body).unwrap();
    let mut tend = Command::new(TEND)
        .arg("-c")
        .arg(dir.path().join("supervisor.toml"))
        .arg("up")
        .env("TEND_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(HOUR_MS));
    let end_wall = now_ms();
    unsafe { libc::kill(tend.id() as i32, libc::SIGTERM) };
    let _ = tend.wait();
    let _ = start;
    let figures = count(&dir.path().join("sim"), end_wall - HOUR_MS as i64, end_wall);
    for (name, f) in &figures {
        println!(
            "{label:<6} {name:<11} {:>14} {:>11} {:>20.0}",
            f.fetches,
            f.floods,
            f.downtime_ms as f64 / SCALE / 1000.0
        );
    }
    figures
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Per service: sweeps started, flood waits met, and the time without a warm dialog cache.
fn count(state_dir: &Path, from: i64, to: i64) -> BTreeMap<String, Figures> {
    let events = read_events(state_dir, "main").unwrap_or_default();
    let mut out = BTreeMap::new();
    for name in ["send_text", "send_media"] {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.service == name && e.wall_ms >= from && e.wall_ms <= to)
            .collect();
        let fetches = mine
            .iter()
            .filter(|e| e.kind == EventKind::SweepStart)
            .count();
        let floods = mine
            .iter()
            .filter(|e| e.kind == EventKind::FloodWait)
            .count();
        // Warm from a sweep_done until that process exits.
        let mut warm_ms = 0;
        let mut warm_since: BTreeMap<u32, i64> = BTreeMap::new();
        for e in &mine {
            match e.kind {
                EventKind::SweepDone => {
                    warm_since.entry(e.pid).or_insert(e.wall_ms);
                }
                EventKind::Exit | EventKind::ThreadDied => {
                    if let Some(since) = warm_since.remove(&e.pid) {
                        warm_ms += e.wall_ms - since;
                    }
                }
                _ => {}
            }
        }
        for since in warm_since.values() {
            warm_ms += to - since;
        }
        out.insert(
            name.to_string(),
            Figures {
                fetches,
                floods,
                downtime_ms: (to - from) - warm_ms,
            },
        );
    }
    out
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("flood scenario: run with `cargo bench --bench flood_scenario`");
        return;
    }
    println!("one scripted hour: send_text crashes 5 min after each start, send_media 15 min after each start");
    println!("policy service     dialog fetches  FloodWaits  downtime (model s)");
    run("tend", true);
    run("naive", false);
}
