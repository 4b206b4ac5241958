//! Service output capture: pipes -> timestamped lines -> rotating file + in-memory ring + broadcast.
//!
//! One writer per service (a dedicated thread, so a slow disk never stalls the runtime) owns that
//! service's log files and ring buffer; everyone else talks to it through a [`ServiceLog`] handle
//! (cheap to clone). Reader tasks, one per pipe per run, split the byte stream into lines and hand
//! them to the writer. This module must not decide anything about the service's lifecycle: the core
//! tells it what to write (lifecycle markers) and when a run starts.
//!
//! On-disk format, one captured line per file line:
//! `2026-11-28T16:44:16.123Z out <text>` where the stream is `out`, `err` or `tend` (lifecycle markers).
//!
//! Data flow (one service):
//! ```text
//!  child stdout -> reader task --+                                  +-> LOG_DIR/NAME.log (.1, .2, ...)
//!  child stderr -> reader task --+-> one FIFO channel -> writer ----+-> ring (last ring_lines) -> tail()
//!  marker() flush() tail() ... --+   (captured lines bounded)       +-> broadcast -> subscribe()
//! ```
//! - `split`: bytes -> lines (`\n`, trailing `\r`, [`MAX_LINE_BYTES`] pieces, partial last line).
//! - `capture`: reader tasks and the [`Capture`] handle of one run.
//! - `batch`: the lines of one read as one buffer, and the ring made of such batches.
//! - `writer`: the writer thread, sole owner of the files, the ring and the broadcast sender.
//! - `tail`: reading the newest lines back from the files, backwards, for `tend logs -n`.
//! - `format`: the on-disk line format.
//!
//! Guarantees: no captured line is dropped or split by tend (lines longer than [`MAX_LINE_BYTES`] are
//! stored as consecutive pieces, each a line of its own; invalid UTF-8 becomes U+FFFD); lines of one pipe
//! keep their order; the lines of one read of a pipe (e.g. a traceback printed at once, up to
//! [`MAX_BATCH_LINES`]) stay together, not interleaved with the other pipe; rotation happens between
//! lines only. A crashed service loses nothing: its pipes are read to end-of-file after it died. A tend
//! crash can lose at most what was read but not yet flushed, which the writer does whenever its queue
//! runs empty; a clean shutdown calls [`ServiceLog::close`] (or drops every handle and capture).
//!
//! Architecture invariants:
//! - Only the writer touches a service's log files, ring and broadcast sender; there is no lock.
//! - Order on disk = order in the ring = order on the broadcast = order of acceptance by the writer.
//! - Write failures never stop capture and never block the service beyond the line budget.
//!
//! For benchmarks: [`ServiceLog::capture_reader`] captures any `AsyncRead` (no process needed),
//! [`LineSplitter`] is the pure splitting step, and [`ServiceLog::flush`] marks the end of a run.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

mod batch;
mod capture;
mod error;
mod format;
mod handle;
mod loss;
mod own;
mod split;
mod tail;
mod writer;

#[cfg(test)]
mod tests;

pub use capture::{Capture, Carried, LINE_QUEUE_CAPACITY, MAX_BATCH_LINES, READ_BUFFER_BYTES};
pub use error::LogError;
pub use format::{format_line, parse_line};
pub use handle::{ServiceLog, BROADCAST_CAPACITY};
pub use loss::LogLoss;
pub use own::{OwnLog, OWN_LOG_KEEP, OWN_LOG_MAX_BYTES};
pub use split::{LineSplitter, MAX_LINE_BYTES};
pub use tail::read_tail;

/// Which pipe a line came from; `Tend` marks lines tend itself wrote (spawned, exited, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    #[serde(rename = "out")]
    Stdout,
    #[serde(rename = "err")]
    Stderr,
    Tend,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub ts: DateTime<Utc>,
    pub stream: Stream,
    pub text: String,
}

/// Where and how one service's log is kept.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub name: String,
    pub max_size: u64,
    pub keep: usize,
    pub ring_lines: usize,
}

/// Shared, read-only view of a published line.
pub type SharedLine = Arc<LogLine>;
