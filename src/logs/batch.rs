//! [`Batch`]: the lines of one read of one pipe (or one marker), as one text buffer plus line ends; and
//! [`Ring`], the in-memory tail made of such batches. Pure data structures: no I/O, no channels.
//!
//! Why batches rather than one `Arc<LogLine>` per line: a burst of short lines then costs two
//! allocations per read instead of two per line, and those allocations are made and freed by the same
//! thread. Measured with `seq`, per-line allocation on the reader thread plus freeing on the writer
//! thread put glibc's allocator at over half the run time. Per-line [`SharedLine`]s are only built
//! for the broadcast, and only when someone subscribed.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::{LogLine, Stream};

/// Lines sharing one timestamp and stream: `text` holds each line followed by `\n` (ready to be
/// written), `ends[i]` is the offset just past line `i`'s `\n`. A line never contains `\n` itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    pub(crate) ts: DateTime<Utc>,
    pub(crate) stream: Stream,
    text: String,
    ends: Vec<usize>,
}

/// A batch being filled with raw bytes from a pipe; [`RawBatch::seal`] turns it into a [`Batch`].
/// Validating UTF-8 once per batch instead of once per line is what makes short lines cheap.
#[derive(Debug)]
pub(crate) struct RawBatch {
    ts: DateTime<Utc>,
    stream: Stream,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RawBatch {
    pub(crate) fn with_capacity(ts: DateTime<Utc>, stream: Stream, bytes: usize) -> RawBatch {
        RawBatch {
            ts,
            stream,
            bytes: Vec::with_capacity(bytes),
            ends: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    /// Converts to text; lines with invalid UTF-8 get U+FFFD, line by line.
    pub(crate) fn seal(self) -> Batch {
        let RawBatch {
            ts,
            stream,
            bytes,
            ends,
        } = self;
        // Lines are separated by (ASCII) newlines, so the whole buffer is valid UTF-8 exactly when
        // every line is: "\xC3" and "\xA9" as two lines are "\xC3\n\xA9", which is invalid.
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => {
                return Batch {
                    ts,
                    stream,
                    text,
                    ends,
                }
            }
            Err(err) => err.into_bytes(),
        };
        let mut batch = Batch::with_capacity(ts, stream, bytes.len() + bytes.len() / 2, ends.len());
        let mut start = 0;
        for end in ends {
            batch.push_bytes(&bytes[start..end - 1]);
            start = end;
        }
        batch
    }
}

impl Batch {
    pub(crate) fn with_capacity(
        ts: DateTime<Utc>,
        stream: Stream,
        bytes: usize,
        lines: usize,
    ) -> Batch {
        Batch {
            ts,
            stream,
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// Appends a line given as raw bytes; invalid UTF-8 becomes U+FFFD.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        self.text.push_str(&String::from_utf8_lossy(bytes));
        self.text.push('\n');
        self.ends.push(self.text.len());
    }

    /// Appends a line; the caller guarantees it has no `\n`.
    pub(crate) fn push_str(&mut self, line: &str) {
        debug_assert!(!line.contains('\n'));
        self.text.push_str(line);
        self.text.push('\n');
        self.ends.push(self.text.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `index` (< `len()`) followed by its `\n`, as written to the file.
    pub(crate) fn line_with_newline(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text[start..self.ends[index]]
    }

    /// Text of line `index` (< `len()`).
    pub(crate) fn line(&self, index: usize) -> &str {
        let line = self.line_with_newline(index);
        &line[..line.len() - 1]
    }

    #[cfg(test)]
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.line(i))
    }

    pub(crate) fn lines_with_newline(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.line_with_newline(i))
    }

    pub(crate) fn log_line(&self, index: usize) -> LogLine {
        LogLine {
            ts: self.ts,
            stream: self.stream,
            text: self.line(index).to_owned(),
        }
    }
}

/// The newest `cap` lines, kept as the batches they arrived in.
#[derive(Debug)]
pub(crate) struct Ring {
    batches: VecDeque<Batch>,
    /// Lines at the start of the front batch that were already evicted.
    skip: usize,
    /// Lines held (not counting skipped ones); never more than `cap`.
    len: usize,
    cap: usize,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Ring {
        Ring {
            batches: VecDeque::new(),
            skip: 0,
            len: 0,
            cap,
        }
    }

    /// Builds a ring from lines read back from disk, grouping runs that share timestamp and stream.
    pub(crate) fn from_lines(cap: usize, lines: Vec<LogLine>) -> Ring {
        let mut ring = Ring::new(cap);
        let mut current: Option<Batch> = None;
        for line in lines {
            let same = current
                .as_ref()
                .is_some_and(|b| b.ts == line.ts && b.stream == line.stream);
            if !same {
                if let Some(done) = current.take() {
                    ring.push(done);
                }
                current = Some(Batch::with_capacity(
                    line.ts,
                    line.stream,
                    line.text.len(),
                    1,
                ));
            }
            if let Some(batch) = current.as_mut() {
                batch.push_str(&line.text);
            }
        }
        if let Some(done) = current {
            ring.push(done);
        }
        ring
    }

    pub(crate) fn push(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        self.len += batch.len();
        self.batches.push_back(batch);
        while self.len > self.cap {
            let Some(front) = self.batches.front() else {
                break;
            };
            let available = front.len() - self.skip;
            let excess = self.len - self.cap;
            if excess >= available {
                self.batches.pop_front();
                self.skip = 0;
                self.len -= available;
            } else {
                self.skip += excess;
                self.len -= excess;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The last `n` lines (oldest first), optionally of one stream only.
    pub(crate) fn tail(&self, n: usize, stream: Option<Stream>) -> Vec<LogLine> {
        let mut newest_first = Vec::with_capacity(n.min(self.len));
        let front_index = 0;
        for (index, batch) in self.batches.iter().enumerate().rev() {
            if newest_first.len() >= n {
                break;
            }
            if stream.is_some_and(|wanted| wanted != batch.stream) {
                continue;
            }
            let first = if index == front_index { self.skip } else { 0 };
            for line in (first..batch.len()).rev() {
                if newest_first.len() >= n {
                    break;
                }
                newest_first.push(batch.log_line(line));
            }
        }
        newest_first.reverse();
        newest_first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn batch(ms: i64, stream: Stream, lines: &[&str]) -> Batch {
        let ts = Utc.timestamp_millis_opt(ms).single().unwrap();
        let mut b = Batch::with_capacity(ts, stream, 0, 0);
        for line in lines {
            b.push_str(line);
        }
        b
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn batch_keeps_lines_apart_including_empty_and_invalid_ones() {
        let mut b = batch(0, Stream::Stdout, &["", "a b"]);
        b.push_bytes(b"bad \xff");
        b.push_bytes(b"");
        assert_eq!(
            b.lines().collect::<Vec<_>>(),
            vec!["", "a b", "bad \u{FFFD}", ""]
        );
        assert_eq!(b.log_line(1).text, "a b");
    }

    #[test]
    fn sealing_validates_per_line_not_just_the_whole_buffer() {
        let mut raw = RawBatch::with_capacity(DateTime::<Utc>::MIN_UTC, Stream::Stderr, 0);
        for line in [
            &b"plain"[..],
            b"caf\xc3\xa9",
            b"",
            b"\xc3",
            b"\xa9 split char",
            b"\xff",
        ] {
            raw.push(line);
        }
        let sealed = raw.seal();
        assert_eq!(
            sealed.lines().collect::<Vec<_>>(),
            vec![
                "plain",
                "café",
                "",
                "\u{FFFD}",
                "\u{FFFD} split char",
                "\u{FFFD}"
            ]
        );
        let mut valid = RawBatch::with_capacity(DateTime::<Utc>::MIN_UTC, Stream::Stdout, 0);
        valid.push("ünïcödé".as_bytes());
        valid.push(b"x");
        assert_eq!(
            valid.seal().lines().collect::<Vec<_>>(),
            vec!["ünïcödé", "x"]
        );
    }

    #[test]
    fn ring_evicts_oldest_lines_across_and_within_batches() {
        let mut ring = Ring::new(4);
        ring.push(batch(1, Stream::Stdout, &["1", "2", "3"]));
        ring.push(batch(2, Stream::Stderr, &["e1", "e2"]));
        assert_eq!(ring.len(), 4);
        assert_eq!(texts(&ring.tail(10, None)), vec!["2", "3", "e1", "e2"]);
        ring.push(batch(3, Stream::Stdout, &["4", "5", "6"]));
        assert_eq!(texts(&ring.tail(10, None)), vec!["e2", "4", "5", "6"]);
        assert_eq!(texts(&ring.tail(2, None)), vec!["5", "6"]);
        assert_eq!(texts(&ring.tail(10, Some(Stream::Stderr))), vec!["e2"]);
        assert_eq!(
            texts(&ring.tail(10, Some(Stream::Tend))),
            Vec::<&str>::new()
        );
        // A batch bigger than the ring keeps only its own newest lines.
        ring.push(batch(4, Stream::Tend, &["a", "b", "c", "d", "e", "f"]));
        assert_eq!(texts(&ring.tail(10, None)), vec!["c", "d", "e", "f"]);
        assert_eq!(ring.len(), 4);
    }

    #[test]
    fn ring_of_zero_keeps_nothing() {
        let mut ring = Ring::new(0);
        ring.push(batch(1, Stream::Stdout, &["1"]));
        assert!(ring.tail(10, None).is_empty());
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn ring_from_lines_round_trips_timestamps_and_streams() {
        let mut lines = Vec::new();
        for (i, stream) in [
            Stream::Stdout,
            Stream::Stdout,
            Stream::Stderr,
            Stream::Stdout,
        ]
        .iter()
        .enumerate()
        {
            lines.push(batch(10 + (i as i64 / 2), *stream, &[&format!("l{i}")]).log_line(0));
        }
        let ring = Ring::from_lines(3, lines.clone());
        assert_eq!(ring.tail(10, None), lines[1..]);
    }
}
