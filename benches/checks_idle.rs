//! `cargo bench --bench checks_idle`: what the checks cost tend while nothing happens.
//!
//! Two emulated services (`tend sim` as send_text and send_media, real time scale) run under `tend up`
//! for a window of idle time (60 s; `CHECKS_BENCH_SECS` changes it), three times:
//! - with the shipped checks (`checks/telethon.toml`: health, cache, errors, port, resources) as shipped;
//! - with no checks at all, the baseline;
//! - with the shipped checks at a 1 s interval, to put a price on one check run.
//!
//! Reported: tend's CPU seconds over the window (utime + stime of the daemon; the checks run inside it)
//! and that as a percentage of one core, the check runs (from the persisted history) and tend's RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend::core::{ServiceState, Snapshot};

const TEND: &str = env!("CARGO_BIN_EXE_tend");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/checks/telethon.toml");

/// A running `tend up`, stopped (SIGTERM, which also saves the check history) on drop.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// How the checks are set up for one run.
#[derive(Clone, Copy, PartialEq)]
enum Checks {
    Shipped,
    None,
    EverySecond,
}

struct Figures {
    cpu_s: f64,
    window: Duration,
    check_runs: usize,
    rss_mib: f64,
}

fn wait(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sim(name: &str, port: u16) -> String {
    // The group the shipped `errors` check needs (its action is the group's flood recovery), with no
    // spacing; one account each: two start-up sweeps on one account within the flood window would
    // earn a flood wait, which is not idle time.
    format!(
        r#"
[services.{name}]
command = ["{TEND}", "sim", "--service", "{name}", "--port", "{port}", "--account", "{name}", "--state-dir", "sim"]
port = {port}
group = "telegram"
start_grace = "1s"
"#
    )
}

/// The shipped check file with every interval set to 1 s (and a timeout below it).
fn every_second(shipped: &str) -> String {
    shipped
        .lines()
        .map(|line| {
            if line.starts_with("interval = ") {
                "interval = \"1s\"\ntimeout = \"900ms\"".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn status(config: &Path) -> Option<Snapshot> {
    let out = Command::new(TEND)
        .arg("-c")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// `cache_size` of a service's /stats, over a plain HTTP/1.1 exchange.
fn cache_size(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let body = reply.split_once("\r\n\r\n")?.1;
    let doc: serde_json::Value = serde_json::from_str(body).ok()?;
    doc["cache_size"].as_u64()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn run(checks: Checks, window: Duration) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let checks_dir: PathBuf = dir.path().join("checks");
    std::fs::create_dir_all(&checks_dir).unwrap();
    let shipped = std::fs::read_to_string(SHIPPED).unwrap();
    match checks {
        Checks::Shipped => std::fs::write(checks_dir.join("telethon.toml"), shipped).unwrap(),
        Checks::EverySecond => {
            std::fs::write(checks_dir.join("telethon.toml"), every_second(&shipped)).unwrap()
        }
        Checks::None => {}
    }
    let (text, media) = (free_port(), free_port());
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\nchecks_dir = \"checks\"\n\n[groups.telegram]\n{}{}",
            sim("send_text", text),
            sim("send_media", media)
        ),
    )
    .unwrap();
    let child = Command::new(TEND)
        .arg("-c")
        .arg(&config)
        .arg("up")
        .env("TEND_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon { child };
    let pid = daemon.child.id();
    wait(Duration::from_secs(30), "both services running", || {
        status(&config).is_some_and(|s| s.services.iter().all(|s| s.state == ServiceState::Running))
    });
    // The start-up sweeps (40 pages of 50 ms each) are work, not idle time: wait them out.
    wait(Duration::from_secs(30), "both dialog caches warm", || {
        [text, media]
            .iter()
            .all(|p| cache_size(*p).is_some_and(|n| n > 0))
    });
    std::thread::sleep(Duration::from_secs(1));
    let started_ms = tend::clock::Clock::new().now_ms();
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    let cpu_s = cpu_seconds(pid) - before;
    let ended_ms = tend::clock::Clock::new().now_ms();
    let rss = rss_mib(pid);
    drop(daemon);
    let check_runs = check_runs(dir.path(), started_ms, ended_ms);
    Figures {
        cpu_s,
        window,
        check_runs,
        rss_mib: rss,
    }
}

/// Results recorded in the persisted check history between two moments.
fn check_runs(dir: &Path, from_ms: i64, to_ms: i64) -> usize {
    let Ok(text) = std::fs::read_to_string(dir.join("state/check-history.json")) else {
        return 0;
    };
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    doc["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
        .filter(|p| {
            p["at_ms"]
                .as_i64()
                .is_some_and(|t| (from_ms..=to_ms).contains(&t))
        })
        .count()
}

fn line(label: &str, f: &Figures) -> String {
    format!(
        "  {label:<32} tend used {:.2} CPU s in {} s = {:.3}% of one core; {} check runs; RSS {:.1} MiB",
        f.cpu_s,
        f.window.as_secs(),
        100.0 * f.cpu_s / f.window.as_secs_f64(),
        f.check_runs,
        f.rss_mib
    )
}

fn main() {
    // `cargo test --benches` runs benches without --bench; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("checks_idle benchmark: run with `cargo bench --bench checks_idle` (CHECKS_BENCH_SECS=60 sets the idle window)");
        println!("log-pattern throughput: run `cargo bench --bench log_patterns`");
        return;
    }
    let secs: u64 = std::env::var("CHECKS_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let window = Duration::from_secs(secs);
    println!(
        "checks_idle: tend up with 2 emulated services (send_text, send_media) x the shipped checks \
         (checks/telethon.toml: health, cache, errors, port, resources), {secs} s of idle time each"
    );
    let shipped = run(Checks::Shipped, window);
    println!("{}", line("shipped checks, as shipped:", &shipped));
    let none = run(Checks::None, window);
    println!("{}", line("no checks (baseline):", &none));
    let fast = run(Checks::EverySecond, window);
    println!("{}", line("shipped checks every 1 s:", &fast));
    if fast.check_runs > 0 {
        // CPU time is counted in clock ticks (10 ms): at the shipped intervals the checks' share is
        // below that resolution, so it is estimated from the price of one run.
        let per_run_ms = 1000.0 * (fast.cpu_s - none.cpu_s).max(0.0) / fast.check_runs as f64;
        let shipped_ms = per_run_ms * shipped.check_runs as f64;
        println!(
            "  one check run costs about {per_run_ms:.2} ms of CPU ((every-1-s CPU - baseline CPU) / runs);              the shipped checks' {} runs: about {shipped_ms:.0} ms = {:.4}% of one core",
            shipped.check_runs,
            100.0 * shipped_ms / 1000.0 / shipped.window.as_secs_f64()
        );
    }
    println!("log-pattern throughput: run `cargo bench --bench log_patterns`");
}
