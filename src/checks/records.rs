//! Log lines -> records: groups the physical lines of one stream into logical log records, so a
//! multi-line traceback is seen (and counted) once.
//!
//! Owns the record-start rules of the Python services (TELETHON.md §2): a record starts at a `logging`
//! head line (`LEVEL:name:`, the asctime form, the `[LEVEL/asctime]` form), a gunicorn line, or
//! `Exception in thread …`; every other line (traceback frames, blank lines, chain markers, the final
//! `pkg.Exc: msg`) continues the current record. A journald prefix is stripped first. Lines that fit no
//! known head (plain `print` output, other programs) form records of their own unless they look like a
//! continuation, so an unformatted service does not collapse into one giant record.
//!
//! Pure logic over explicit time (`LogLine::ts`, `now_ms`): no I/O, no timers, no classification.
//! One [`RecordAssembler`] per service per stream; stdout and stderr are never mixed.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::logs::{LogLine, Stream};

const TRACEBACK: &str = "Traceback (most recent call last):";
const CHAIN_MARKERS: [&str; 2] = [
    "During handling of the above exception",
    "The above exception was the direct cause",
];

/// `journalctl -o short-iso|short-precise|short` prefixes: `2026-02-20T10:00:00+0000 host python3[1234]: `.
static JOURNALD_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
        r"|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)?)",
        // An empty message may lose the space after the colon to whitespace trimming.
        r" \S+ [^\s\[\]:]+(?:\[\d+\])?:(?: |$)",
    ))
    .expect("journald prefix regex is a constant")
});

/// The heads that start a record (TELETHON.md §2, plus the `[%(levelname) 5s/%(asctime)s]` form).
static RECORD_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.-]+:",
        r"|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ",
        r"|\[ *(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)/\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\] ",
        r"|\[\d{4}-\d{2}-\d{2} [\d:]+ [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ",
        r"|Exception in thread )",
    ))
    .expect("record start regex is a constant")
});

/// Removes a journald prefix (`journalctl -o short-iso` and the classic `short` forms), if any.
///
/// Under journald every physical line carries the prefix, so continuation lines are stripped too.
pub fn strip_journald_prefix(line: &str) -> &str {
    let b = line.as_bytes();
    // Cheap shape test first: most lines have no prefix and must not pay for a regex search.
    let maybe = b.len() > 16
        && ((b[0].is_ascii_digit() && b[10] == b'T')
            || (b[0].is_ascii_uppercase() && b[3] == b' '));
    if !maybe {
        return line;
    }
    match JOURNALD_PREFIX.find(line) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

/// Does this (prefix-stripped) line start a new record?
pub fn starts_record(line: &str) -> bool {
    RECORD_START.is_match(line)
}

/// Bounds on one record, and when a quiet record counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLimits {
    /// Lines kept per record; beyond it the last kept line is replaced by the newest one.
    pub max_lines: usize,
    /// Bytes of text kept per record (line breaks not counted).
    pub max_bytes: usize,
    /// A record with no new line for this long is complete.
    pub idle_ms: Millis,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_lines: 200,
            max_bytes: 64 * 1024,
            idle_ms: 500,
        }
    }
}

/// One logical log record: a head line and its continuation lines, journald prefixes removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub first_ts: DateTime<Utc>,
    pub stream: Stream,
    /// Never empty.
    pub lines: Vec<String>,
    /// Lines were dropped or cut to respect [`RecordLimits`]. The first lines and the newest line are
    /// kept, so a long traceback still ends with its exception line.
    pub truncated: bool,
}

