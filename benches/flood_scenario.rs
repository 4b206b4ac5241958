//! `cargo bench --bench flood_scenario`: scripted hours of faults on two emulated services that share
//! one Telegram account, each run with real `tend up` processes against `tend-sim`, under tend's
//! shipped policy and under a naive `restart = "always"`, and compared with two offline optima
//! (`flood_scenario/optimum.rs`) over the same flood model: least downtime with no FloodWait at all,
//! and with no *raised* FloodWait.
//!
//! Everything is counted from the emulator's own record of what happened (its events file), in model
//! seconds: sweeps (full ones and mini refreshes of the two services), FloodWaits they met, the raised
//! ones (over 60 s), the seconds they spent in flood waits, and per service the time without a warm
//! dialog cache (down, sweeping, zombie or hung). Time-scaled: one model hour lasts 14.4 s.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it only checks the planner's tables.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend_sim::{read_events, EventKind};

#[path = "flood_scenario/optimum.rs"]
mod optimum;
#[path = "flood_scenario/preview.rs"]
mod preview;

use optimum::{Fixed, Limit, Outage, Rules};

const TEND: &str = env!("CARGO_BIN_EXE_tend");
/// Real seconds per model second.
const SCALE: f64 = 0.004;
/// One model hour, in model seconds.
const HOUR_S: i64 = 3600;
const SERVICES: [&str; 2] = ["send_text", "send_media"];
/// The emulator's defaults (`--flood-window`, `--flood-base`, `--flood-sleep-threshold`).
const WINDOW_S: i64 = 600;
const BASE_S: i64 = 27;
const THRESHOLD_S: i64 = 60;
/// A missing chat id: every send to it is a cache miss (and a mini refresh, 30 s cooldown).
const MISSING_CHAT: i64 = -1_009_990_000_001;

/// One step of a script, at a model second.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// SIGKILL the service's process.
    Kill(usize),
    /// Every start of the service fails at import (before connecting) until `CrashLoopEnd`; its
    /// running process is killed.
    CrashLoop(usize),
    CrashLoopEnd(usize),
    /// Every endpoint of the service stalls this many model seconds.
    Hang(usize, i64),
    /// Someone else on the account runs a full dialog sweep.
    ExternalSweep,
    /// A send to a chat the cache does not know (a mini refresh when its cooldown allows). The body
    /// is `/send_text`'s: use it on send_text.
    CacheMiss(usize),
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    steps: Vec<(i64, Step)>,
}

fn scenarios() -> Vec<Scenario> {
    let burst = |service, from: i64| (0..9).map(move |i| (from + 35 * i, Step::CacheMiss(service)));
    // Every fault comes 15 minutes or more after boot and after the previous fault of its service, so
    // that it hits a running service under either policy (tend's boot starts the second member 11
    // minutes after the first).
    vec![
        Scenario {
            name: "single",
            what: "one kill at a time: send_text at 15m and 45m, send_media at 30m",
            steps: vec![(900, Step::Kill(0)), (1800, Step::Kill(1)), (2700, Step::Kill(0))],
        },
        Scenario {
            name: "both",
            what: "both killed at once, at 15m and again at 45m",
            steps: vec![
                (900, Step::Kill(0)),
                (900, Step::Kill(1)),
                (2700, Step::Kill(0)),
                (2700, Step::Kill(1)),
            ],
        },
        Scenario {
            name: "crashloop",
            what: "send_text crash-loops from 15m to 25m (fails before connecting); send_media killed at 40m",
            steps: vec![
                (900, Step::CrashLoop(0)),
                (1500, Step::CrashLoopEnd(0)),
                (2400, Step::Kill(1)),
            ],
        },
        Scenario {
            name: "hang",
            what: "send_media hangs 15m from 15m; send_text killed at 40m",
            steps: vec![(900, Step::Hang(1, 900)), (2400, Step::Kill(0))],
        },
        Scenario {
            name: "external",
            what: "someone else sweeps at 13m, 25m, 38m; send_text killed at 26m, send_media at 45m",
            steps: vec![
                (800, Step::ExternalSweep),
                (1500, Step::ExternalSweep),
                (1540, Step::Kill(0)),
                (2300, Step::ExternalSweep),
                (2700, Step::Kill(1)),
            ],
        },
        Scenario {
            name: "misses",
            what: "a burst of cache misses on send_text from 20m (9 in 5m); send_media killed at 22m",
            steps: burst(0, 1200).chain([(1320, Step::Kill(1))]).collect(),
        },
    ]
}

