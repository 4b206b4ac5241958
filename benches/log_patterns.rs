//! `cargo bench --bench log_patterns`: throughput of the log analysis engine with the shipped patterns.
//!
//! Writes ~200 MB (`LOG_BENCH_MB` overrides) of realistic mixed service output to a temp file: mostly INFO
//! noise, PersistentTimestamp warnings, "Cannot find chat" pairs, flood sleeps, logger.exception and
//! thread-crash tracebacks. Then it streams the file through the pipeline tend runs per service: line ->
//! `LogLine` -> `RecordAssembler` -> `PatternSet::classify` -> `ErrorStats::record`, and prints MB/s and
//! records/s, next to a read-only pass so the engine's own share is visible.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it only prints how to run it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use tend::checks::classify::PatternSet;
use tend::checks::records::{RecordAssembler, RecordLimits};
use tend::checks::stats::ErrorStats;
use tend::logs::{LogLine, Stream};

const T0_MS: i64 = 1_771_581_600_000;

/// xorshift64*: deterministic and dependency-free, so every run measures the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MISSING: [&str; 5] = [
    "-1003519196381",
    "-1003772791180",
    "-1003701558914",
    "-1003850591916",
    "-1003790384176",
];

const TRACEBACK_FRAMES: &str = "Traceback (most recent call last):
  File \"/opt/send_text/send_text.py\", line 301, in send_text
    result = run_coro(_send(chat, text, parse_mode, disable_preview, reply_to), timeout=60)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File \"/opt/send_text/send_text.py\", line 92, in run_coro
    return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File \"/usr/lib/python3.11/concurrent/futures/_base.py\", line 456, in result
    return self.__get_result()
           ^^^^^^^^^^^^^^^^^^^
  File \"/opt/send_text/venv/lib/python3.11/site-packages/telethon/client/users.py\", line 92, in _call
    result = await future
             ^^^^^^^^^^^^
";

fn write_record(out: &mut impl Write, rng: &mut Rng, i: u64) -> std::io::Result<()> {
    let chat = MISSING[rng.below(MISSING.len() as u64) as usize];
    let roll = rng.below(1000);
    match roll {
        0..=449 => writeln!(
            out,
            "INFO:send_media_webhook:[send_media] CT=application/json RAW={{\"user_id\": -100{}, \"files\": [\"https://cdn.example.com/p/{}.jpg\"], \"caption\": \"Заявка №{} от клиента, подробности по ссылке\"}}",
            3_000_000_000 + rng.below(999_999_999),
            rng.below(1_000_000),
            i
        ),
        450..=649 => writeln!(
            out,
            "INFO:send_text_bot:send_text ok chat=-100{} message_id={} chat_type=group client_tagged_id={} text_len={}",
            3_000_000_000 + rng.below(999_999_999),
            rng.below(10_000_000),
            rng.below(9_000_000_000),
            rng.below(4096)
        ),
        650..=719 => writeln!(
            out,
            "[2026-02-20 10:{:02}:{:02} +0000] [1234] [INFO] 127.0.0.1 - - \"POST /send_text HTTP/1.1\" 200 {} \"-\" \"make.com/1.0\"",
            rng.below(60),
            rng.below(60),
            rng.below(400)
        ),
        720..=779 => writeln!(
            out,
            "INFO:send_text_bot:Mini cache refresh: added/updated 100 dialogs, total cache: {}",
            3900 + rng.below(100)
        ),
        780..=799 => writeln!(
            out,
            "INFO:telethon.network.mtprotosender:Connection to 149.154.167.51:443/TcpFull complete!"
        ),
        800..=879 => writeln!(
            out,
            "WARNING:telethon.client.users:Telegram is having internal issues PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)"
        ),
        880..=929 => writeln!(
            out,
            "WARNING:send_text_bot:Cannot find chat {chat} in cache (3978 entries) even after mini-refresh.\n\
             ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат {chat} в диалогах"
        ),
        930..=949 => writeln!(
            out,
            "INFO:telethon.client.users:Sleeping for {}s (0:00:{0:02}) on GetDialogsRequest flood wait",
            15 + rng.below(15)
        ),
        950..=969 => writeln!(
            out,
            "WARNING:send_text_bot:slow response from Telegram: {} ms for SendMessageRequest",
            rng.below(30_000)
        ),
        970..=989 => write!(
            out,
            "ERROR:send_text_bot:Unhandled error in /send_text\n{TRACEBACK_FRAMES}\
             telethon.errors.rpcerrorlist.ChatWriteForbiddenError: You can't write in this chat (caused by SendMessageRequest)\n"
        ),
        990..=994 => write!(
            out,
            "Exception in thread telethon-loop:\n{TRACEBACK_FRAMES}\
             telethon.errors.rpcerrorlist.FloodWaitError: A wait of {} seconds is required (caused by GetDialogsRequest)\n",
            61 + rng.below(2000)
        ),
        _ => writeln!(
            out,
            "ERROR:send_text_bot:send_text failed: TimeoutError: "
        ),
    }
}