impl Record {
    /// The first line.
    pub fn head(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// All lines joined by `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The line that classifies the record: for a traceback, its final `pkg.Exc: msg` line; otherwise the head.
    ///
    /// In a chained traceback Python prints the original exception first and the one that escaped last,
    /// so the exception line after the *last* `Traceback` header is the one that decides.
    pub fn key_line(&self) -> &str {
        let Some(tb) = self.lines.iter().rposition(|l| l.starts_with(TRACEBACK)) else {
            return self.head();
        };
        // When the middle was dropped, the kept newest line is the best witness of how it ended.
        if self.truncated {
            if let Some(last) = self.lines.last().filter(|l| is_exception_line(l)) {
                if self.lines.len() - 1 > tb {
                    return last;
                }
            }
        }
        self.lines[tb + 1..]
            .iter()
            .find(|l| is_exception_line(l))
            .map(String::as_str)
            .unwrap_or_else(|| self.head())
    }
}

/// A traceback's exception line is its first non-indented line that is not a header or chain marker.
fn is_exception_line(line: &str) -> bool {
    !line.trim().is_empty()
        && !line.starts_with([' ', '\t'])
        && !line.starts_with(TRACEBACK)
        && !CHAIN_MARKERS.iter().any(|m| line.starts_with(m))
}

/// Lines that continue a record even when its head was not a recognised log head.
fn looks_like_continuation(line: &str) -> bool {
    line.trim().is_empty()
        || line.starts_with([' ', '\t'])
        || line.starts_with(TRACEBACK)
        || CHAIN_MARKERS.iter().any(|m| line.starts_with(m))
}

/// The record being built.
#[derive(Debug)]
struct Pending {
    record: Record,
    /// Bytes of text in `record.lines`.
    bytes: usize,
    /// Time of the newest line, for the idle rule.
    last_ms: Millis,
    /// The head matched a known log format: every non-head line belongs to it.
    headed: bool,
    /// A `Traceback` header was seen and its exception line was not yet.
    in_traceback: bool,
}

impl Pending {
    fn start(text: &str, line: &LogLine, headed: bool, limits: &RecordLimits) -> Pending {
        let mut record = Record {
            first_ts: line.ts,
            stream: line.stream,
            lines: Vec::new(),
            truncated: false,
        };
        let kept = cut_to(text, limits.max_bytes.max(1));
        record.truncated = kept.len() < text.len();
        record.lines.push(kept.to_owned());
        Pending {
            bytes: kept.len(),
            record,
            last_ms: line.ts.timestamp_millis(),
            headed,
            in_traceback: text.starts_with(TRACEBACK),
        }
    }

    fn accepts(&self, text: &str) -> bool {
        self.headed || self.in_traceback || looks_like_continuation(text)
    }