fn service_toml(dir: &Path, name: &str, policy: &str) -> String {
    let port_file = dir.join(format!("{name}.port"));
    format!(
        r#"
[services.{name}]
command = "{TEND} sim --service {name} --port 0 --port-file {} --account main --state-dir sim --time-scale {SCALE} --warmup-interval 0 --pts-noise-interval 0 --emu-control"
start_grace = "30ms"
stop_timeout = "1s"
{}
"#,
        port_file.display(),
        policy.replace("SERVICE", &format!("services.{name}"))
    )
}

/// A model duration as a config duration in real milliseconds.
fn scaled(model_s: f64) -> String {
    format!("{}ms", (model_s * 1000.0 * SCALE).round().max(1.0))
}

/// The shipped supervisor.toml's policy, every duration times the scale.
fn tend_policy() -> String {
    format!(
        "group = \"telegram\"\nmin_restart_interval = \"{}\"\n[SERVICE.backoff]\ninitial = \"{}\"\nmax = \"{}\"\ngive_up_after = 0",
        scaled(600.0),
        scaled(10.0),
        scaled(900.0)
    )
}

fn tend_group() -> String {
    format!(
        "[groups.telegram]\nmin_start_spacing = \"{}\"\nmax_starts = 6\nwindow = \"{}\"\n",
        scaled(660.0),
        scaled(3600.0)
    )
}

/// The start queue with the account's flood model in charge: no fixed spacing (the model's prior
/// window is 10 minutes until the account says otherwise), a one-minute `min_restart_interval`, the
/// default 30 s `flood_tolerance`, and the emulator's time scale for what the services print.
fn queue_policy() -> String {
    format!(
        "group = \"telegram\"\nmin_restart_interval = \"{}\"\n[SERVICE.backoff]\ninitial = \"{}\"\nmax = \"{}\"\ngive_up_after = 0",
        scaled(60.0),
        scaled(10.0),
        scaled(900.0)
    )
}

fn queue_group() -> String {
    format!(
        "[groups.telegram]\nmin_start_spacing = \"0s\"\nmax_starts = 6\nwindow = \"{}\"\nsweep_after = \"{}\"\n",
        scaled(3600.0),
        scaled(20.0)
    )
}

/// Which supervisor runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// The shipped supervisor.toml's policy (fixed 11-minute spacing).
    Shipped,
    /// The start queue and flood model, without the fixed spacing.
    Queue,
    /// `restart = "always"` at once.
    Naive,
}

impl Policy {
    fn label(self) -> &'static str {
        match self {
            Policy::Shipped => "tend",
            Policy::Queue => "tend-queue",
            Policy::Naive => "naive",
        }
    }
}

