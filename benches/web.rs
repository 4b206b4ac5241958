//! `cargo bench --bench web`: figures for the status page.
//!
//! - latency of `/api/status` (logged in) and `/` under a steady load from this (second) process:
//!   `TEND_BENCH_RATE` requests/s (default 1000) for `TEND_BENCH_SECS` seconds (default 30), over 8
//!   keep-alive connections, paced (open loop per connection); p50/p95/p99/max and the rate achieved;
//! - the time to search `TEND_BENCH_LOG_MB` (default 500) MB of logs (five rotated files) for a string
//!   that occurs once, near the oldest end, and for an error type, paging through the whole history.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEND: &str = env!("CARGO_BIN_EXE_tend");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream),
            port,
        }
    }

    /// Sends a request and reads the whole response; returns (status, headers, body).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            self.port,
            body.len()
        );
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }
}

fn hash(password: &str) -> String {
    let mut child = Command::new(TEND)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn status_under_load(dir: &Path) {
    let rate = env_or("TEND_BENCH_RATE", 1000);
    let secs = env_or("TEND_BENCH_SECS", 30);
    let port = free_port();
    let sleeper = |name: &str| {
        format!("[services.{name}]\ncommand = \"sleep 100000\"\nstart_grace = \"50ms\"\n")
    };
    let config = format!(
        "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{}{}\
         [web]\nlisten = \"127.0.0.1:{port}\"\n[[web.users]]\nname = \"bench\"\n\
         password_hash = \"{}\"\nrole = \"viewer\"\n",
        sleeper("send_text"),
        sleeper("send_media"),
        hash("bench-pass")
    );
    std::fs::write(dir.join("supervisor.toml"), config).unwrap();
    let _daemon = Daemon(
        Command::new(TEND)
            .arg("-c")
            .arg(dir.join("supervisor.toml"))
            .arg("up")
            .env("TEND_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the status page never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut login = Conn::open(port);
    let (status, head, _) = login.request(
        "POST",
        "/api/login",
        "Content-Type: application/json\r\n",
        r#"{"user":"bench","password":"bench-pass"}"#,
    );
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();

    let connections = 8u64;
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let cookie = cookie.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(port);
                let mut status_ms = Vec::new();
                let mut page_ms = Vec::new();
                let mut errors = 0u64;
                // Staggered start so the connections do not fire in lockstep.
                let mut next = Instant::now() + interval.mul_f64(i as f64 / connections as f64);
                let mut n = 0u64;
                while next < end {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = Instant::now();
                    let page = n % 10 == 9;
                    let (status, _, _) = if page {
                        conn.request("GET", "/", "", "")
                    } else {
                        conn.request("GET", "/api/status", &format!("Cookie: {cookie}\r\n"), "")
                    };
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    if status != 200 {
                        errors += 1;
                    }
                    if page {
                        page_ms.push(ms);
                    } else {
                        status_ms.push(ms);
                    }
                    n += 1;
                    next += interval;
                }
                (status_ms, page_ms, errors)
            })
        })
        .collect();
    let mut status_ms = Vec::new();
    let mut page_ms = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (s, p, e) = w.join().unwrap();
        status_ms.extend(s);
        page_ms.extend(p);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = status_ms.len() + page_ms.len();
    status_ms.sort_by(f64::total_cmp);
    page_ms.sort_by(f64::total_cmp);
    println!(
        "load: {total} requests in {elapsed:.1} s = {:.0} req/s (target {rate}), {errors} non-200",
        total as f64 / elapsed
    );
    for (name, v) in [("/api/status", &status_ms), ("/ (page)", &page_ms)] {
        println!(
            "  {name:12} n={:6} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.95),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
}

fn log_search(dir: &Path) {
    use tend::web::logs::{search, LogQuery};
    let mb = env_or("TEND_BENCH_LOG_MB", 500);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let files = 5u64;
    let per_file = mb * 1024 * 1024 / files;
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let started = Instant::now();
    let mut i: i64 = 0;
    let mut total = 0u64;
    // Oldest first: send_text.log.5 ... send_text.log.1, then send_text.log.
    for index in (0..files).rev() {
        let name = if index == 0 {
            "send_text.log".to_string()
        } else {
            format!("send_text.log.{index}")
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(logs.join(name)).unwrap());
        let mut written = 0u64;
        while written < per_file {
            let ts = (base + chrono::Duration::milliseconds(i * 7))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let line = if i == 1000 {
                format!("{ts} err WARNING:send_text_bot:the-one-needle-line\n")
            } else if i % 5000 == 0 {
                format!("{ts} err INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait\n")
            } else {
                format!("{ts} out INFO:send_text_bot:POST /send_text 200 chat=-100{:010} message_id={i}\n", i * 7919 % 10_000_000_000)
            };
            out.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
            i += 1;
        }
        total += written;
    }
    println!(
        "log search: generated {:.0} MB ({i} lines) in {:.1} s",
        total as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let patterns = tend::checks::classify::PatternSet::shipped();
    let redactor = tend::web::redact::Redactor::default();
    for (what, text, kind) in [
        ("text search, 1 hit", Some("the-one-needle-line"), None),
        ("error type FloodSleep", None, Some("FloodSleep")),
    ] {
        let mut q = LogQuery {
            services: vec!["send_text".into()],
            text: text.map(str::to_string),
            error_type: kind.map(str::to_string),
            limit: 5000,
            ..LogQuery::default()
        };
        let t = Instant::now();
        let (mut hits, mut pages, mut scanned) = (0, 0, 0u64);
        loop {
            let page = search(&logs, &q, &patterns, &redactor).unwrap();
            hits += page.lines.len();
            pages += 1;
            scanned += page.scanned_bytes;
            match page.cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "  {what:24} {hits} hits, {pages} requests, {:.0} MB read in {s:.2} s = {:.0} MB/s",
            scanned as f64 / 1048576.0,
            scanned as f64 / 1048576.0 / s
        );
    }
    // The first page of an unfiltered view: what the page shows on load.
    let q = LogQuery {
        services: vec!["send_text".into()],
        limit: 200,
        ..LogQuery::default()
    };
    let t = Instant::now();
    let page = search(&logs, &q, &patterns, &redactor).unwrap();
    println!(
        "  first page (200 newest lines): {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(page.lines.len(), 200);
}

fn main() {
    // `cargo test --benches` runs benches without --bench; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("web benchmarks: run with `cargo bench --bench web`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    status_under_load(dir.path());
    let dir = tempfile::tempdir().unwrap();
    log_search(dir.path());
}
