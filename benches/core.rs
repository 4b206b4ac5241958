//! `cargo bench --bench core`: figures for the supervisor core, measured on real processes.
//!
//! - restart latency: a service that exits at once, zero backoff; time from its last line before exit to
//!   the first line of the next run (bash's $EPOCHREALTIME, no fork), median and p95;
//! - log capture throughput: N lines through tend into the log file vs. `sh -c '… > file'`;
//! - idle RSS and CPU of `tend up` with the two emulated services of the shipped config;
//! - `tend status` latency: one request on the control socket, and the whole CLI process;
//! - `tend reexec`: the whole switch (preflight, hand-over, exec, adoption) as the CLI sees it, and the
//!   longest a ping on the control socket waited meanwhile, with two services logging continuously.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEND: &str = env!("CARGO_BIN_EXE_tend");

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn up(dir: &Path, body: &str) -> Daemon {
    std::fs::write(
        dir.join("supervisor.toml"),
        format!("[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{body}"),
    )
    .unwrap();
    let child = Command::new(TEND)
        .arg("-c")
        .arg(dir.join("supervisor.toml"))
        .arg("up")
        .env("TEND_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.join("state/tend.sock");
    wait(Duration::from_secs(20), || {
        UnixStream::connect(&socket).is_ok()
    });
    Daemon { child }
}

fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "benchmark condition timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn restart_latency() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let body = format!(
        r#"
[services.blink]
command = ["bash", "-c", "echo \"s $EPOCHREALTIME\" >> {m}; echo \"e $EPOCHREALTIME\" >> {m}; exit 1"]
start_grace = "0s"
[services.blink.backoff]
initial = "0s"
max = "0s"
give_up_after = 0
"#,
        m = marks.display()
    );
    let runs = 300;
    let _daemon = up(dir.path(), &body);
    wait(Duration::from_secs(60), || {
        std::fs::read_to_string(&marks)
            .map(|t| t.lines().count() >= runs * 2)
            .unwrap_or(false)
    });
    drop(_daemon);
    let text = std::fs::read_to_string(&marks).unwrap();
    let stamps: Vec<(char, f64)> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.chars().next()?, v.replace(',', ".").parse().ok()?))
        })
        .collect();
    let mut gaps: Vec<f64> = stamps
        .windows(2)
        .filter(|w| w[0].0 == 'e' && w[1].0 == 's')
        .map(|w| (w[1].1 - w[0].1) * 1000.0)
        .collect();
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "restart latency (exit -> next run, zero backoff, {} restarts): median {:.2} ms, p95 {:.2} ms",
        gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.95)
    );
}

fn capture_throughput() {
    let lines = 2_000_000usize;
    let line =
        "2026-02-20 10:00:00,123 - send_text_bot - INFO - a typical log line of moderate length";
    let producer = format!("yes '{line}' | head -n {lines}");
    // Baseline: straight into a file.
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{producer} > {}",
            dir.path().join("direct").display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let direct = start.elapsed();
    let bytes = std::fs::metadata(dir.path().join("direct")).unwrap().len() as f64;

    // Through tend: from the spawn marker to the last line on disk.
    let body = format!(
        "[services.burst]\ncommand = [\"sh\", \"-c\", \"{producer}; exec sleep 1000\"]\nstart_grace = \"0s\"\nmax_log_size = \"1GiB\"\n"
    );
    let start = Instant::now();
    let _daemon = up(dir.path(), &body);
    let log = dir.path().join("logs/burst.log");
    let mut seen = 0usize;
    let mut offset = 0u64;
    let mut pending = Vec::new();
    wait(Duration::from_secs(300), || {
        // Count lines incrementally, without rereading the file.
        let Ok(mut f) = std::fs::File::open(&log) else {
            return false;
        };
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(offset)).unwrap();
        pending.clear();
        f.read_to_end(&mut pending).unwrap();
        offset += pending.len() as u64;
        seen += pending.iter().filter(|b| **b == b'\n').count();
        seen > lines
    });
    let through = start.elapsed();
    println!(
        "log capture: {:.0} MB/s through tend vs {:.0} MB/s straight to a file ({:.0}% of direct; {} lines, includes tend start-up)",
        bytes / through.as_secs_f64() / 1e6,
        bytes / direct.as_secs_f64() / 1e6,
        100.0 * direct.as_secs_f64() / through.as_secs_f64(),
        lines
    );
}

fn idle_cost_and_status_latency() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
[services.send_text]
command = "tend sim --service send_text --port 0 --account main --state-dir state/sim"
start_grace = "1s"
[services.send_media]
command = "tend sim --service send_media --port 0 --account main --state-dir state/sim"
start_grace = "1s"
"#;
    let daemon = up(dir.path(), body);
    let pid = daemon.child.id();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before = cpu(pid);
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let used = (cpu(pid) - before) as f64 / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap();
    println!(
        "idle tend up with 2 services: RSS {:.1} MB, CPU {:.3}% over {}s",
        rss / 1024.0,
        100.0 * used / window.as_secs_f64(),
        window.as_secs()
    );

    let socket = dir.path().join("state/tend.sock");
    let mut times = Vec::new();
    for _ in 0..500 {
        let start = Instant::now();
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        assert!(reply.contains("\"reply\":\"status\""));
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "status request on the socket (connect + request + reply, 500x): median {:.3} ms, p95 {:.3} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.95)
    );
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let out = Command::new(TEND)
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .output()
            .unwrap();
        assert!(out.status.success());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "`tend status` CLI process (50x): median {:.2} ms, p95 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.95)
    );
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("core benchmarks: run with `cargo bench --bench core`");
        return;
    }
    restart_latency();
    capture_throughput();
    idle_cost_and_status_latency();
    reexec_switch();
}

fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    if stream.write_all(b"{\"v\":1,\"cmd\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("pong")
}

fn reexec_switch() {
    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str| {
        format!(
            "[services.{name}]\ncommand = [\"sh\", \"-c\", \"while :; do echo {name} line; sleep 0.001; done\"]\nstart_grace = \"0s\"\n"
        )
    };
    let _daemon = up(dir.path(), &format!("{}{}", service("a"), service("b")));
    let socket = dir.path().join("state/tend.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let began = Instant::now();
                while !ping(&socket) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                worst = worst.max(began.elapsed());
            }
            worst
        })
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let out = Command::new(TEND)
            .arg("-c")
            .arg(dir.path().join("supervisor.toml"))
            .arg("reexec")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let worst = prober.join().unwrap();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "`tend reexec` with 2 logging services (20x): median {:.1} ms, p95 {:.1} ms; longest ping wait during the switches {:.1} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        worst.as_secs_f64() * 1000.0
    );
}