/// `restart = "always"` with no spacing: restart at once.
const NAIVE_POLICY: &str = r#"[SERVICE.backoff]
initial = "1ms"
max = "1ms"
give_up_after = 0"#;

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Figures {
    sweeps: usize,
    floods: usize,
    raised: usize,
    flood_s: f64,
    down_s: [f64; 2],
    ready_at_end: [bool; 2],
    /// Start to a warm cache of each start that met no flood (model s): this machine's cost of a
    /// clean start, which the optima are given.
    clean_starts: Vec<f64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn model_ms(model_s: i64) -> Duration {
    Duration::from_secs_f64(model_s as f64 * SCALE)
}

/// The pid of the service's live process, from the emulator's record (`Start` without `Exit`).
fn live_pid(sim_dir: &Path, service: &str, external: &[u32]) -> Option<u32> {
    let events = read_events(sim_dir, "main").ok()?;
    let pid = events
        .iter()
        .rev()
        .find(|e| e.service == service && e.kind == EventKind::Start && !external.contains(&e.pid))?
        .pid;
    let exited = events
        .iter()
        .any(|e| e.pid == pid && e.kind == EventKind::Exit);
    (!exited && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

fn port(dir: &Path, service: &str) -> Option<u16> {
    std::fs::read_to_string(dir.join(format!("{service}.port")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One HTTP/1.1 POST with a short timeout; the answer does not matter (a hang must not stall the script).
fn post(port: u16, path: &str, body: &str) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

fn refuse_marker(dir: &Path, service: &str) -> PathBuf {
    dir.join("sim").join(format!("main.{service}.refuse-start"))
}

/// [`run`], once more if nothing started at all (a `tend up` that did not come up on a loaded
/// machine says nothing about the policy); the table says so.
fn run_checked(scenario: &Scenario, policy: Policy) -> Figures {
    let figures = run(scenario, policy);
    if figures.sweeps > 0 {
        return figures;
    }
    println!(
        "  ({} run of {}: no start at all, run again)",
        policy.label(),
        scenario.name
    );
    run(scenario, policy)
}

/// Runs one scenario under `tend up` with the given policy; returns what the emulator recorded.
fn run(scenario: &Scenario, which: Policy) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let (policy, group, scale) = match which {
        Policy::Shipped => (tend_policy(), tend_group(), String::new()),
        Policy::Queue => (
            queue_policy(),
            queue_group(),
            format!("output_time_scale = {SCALE}\n"),
        ),
        Policy::Naive => (NAIVE_POLICY.to_string(), String::new(), String::new()),
    };
    let body = format!(
        "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{scale}{group}{}{}",
        service_toml(dir.path(), SERVICES[0], &policy),
        service_toml(dir.path(), SERVICES[1], &policy),
    );
    std::fs::write(dir.path().join("supervisor.toml"), body).unwrap();
    std::fs::create_dir_all(dir.path().join("sim")).unwrap();
    let sim_dir = dir.path().join("sim");
    let start_wall = now_ms();
    let start = Instant::now();
    let mut tend = Command::new(TEND)
        .arg("-c")
        .arg(dir.path().join("supervisor.toml"))
        .arg("up")
        .current_dir(dir.path())
        .env("TEND_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("tend.stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut external: Vec<u32> = Vec::new();
    let mut sweepers: Vec<Child> = Vec::new();
    let mut hangs: Vec<(usize, i64, i64)> = Vec::new();
    // A killed process writes no `exit` event: its end is when it was killed.
    let mut kills: Vec<(u32, i64)> = Vec::new();
    for (at, step) in &scenario.steps {
        if let Some(wait) = model_ms(*at).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match *step {
            Step::Kill(s) => {
                if let Some(pid) = live_pid(&sim_dir, SERVICES[s], &external) {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    kills.push((pid, now_ms()));
                }
            }
            Step::CrashLoop(s) => {
                std::fs::write(refuse_marker(dir.path(), SERVICES[s]), "100000\n").unwrap();
                if let Some(pid) = live_pid(&sim_dir, SERVICES[s], &external) {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    kills.push((pid, now_ms()));
                }
            }
            Step::CrashLoopEnd(s) => {
                let _ = std::fs::remove_file(refuse_marker(dir.path(), SERVICES[s]));
            }
            Step::Hang(s, seconds) => {
                if let Some(p) = port(dir.path(), SERVICES[s]) {
                    post(
                        p,
                        "/__emu/fault",
                        &format!("{{\"kind\":\"hang\",\"seconds\":{seconds}}}"),
                    );
                    let now = now_ms();
                    hangs.push((s, now, now + model_ms(seconds).as_millis() as i64));
                }
            }
            Step::ExternalSweep => {
                // Another client on the account: it logs in, sweeps, and goes away.
                let child = Command::new(TEND)
                    .args([
                        "sim",
                        "--service",
                        "send_text",
                        "--port",
                        "0",
                        "--account",
                        "main",
                    ])
                    .arg("--state-dir")
                    .arg(&sim_dir)
                    .args(["--time-scale", &SCALE.to_string(), "--warmup-interval", "0"])
                    .args(["--pts-noise-interval", "0", "--crash-after", "90"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                external.push(child.id());
                sweepers.push(child);
            }
            Step::CacheMiss(s) => {
                if let Some(p) = port(dir.path(), SERVICES[s]) {
                    post(
                        p,
                        &format!("/{}", SERVICES[s]),
                        &format!("{{\"chat\":{MISSING_CHAT},\"text\":\"x\"}}"),
                    );
                }
            }
        }
    }
    if let Some(wait) = model_ms(HOUR_S).checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
    let end_wall = now_ms();
    unsafe { libc::kill(tend.id() as i32, libc::SIGTERM) };
    let status = tend.wait();
    if live_pid(&sim_dir, SERVICES[0], &external).is_none()
        && read_events(&sim_dir, "main").map_or(true, |e| e.is_empty())
    {
        let err = std::fs::read_to_string(dir.path().join("tend.stderr")).unwrap_or_default();
        println!(
            "  tend up started nothing ({status:?}): {}",
            err.lines().last().unwrap_or("")
        );
    }
    for mut child in sweepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    let record = Record {
        external: &external,
        hangs: &hangs,
        kills: &kills,
    };
    count(&sim_dir, &record, start_wall, end_wall)
}

/// What the bench did that the emulator's record does not show.
struct Record<'a> {
    /// Pids of the outside sweepers.
    external: &'a [u32],
    /// (service, from, to) wall ms.
    hangs: &'a [(usize, i64, i64)],
    /// (pid, wall ms) of SIGKILLs.
    kills: &'a [(u32, i64)],
}

/// The figures of one run, from the emulator's events between `from` and `to` (wall ms).
fn count(sim_dir: &Path, record: &Record, from: i64, to: i64) -> Figures {
    let Record {
        external,
        hangs,
        kills,
    } = record;
    let events = read_events(sim_dir, "main").unwrap_or_default();
    if std::env::var_os("FLOOD_DUMP").is_some() {
        for e in &events {
            let t = (e.wall_ms - from) as f64 / SCALE / 1000.0;
            println!(
                "  {t:>7.0} {:<10} {:>7} {:?} {:?} {:?}",
                e.service, e.pid, e.kind, e.seconds, e.detail
            );
        }
        println!("  kills {kills:?} from {from}");
    }
    let mine: Vec<_> = events
        .iter()
        .filter(|e| !external.contains(&e.pid) && e.wall_ms >= from && e.wall_ms <= to)
        .collect();
    let model_s = |wall_ms: i64| wall_ms as f64 / SCALE / 1000.0;
    let mut f = Figures {
        sweeps: mine
            .iter()
            .filter(|e| matches!(e.kind, EventKind::SweepStart | EventKind::MiniRefresh))
            .count(),
        ..Figures::default()
    };
    for e in mine
        .iter()
        .filter(|e| e.kind == EventKind::FloodWait && e.detail.as_deref() != Some("local"))
    {
        let seconds = e.seconds.unwrap_or(0);
        f.floods += 1;
        f.raised += usize::from(seconds as i64 > THRESHOLD_S);
        f.flood_s += seconds as f64;
    }
    let mut started: BTreeMap<u32, (i64, bool)> = BTreeMap::new();
    for e in &mine {
        match e.kind {
            EventKind::Start => {
                started.insert(e.pid, (e.wall_ms, true));
            }
            EventKind::FloodWait => {
                if let Some(s) = started.get_mut(&e.pid) {
                    s.1 = false;
                }
            }
            EventKind::SweepDone => {
                if let Some((at, true)) = started.remove(&e.pid) {
                    f.clean_starts.push(model_s(e.wall_ms - at));
                }
            }
            _ => {}
        }
    }
    for (i, name) in SERVICES.iter().enumerate() {
        // Warm from a sweep_done until that process exits, dies inside, or hangs.
        let mut warm: Vec<(i64, i64)> = Vec::new();
        let mut since: BTreeMap<u32, i64> = BTreeMap::new();
        for e in mine.iter().filter(|e| e.service == *name) {
            match e.kind {
                EventKind::SweepDone => {
                    since.entry(e.pid).or_insert(e.wall_ms);
                }
                EventKind::Exit | EventKind::ThreadDied => {
                    if let Some(s) = since.remove(&e.pid) {
                        warm.push((s, e.wall_ms));
                    }
                }
                _ => {}
            }
        }
        for (pid, killed) in kills.iter() {
            if let Some(s) = since.remove(pid) {
                warm.push((s, *killed));
            }
        }
        f.ready_at_end[i] = !since.is_empty();
        warm.extend(since.values().map(|&s| (s, to)));
        let mut warm_ms: i64 = warm.iter().map(|(a, b)| b - a).sum();
        // A hang of a warm process is downtime too.
        for (_, h_from, h_to) in hangs.iter().filter(|h| h.0 == i) {
            for (a, b) in &warm {
                let overlap = (*b).min(*h_to) - (*a).max(*h_from);
                warm_ms -= overlap.max(0);
            }
        }
        f.down_s[i] = model_s((to - from) - warm_ms);
    }
    f
}

/// The script as the planner sees it: outages (boot included) and sweeps nobody plans.
fn plan_inputs(scenario: &Scenario) -> (Vec<Outage>, Vec<Fixed>) {
    let ms = |s: i64| s * 1000;
    let mut outages: Vec<Outage> = (0..2)
        .map(|service| Outage {
            service,
            fault: 0,
            earliest: 0,
            natural_end: None,
        })
        .collect();
    let mut fixed = Vec::new();
    let mut last_miss: [Option<i64>; 2] = [None, None];
    for (at, step) in &scenario.steps {
        match *step {
            Step::Kill(service) => outages.push(Outage {
                service,
                fault: ms(*at),
                earliest: ms(*at),
                natural_end: None,
            }),
            Step::CrashLoop(service) => {
                let end = scenario
                    .steps
                    .iter()
                    .find(|(_, s)| matches!(s, Step::CrashLoopEnd(x) if *x == service))
                    .map_or(HOUR_S, |(t, _)| *t);
                outages.push(Outage {
                    service,
                    fault: ms(*at),
                    earliest: ms(end),
                    natural_end: None,
                });
            }
            Step::CrashLoopEnd(_) => {}
            Step::Hang(service, seconds) => outages.push(Outage {
                service,
                fault: ms(*at),
                earliest: ms(*at),
                natural_end: Some(ms(at + seconds)),
            }),
            Step::ExternalSweep => fixed.push(Fixed {
                at: ms(*at),
                full: true,
            }),
            Step::CacheMiss(service) => {
                // The mini refresh's own cooldown (30 s per process).
                if last_miss[service].is_none_or(|l| at - l >= 30) {
                    fixed.push(Fixed {
                        at: ms(*at),
                        full: false,
                    });
                    last_miss[service] = Some(*at);
                }
            }
        }
    }
    (outages, fixed)
}

fn main() {
    optimum::self_check();
    if !std::env::args().any(|a| a == "--bench") {
        println!("flood scenarios: run with `cargo bench --bench flood_scenario`");
        return;
    }
    println!(
        "scripted hours on one account (model seconds at --time-scale {SCALE}; ratios: total downtime / optimum)"
    );
    println!(
        "{:<10} {:<15} {:>6} {:>6} {:>6} {:>7} {:>9} {:>10} {:>6} {:>8} {:>8} {:>6}",
        "scenario",
        "policy",
        "sweeps",
        "floods",
        "raised",
        "flood_s",
        "down_text",
        "down_media",
        "total",
        "/noflood",
        "/noraise",
        "ready"
    );
    let only = std::env::var("FLOOD_SCENARIO").ok();
    for scenario in scenarios() {
        if only.as_deref().is_some_and(|o| o != scenario.name) {
            continue;
        }
        println!("# {}: {}", scenario.name, scenario.what);
        // FLOOD_SKIP_RUNS=1: only the optima and the preview (seconds instead of minutes).
        let skip = std::env::var_os("FLOOD_SKIP_RUNS").is_some();
        let runs: Vec<(&str, Figures)> = [Policy::Shipped, Policy::Queue, Policy::Naive]
            .into_iter()
            .filter(|_| !skip)
            .map(|policy| (policy.label(), run_checked(&scenario, policy)))
            .collect();
        // The optima pay what a clean start costs on this machine (median of the runs' clean starts).
        let mut clean: Vec<f64> = runs
            .iter()
            .flat_map(|(_, f)| f.clean_starts.clone())
            .collect();
        clean.sort_by(f64::total_cmp);
        let sweep_s = clean.get(clean.len() / 2).copied().unwrap_or(2.0).max(2.0);
        let rules = Rules {
            window: WINDOW_S * 1000,
            base: BASE_S * 1000,
            reset: 2 * WINDOW_S * 1000,
            threshold: THRESHOLD_S * 1000,
            sweep: (sweep_s * 1000.0) as i64,
            horizon: HOUR_S * 1000,
        };
        let (outages, fixed) = plan_inputs(&scenario);
        let no_flood = optimum::optimum(&rules, &outages, &fixed, Limit::NoFlood, 2);
        let no_raise = optimum::optimum(&rules, &outages, &fixed, Limit::NoRaise, 2);
        for (label, o) in [
            ("optimum-noflood", &no_flood),
            ("optimum-noraise", &no_raise),
        ] {
            println!(
                "{:<10} {:<15} {:>6} {:>6} {:>6} {:>7.0} {:>9.0} {:>10.0} {:>6.0} {:>8} {:>8} {:>6}",
                scenario.name,
                label,
                o.sweeps,
                o.floods,
                0,
                o.flood_ms as f64 / 1000.0,
                o.per_service[0] as f64 / 1000.0,
                o.per_service[1] as f64 / 1000.0,
                o.total as f64 / 1000.0,
                "",
                "",
                "both"
            );
        }
        for (label, f) in &runs {
            let total = f.down_s[0] + f.down_s[1];
            let ratio = |o: &optimum::Optimum| total / (o.total as f64 / 1000.0).max(1.0);
            let ready = match f.ready_at_end {
                [true, true] => "both",
                [true, false] => "text",
                [false, true] => "media",
                [false, false] => "none",
            };
            println!(
                "{:<10} {:<15} {:>6} {:>6} {:>6} {:>7.0} {:>9.0} {:>10.0} {:>6.0} {:>8.2} {:>8.2} {:>6}",
                scenario.name,
                label,
                f.sweeps,
                f.floods,
                f.raised,
                f.flood_s,
                f.down_s[0],
                f.down_s[1],
                total,
                ratio(&no_flood),
                ratio(&no_raise),
                ready
            );
        }
        let faults: Vec<(i64, preview::Fault)> = scenario
            .steps
            .iter()
            .filter_map(|(at, step)| {
                let f = match *step {
                    Step::Kill(s) => preview::Fault::Kill(s),
                    Step::CrashLoop(s) => preview::Fault::LoopStart(s),
                    Step::CrashLoopEnd(s) => preview::Fault::LoopEnd(s),
                    Step::Hang(s, secs) => preview::Fault::Hang(s, secs),
                    Step::ExternalSweep | Step::CacheMiss(_) => return None,
                };
                Some((at * 1000, f))
            })
            .collect();
        for (label, tolerance) in [("queue-preview", Some(30_000)), ("queue-prev-none", None)] {
            let p = preview::run(&rules, &faults, &fixed, tolerance);
            let total = (p.down_ms[0] + p.down_ms[1]) as f64 / 1000.0;
            println!(
                "{:<10} {:<15} {:>6} {:>6} {:>6} {:>7.0} {:>9.0} {:>10.0} {:>6.0} {:>8.2} {:>8.2} {:>6}",
                scenario.name,
                label,
                p.sweeps,
                p.floods,
                p.raised,
                p.flood_ms as f64 / 1000.0,
                p.down_ms[0] as f64 / 1000.0,
                p.down_ms[1] as f64 / 1000.0,
                total,
                total / (no_flood.total as f64 / 1000.0).max(1.0),
                total / (no_raise.total as f64 / 1000.0).max(1.0),
                "-"
            );
        }
        println!(
            "{:<10} (a clean start took {sweep_s:.0} model s here; the optima pay that)",
            ""
        );
    }
}
