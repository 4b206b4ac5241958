//! What a service log does while its directory cannot be written (disk full, permissions, the directory
//! gone): the episode's account of lines kept and lost, and the marker written when writing works again.
//!
//! Owned by the writer thread; this module does no I/O. The newest lines are kept in memory (at most
//! `RETAIN_BYTES`); older ones are dropped and counted. The handle publishes the episode as
//! [`LogLoss`] so the status can say so while it lasts.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::format::format_timestamp;

/// Bytes of formatted lines kept while the log cannot be written, written late when it can again.
pub(crate) const RETAIN_BYTES: usize = 1024 * 1024;

/// A write failure under way, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLoss {
    /// When writing first failed.
    pub since: DateTime<Utc>,
    /// The last error, e.g. "no space left on device".
    pub error: String,
    /// Lines (and their bytes) dropped for good so far.
    pub lines_lost: u64,
    pub bytes_lost: u64,
    /// Lines kept in memory, to be written when the disk takes them again.
    pub lines_waiting: u64,
}

/// One episode of failed writes.
#[derive(Debug)]
pub(crate) struct Episode {
    since: DateTime<Utc>,
    error: String,
    lost_lines: u64,
    lost_bytes: u64,
    /// Timestamps of the first and last line lost.
    lost_span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Whole formatted records (`<ts> <stream> text\n`), oldest first, with their timestamps.
    kept: VecDeque<(DateTime<Utc>, String)>,
    kept_bytes: usize,
    limit: usize,
}

/// "No space left on device (os error 28)" -> "no space left on device".
pub(crate) fn describe(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Episode {
    pub(crate) fn new(since: DateTime<Utc>, error: String, limit: usize) -> Self {
        Episode {
            since,
            error,
            lost_lines: 0,
            lost_bytes: 0,
            lost_span: None,
            kept: VecDeque::new(),
            kept_bytes: 0,
            limit,
        }
    }

    pub(crate) fn set_error(&mut self, error: String) {
        self.error = error;
    }

    /// Counts `lines` lines of `bytes` bytes (at `ts`) as lost.
    pub(crate) fn lose(&mut self, ts: DateTime<Utc>, lines: u64, bytes: u64) {
        if lines == 0 && bytes == 0 {
            return;
        }
        self.lost_lines += lines;
        self.lost_bytes += bytes;
        self.lost_span = Some(match self.lost_span {
            Some((first, last)) => (first.min(ts), last.max(ts)),
            None => (ts, ts),
        });
    }

    /// Keeps a record; drops (and counts) the oldest while over the limit.
    pub(crate) fn keep(&mut self, ts: DateTime<Utc>, record: String) {
        self.kept_bytes += record.len();
        self.kept.push_back((ts, record));
        while self.kept_bytes > self.limit {
            let Some((old_ts, old)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= old.len();
            self.lose(old_ts, 1, old.len() as u64);
        }
    }

    pub(crate) fn status(&self) -> LogLoss {
        LogLoss {
            since: self.since,
            error: self.error.clone(),
            lines_lost: self.lost_lines,
            bytes_lost: self.lost_bytes,
            lines_waiting: self.kept.len() as u64,
        }
    }

    /// What to write when the log works again: the marker (when anything was lost), then the kept lines.
    /// The marker is dated `now`.
    pub(crate) fn recovery_text(&self, now: DateTime<Utc>) -> (Option<String>, String) {
        let marker = self.lost_span.map(|(first, last)| {
            format!(
                "{} lines, {} bytes lost: {}, from {} to {}",
                self.lost_lines,
                self.lost_bytes,
                self.error,
                format_timestamp(first),
                format_timestamp(last)
            )
        });
        let mut text = String::with_capacity(self.kept_bytes + 200);
        if let Some(marker) = &marker {
            text.push_str(&format_timestamp(now));
            text.push_str(" tend ");
            text.push_str(marker);
            text.push('\n');
        }
        for (_, record) in &self.kept {
            text.push_str(record);
        }
        (marker, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_newest_lines_are_kept_and_the_oldest_counted_lost() {
        let mut e = Episode::new(at(0), "no space left on device".into(), 20);
        for i in 0..5 {
            e.keep(at(i), format!("line {i}\n")); // 7 bytes each
        }
        let s = e.status();
        assert_eq!((s.lines_lost, s.bytes_lost, s.lines_waiting), (3, 21, 2));
        let (marker, text) = e.recovery_text(at(10));
        let marker = marker.unwrap();
        assert_eq!(
            marker,
            format!(
                "3 lines, 21 bytes lost: no space left on device, from {} to {}",
                format_timestamp(at(0)),
                format_timestamp(at(2))
            )
        );
        assert!(text.contains(" tend 3 lines, 21 bytes lost"), "{text}");
        assert!(text.ends_with("line 3\nline 4\n"), "{text}");
    }

    #[test]
    fn nothing_lost_means_no_marker() {
        let mut e = Episode::new(at(0), "x".into(), 100);
        e.keep(at(1), "a\n".into());
        assert_eq!(e.recovery_text(at(2)), (None, "a\n".to_string()));
    }

    #[test]
    fn errors_read_as_text() {
        let err = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(describe(&err), "no space left on device");
    }
}