    fn append(&mut self, text: &str, at_ms: Millis, limits: &RecordLimits) {
        self.last_ms = at_ms;
        if text.starts_with(TRACEBACK) {
            self.in_traceback = true;
        } else if self.in_traceback && is_exception_line(text) {
            self.in_traceback = false;
        }
        let lines = &mut self.record.lines;
        if lines.len() < limits.max_lines.max(2) && self.bytes + text.len() <= limits.max_bytes {
            self.bytes += text.len();
            lines.push(text.to_owned());
            return;
        }
        self.record.truncated = true;
        if text.trim().is_empty() {
            return;
        }
        // Over a cap: keep the first lines and let the newest line take the last slot (never the
        // head's), so the record still ends the way the output did: the exception line of a long
        // traceback survives.
        let replace = lines.len() >= 2;
        let tail_len = if replace {
            lines.last().map_or(0, String::len)
        } else {
            0
        };
        let room = limits.max_bytes.saturating_sub(self.bytes - tail_len);
        if room == 0 {
            return;
        }
        let kept = cut_to(text, room).to_owned();
        self.bytes = self.bytes - tail_len + kept.len();
        match lines.last_mut() {
            Some(last) if replace => *last = kept,
            _ => lines.push(kept),
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn cut_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Groups one stream's lines into [`Record`]s. One per service per stream.
#[derive(Debug)]
pub struct RecordAssembler {
    limits: RecordLimits,
    pending: Option<Pending>,
}

impl RecordAssembler {
    pub fn new(limits: RecordLimits) -> Self {
        RecordAssembler {
            limits,
            pending: None,
        }
    }

    /// Feeds one line; returns records completed by it (the previous record when this line starts a new one).
    ///
    /// A line arriving `idle_ms` or more after the previous one also starts a new record, so where a
    /// record ends depends on the lines' timestamps only, not on when [`Self::flush_idle`] happens to run.
    pub fn push(&mut self, line: &LogLine) -> Option<Record> {
        let text = strip_journald_prefix(line.text.trim_end_matches(['\r', '\n']));
        let at_ms = line.ts.timestamp_millis();
        let head = starts_record(text);
        if let Some(p) = &mut self.pending {
            let idle = at_ms.saturating_sub(p.last_ms) >= self.limits.idle_ms;
            if !head && !idle && p.accepts(text) {
                p.append(text, at_ms, &self.limits);
                return None;
            }
        }
        let done = self.pending.take().map(|p| p.record);
        // A stray blank line between records is not a record.
        if !text.trim().is_empty() {
            self.pending = Some(Pending::start(text, line, head, &self.limits));
        }
        done
    }

    /// When [`Self::flush_idle`] would complete the pending record if nothing arrives meanwhile; `None`
    /// while nothing is pending (so an idle service costs no timer at all).
    pub fn idle_deadline(&self) -> Option<Millis> {
        self.pending
            .as_ref()
            .map(|p| p.last_ms.saturating_add(self.limits.idle_ms))
    }

    /// Completes the pending record if nothing arrived for idle_ms (call on a timer).
    pub fn flush_idle(&mut self, now_ms: Millis) -> Option<Record> {
        let quiet = self
            .pending
            .as_ref()
            .is_some_and(|p| now_ms.saturating_sub(p.last_ms) >= self.limits.idle_ms);
        if quiet {
            self.flush()
        } else {
            None
        }
    }

    /// Completes the pending record now (end of stream, service exit).
    pub fn flush(&mut self) -> Option<Record> {
        self.pending.take().map(|p| p.record)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const T0: Millis = 1_771_581_600_000; // 2026-02-20T10:00:00Z

    fn line_at(ms: Millis, text: &str) -> LogLine {
        LogLine {
            ts: Utc.timestamp_millis_opt(ms).single().unwrap(),
            stream: Stream::Stderr,
            text: text.to_owned(),
        }
    }

    /// Feeds the lines 1 ms apart and flushes at the end.
    fn assemble_with(limits: RecordLimits, text: &str) -> Vec<Record> {
        let mut asm = RecordAssembler::new(limits);
        let mut out: Vec<Record> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| asm.push(&line_at(T0 + i as Millis, l)))
            .collect();
        out.extend(asm.flush());
        out
    }

    fn assemble(text: &str) -> Vec<Record> {
        assemble_with(RecordLimits::default(), text)
    }

    fn heads(records: &[Record]) -> Vec<&str> {
        records.iter().map(Record::head).collect()
    }

    #[test]
    fn journald_prefixes_are_stripped() {
        let cases: &[(&str, &str)] = &[
            (
                "2026-02-20T10:00:00+0000 host python3[1234]: INFO:send_text_bot:hi",
                "INFO:send_text_bot:hi",
            ),
            (
                "2026-02-20T10:00:00.123456+00:00 vps-1 gunicorn[88]: [2026-02-20 10:00:00 +0000] [88] [INFO] x",
                "[2026-02-20 10:00:00 +0000] [88] [INFO] x",
            ),
            (
                "Feb 20 10:00:00 host python3[1234]:   File \"/app/send_text.py\", line 9, in f",
                "  File \"/app/send_text.py\", line 9, in f",
            ),
            ("Feb  2 10:00:00 host send_text: Traceback", "Traceback"),
            ("2026-02-20T10:00:00+0000 host python3[1234]: ", ""),
            ("2026-02-20T10:00:00+0000 host python3[1234]:", ""),
            ("INFO:send_text_bot:no prefix", "INFO:send_text_bot:no prefix"),
            (
                "2026-02-20 10:00:00,123 - send_text_bot - WARNING - asctime is no journald prefix",
                "2026-02-20 10:00:00,123 - send_text_bot - WARNING - asctime is no journald prefix",
            ),
            ("The above exception was the direct cause", "The above exception was the direct cause"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_journald_prefix(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn record_starts_follow_the_python_and_gunicorn_formats() {
        let cases: &[(&str, bool)] = &[
            ("INFO:send_text_bot:Telethon client started, dialog cache warmed up", true),
            ("WARNING:telethon.client.users:Telegram is having internal issues", true),
            ("ERROR:asyncio:Task exception was never retrieved", true),
            ("CRITICAL:root:boom", true),
            ("DEBUG:telethon.network.mtprotosender:x", true),
            ("2026-02-20 10:00:00,123 - send_text_bot - WARNING - x", true),
            ("[WARNING/2026-02-20 10:00:00,123] telethon.client.users: x", true),
            ("[ INFO/2026-02-20 10:00:00,123] send_text_bot: x", true),
            ("[2026-02-20 10:00:00 +0000] [1234] [INFO] Starting gunicorn 23.0.0", true),
            ("[2026-02-20 10:00:00 +0000] [1234] [CRITICAL] WORKER TIMEOUT (pid:1235)", true),
            ("Exception in thread telethon-loop:", true),
            ("Traceback (most recent call last):", false),
            ("  File \"/app/send_text.py\", line 42, in send", false),
            ("", false),
            ("During handling of the above exception, another exception occurred:", false),
            ("telethon.errors.rpcerrorlist.FloodWaitError: A wait of 1800 seconds is required", false),
            ("future: <Task finished name='Task-7' coro=<main() done> exception=ValueError('x')>", false),
            ("INFO send_text_bot: no colon after level", false),
            ("info:send_text_bot:lower case is not logging's", false),
        ];
        for (text, want) in cases {
            assert_eq!(starts_record(text), *want, "{text:?}");
        }
    }

    #[test]
    fn one_record_per_line_in_each_head_format() {
        let cases: &[(&str, &str)] = &[
            (
                "basic",
                "INFO:telethon.network.mtprotosender:Connecting to 149.154.167.51:443/TcpFull...\n\
                 INFO:telethon.network.mtprotosender:Connection to 149.154.167.51:443/TcpFull complete!\n\
                 WARNING:send_text_bot:Cannot find chat -1003519196381 in cache (3978 entries) even after mini-refresh.",
            ),
            (
                "asctime",
                "2026-02-20 10:00:00,123 - send_text_bot - INFO - Periodic cache warmup started...\n\
                 2026-02-20 10:00:01,456 - send_text_bot - INFO - Periodic cache warmup done, 3978 entries\n\
                 2026-02-20 10:00:02,789 - telethon.client.users - WARNING - Telegram is having internal issues",
            ),
            (
                "levelname/asctime",
                "[ INFO/2026-02-20 10:00:00,123] telethon.network.mtprotosender: Connecting to 149.154.167.51:443/TcpFull...\n\
                 [WARNING/2026-02-20 10:00:00,124] telethon.client.users: Telegram is having internal issues\n\
                 [ERROR/2026-02-20 10:00:00,125] send_text_bot: send_text failed: TimeoutError: ",
            ),
            (
                "gunicorn",
                "[2026-02-20 10:00:00 +0000] [1234] [INFO] Starting gunicorn 23.0.0\n\
                 [2026-02-20 10:00:00 +0000] [1234] [INFO] Listening at: http://0.0.0.0:5022 (1234)\n\
                 [2026-02-20 10:00:00 +0000] [1234] [INFO] Using worker: gevent",
            ),
            (
                "journald",
                "2026-02-20T10:00:00+0000 vps python3[1234]: INFO:send_text_bot:Periodic cache warmup started...\n\
                 2026-02-20T10:00:01+0000 vps python3[1234]: INFO:send_text_bot:Periodic cache warmup done, 3978 entries\n\
                 2026-02-20T10:00:02+0000 vps python3[1234]: ERROR:send_text_bot:send_text failed: TimeoutError: ",
            ),
        ];
        for (name, text) in cases {
            let records = assemble(text);
            assert_eq!(records.len(), 3, "{name}: {records:#?}");
            for r in &records {
                assert_eq!(r.lines.len(), 1, "{name}");
                assert!(starts_record(r.head()), "{name}: head {:?}", r.head());
                assert_eq!(r.key_line(), r.head(), "{name}");
            }
        }
    }

    #[test]
    fn journald_continuation_lines_join_their_record() {
        let text = "2026-02-20T10:00:00+0000 vps python3[1234]: ERROR:send_text_bot:warmup crashed\n\
                    2026-02-20T10:00:00+0000 vps python3[1234]: Traceback (most recent call last):\n\
                    2026-02-20T10:00:00+0000 vps python3[1234]:   File \"/app/send_text.py\", line 88, in warm\n\
                    2026-02-20T10:00:00+0000 vps python3[1234]:     await client.get_dialogs()\n\
                    2026-02-20T10:00:00+0000 vps python3[1234]: ValueError: Request was unsuccessful 5 time(s)\n\
                    2026-02-20T10:00:01+0000 vps python3[1234]: INFO:send_text_bot:Reconnect successful";
        let records = assemble(text);
        assert_eq!(
            heads(&records),
            [
                "ERROR:send_text_bot:warmup crashed",
                "INFO:send_text_bot:Reconnect successful"
            ]
        );
        assert_eq!(records[0].lines.len(), 5);
        assert_eq!(
            records[0].key_line(),
            "ValueError: Request was unsuccessful 5 time(s)"
        );
    }

    #[test]
    fn traceback_records_are_classified_by_their_last_exception_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "logger.exception",
                "ERROR:send_text_bot:Periodic cache warmup failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 120, in _warmup\n\
                 \x20   async for d in _client.iter_dialogs():\n\
                 \x20   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n\
                 \x20 File \"/usr/lib/python3/dist-packages/telethon/client/users.py\", line 87, in _call\n\
                 \x20   raise e\n\
                 telethon.errors.rpcerrorlist.FloodWaitError: A wait of 1800 seconds is required (caused by GetDialogsRequest)\n\
                 INFO:send_text_bot:next",
                8,
                "telethon.errors.rpcerrorlist.FloodWaitError: A wait of 1800 seconds is required (caused by GetDialogsRequest)",
            ),
            (
                "chained",
                "ERROR:send_text_bot:send_text failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 60, in resolve\n\
                 \x20   return cache[chat]\n\
                 KeyError: -1003519196381\n\
                 \n\
                 During handling of the above exception, another exception occurred:\n\
                 \n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 70, in send\n\
                 \x20   raise ValueError(f\"Не удалось найти чат {chat} в диалогах\") from None\n\
                 ValueError: Не удалось найти чат -1003519196381 в диалогах\n\
                 \n\
                 The above exception was the direct cause of the following exception:\n\
                 \n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 99, in handler\n\
                 RuntimeError: send failed\n\
                 INFO:send_text_bot:next",
                18,
                "RuntimeError: send failed",
            ),
            (
                "thread",
                "Exception in thread telethon-loop:\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/usr/lib/python3.11/threading.py\", line 1045, in _bootstrap_inner\n\
                 \x20   self.run()\n\
                 \x20 File \"/app/send_text.py\", line 30, in _run_loop\n\
                 \x20   loop.run_until_complete(_start())\n\
                 telethon.errors.rpcerrorlist.FloodWaitError: A wait of 108 seconds is required (caused by GetDialogsRequest)\n\
                 [2026-02-20 10:00:00 +0000] [1234] [CRITICAL] WORKER TIMEOUT (pid:1235)",
                7,
                "telethon.errors.rpcerrorlist.FloodWaitError: A wait of 108 seconds is required (caused by GetDialogsRequest)",
            ),
            (
                "asyncio task",
                "ERROR:asyncio:Task exception was never retrieved\n\
                 future: <Task finished name='Task-7' coro=<_warmup() done, defined at /app/send_text.py:118> exception=ValueError('x')>\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 121, in _warmup\n\
                 ValueError: x\n\
                 ERROR:asyncio:next",
                5,
                "ValueError: x",
            ),
            (
                "exception without message",
                "ERROR:send_text_bot:send_text failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/usr/lib/python3.11/concurrent/futures/_base.py\", line 458, in result\n\
                 TimeoutError\n\
                 INFO:send_text_bot:next",
                4,
                "TimeoutError",
            ),
        ];
        for (name, text, n_lines, key) in cases {
            let records = assemble(text);
            assert_eq!(records.len(), 2, "{name}: {records:#?}");
            assert_eq!(records[0].lines.len(), *n_lines, "{name}");
            assert_eq!(records[0].key_line(), *key, "{name}");
            assert!(!records[0].truncated, "{name}");
            assert_eq!(records[0].text().lines().count(), *n_lines, "{name}");
        }
    }

    #[test]
    fn unformatted_lines_are_records_of_their_own_but_keep_their_traceback() {
        let text = "listening on 5022\n\
                    got request\n\
                    Traceback (most recent call last):\n\
                    \x20 File \"x.py\", line 1, in <module>\n\
                    ZeroDivisionError: division by zero\n\
                    bye";
        let records = assemble(text);
        assert_eq!(
            heads(&records),
            ["listening on 5022", "got request", "bye"],
            "{records:#?}"
        );
        assert_eq!(records[1].key_line(), "ZeroDivisionError: division by zero");
    }

    #[test]
    fn a_stray_blank_line_is_no_record() {
        let records = assemble("\n\nINFO:a:b\n");
        assert_eq!(heads(&records), ["INFO:a:b"]);
        // Trailing blank lines stay with the record they follow: they are part of the output.
        assert_eq!(records[0].lines.len(), 1);
    }

    #[test]
    fn line_cap_keeps_the_first_lines_and_the_final_exception() {
        let mut text =
            String::from("ERROR:send_text_bot:deep\nTraceback (most recent call last):\n");
        for i in 0..50 {
            text.push_str(&format!("  File \"/app/x.py\", line {i}, in f\n    f()\n"));
        }
        text.push_str("RecursionError: maximum recursion depth exceeded\n\nINFO:a:next");
        let limits = RecordLimits {
            max_lines: 10,
            ..RecordLimits::default()
        };
        let records = assemble_with(limits, &text);
        assert_eq!(records.len(), 2);
        let r = &records[0];
        assert!(r.truncated);
        assert_eq!(r.lines.len(), 10);
        assert_eq!(r.lines[1], TRACEBACK);
        assert_eq!(
            r.key_line(),
            "RecursionError: maximum recursion depth exceeded"
        );
        assert_eq!(
            r.lines[9],
            "RecursionError: maximum recursion depth exceeded"
        );
    }

    #[test]
    fn byte_cap_bounds_the_record_and_cuts_long_lines_on_char_boundaries() {
        let limits = RecordLimits {
            max_bytes: 100,
            ..RecordLimits::default()
        };
        let long = "ж".repeat(80); // 160 bytes
        let text = format!(
            "ERROR:bot:{long}\nINFO:bot:short\nWARNING:bot:x\n  {}\n  {}\nValueError: end",
            "a".repeat(40),
            "b".repeat(40)
        );
        let records = assemble_with(limits, &text);
        assert_eq!(records.len(), 3, "{records:#?}");
        assert!(records[0].truncated);
        assert_eq!(records[0].head().len(), 100);
        assert!(records[0].head().starts_with("ERROR:bot:жж"));
        assert!(!records[1].truncated);
        let r = &records[2];
        assert!(r.truncated);
        let bytes: usize = r.lines.iter().map(String::len).sum();
        assert!(bytes <= 100, "{bytes} bytes: {r:#?}");
        assert_eq!(r.lines.last().map(String::as_str), Some("ValueError: end"));
    }

    #[test]
    fn idle_flush_completes_a_quiet_record_only_after_idle_ms() {
        let mut asm = RecordAssembler::new(RecordLimits {
            idle_ms: 500,
            ..RecordLimits::default()
        });
        assert!(asm
            .push(&line_at(T0, "ERROR:bot:send_text failed"))
            .is_none());
        assert!(asm
            .push(&line_at(T0 + 10, "Traceback (most recent call last):"))
            .is_none());
        assert!(asm.push(&line_at(T0 + 10, "ValueError: x")).is_none());
        assert!(asm.flush_idle(T0 + 509).is_none(), "quiet for 499 ms only");
        let r = asm.flush_idle(T0 + 510).expect("quiet for 500 ms");
        assert_eq!(r.lines.len(), 3);
        assert_eq!(r.first_ts.timestamp_millis(), T0);
        assert_eq!(r.stream, Stream::Stderr);
        assert!(asm.flush_idle(T0 + 10_000).is_none(), "nothing pending");
        assert!(asm.flush().is_none());
    }

    #[test]
    fn a_line_after_an_idle_gap_starts_a_new_record_even_without_a_head() {
        let mut asm = RecordAssembler::new(RecordLimits::default());
        assert!(asm.push(&line_at(T0, "ERROR:bot:a")).is_none());
        assert!(asm.push(&line_at(T0 + 499, "  continued")).is_none());
        let r = asm
            .push(&line_at(T0 + 999, "  late"))
            .expect("gap of 500 ms");
        assert_eq!(r.lines, ["ERROR:bot:a", "  continued"]);
        assert_eq!(
            asm.flush().map(|r| r.lines),
            Some(vec!["  late".to_owned()])
        );
    }

    #[test]
    fn push_returns_the_previous_record_when_a_head_arrives() {
        let mut asm = RecordAssembler::new(RecordLimits::default());
        assert!(asm.push(&line_at(T0, "INFO:a:one")).is_none());
        let r = asm
            .push(&line_at(T0, "INFO:a:two"))
            .expect("a head ends the record");
        assert_eq!(r.lines, ["INFO:a:one"]);
        let r = asm
            .push(&line_at(T0, "Exception in thread telethon-loop:"))
            .expect("thread crash is a head");
        assert_eq!(r.lines, ["INFO:a:two"]);
    }

    #[test]
    fn crlf_endings_are_dropped() {
        let mut asm = RecordAssembler::new(RecordLimits::default());
        asm.push(&line_at(T0, "INFO:a:one\r"));
        assert_eq!(
            asm.flush().map(|r| r.lines),
            Some(vec!["INFO:a:one".to_owned()])
        );
    }
}