fn generate(path: &Path, target_bytes: u64) -> std::io::Result<u64> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut i = 0;
    loop {
        write_record(&mut out, &mut rng, i)?;
        i += 1;
        if i % 4096 == 0 && out.get_ref().metadata()?.len() >= target_bytes {
            break;
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Streams the file as tend's capture would hand it over: one `LogLine` per line, 1 ms apart.
fn for_each_line(path: &Path, mut f: impl FnMut(LogLine)) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut buf = String::new();
    let mut ms = T0_MS;
    loop {
        buf.clear();
        if reader.read_line(&mut buf)? == 0 {
            return Ok(());
        }
        ms += 1;
        let ts = Utc
            .timestamp_millis_opt(ms)
            .single()
            .expect("bench timestamps are in range");
        f(LogLine {
            ts,
            stream: Stream::Stderr,
            text: buf.trim_end_matches('\n').to_owned(),
        });
    }
}

fn main() -> std::io::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "log_patterns benchmark: run with `cargo bench --bench log_patterns` (LOG_BENCH_MB=200 sets the size)"
        );
        return Ok(());
    }
    let mb: u64 = std::env::var("LOG_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("service.log");

    let started = Instant::now();
    let bytes = generate(&path, mb * 1_000_000)?;
    let size_mb = bytes as f64 / 1e6;
    println!(
        "generated {size_mb:.0} MB of mixed service output in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: reading and building LogLines only (the part the log module does anyway).
    let started = Instant::now();
    let mut lines = 0u64;
    for_each_line(&path, |_| lines += 1)?;
    let read_s = started.elapsed().as_secs_f64();

    // Record grouping alone, to split the engine's cost between assembling and classifying.
    let started = Instant::now();
    let mut asm = RecordAssembler::new(RecordLimits::default());
    let mut assembled = 0u64;
    for_each_line(&path, |line| {
        assembled += u64::from(asm.push(&line).is_some())
    })?;
    let assemble_s = started.elapsed().as_secs_f64();

    let set = PatternSet::shipped();
    let mut asm = RecordAssembler::new(RecordLimits::default());
    let mut stats = ErrorStats::new(5, 24 * 3_600_000);
    let mut records = 0u64;
    let mut classified = 0u64;
    let mut handle = |record: tend::checks::records::Record| {
        records += 1;
        if let Some(c) = set.classify(&record) {
            classified += 1;
            stats.record(&c, &record.text(), record.first_ts.timestamp_millis());
        }
    };
    let started = Instant::now();
    for_each_line(&path, |line| {
        if let Some(r) = asm.push(&line) {
            handle(r);
        }
    })?;
    if let Some(r) = asm.flush() {
        handle(r);
    }
    let total_s = started.elapsed().as_secs_f64();
    let engine_s = (total_s - read_s).max(1e-9);

    println!("{lines} lines -> {records} records, {classified} classified");
    println!(
        "read only:                   {:8.1} MB/s ({read_s:.2} s)",
        size_mb / read_s
    );
    println!(
        "read + assemble:             {:8.1} MB/s, {:.0} records/s ({assemble_s:.2} s)",
        size_mb / assemble_s,
        assembled as f64 / assemble_s
    );
    println!(
        "read + assemble + classify:  {:8.1} MB/s, {:.0} records/s ({total_s:.2} s)",
        size_mb / total_s,
        records as f64 / total_s
    );
    println!(
        "engine alone (difference):   {:8.1} MB/s, {:.0} records/s",
        size_mb / engine_s,
        records as f64 / engine_s
    );
    let counts: BTreeMap<String, u64> = stats
        .summary(T0_MS)
        .into_iter()
        .map(|s| (s.name, s.total_since_tend_start))
        .collect();
    println!("per type: {counts:?}");
    Ok(())
}
