//! Service output capture: pipes -> timestamped lines -> rotating file + in-memory ring + broadcast.
//!
//! One writer task per service owns that service's log file and ring buffer; everyone else talks to it
//! through a [`ServiceLog`] handle (cheap to clone). Reader tasks, one per pipe per run, split the
//! byte stream into lines and hand them to the writer. This module must not decide anything about the
//! service's lifecycle: the core tells it what to write (lifecycle markers) and when a run starts.
//!
//! On-disk format, one captured line per file line:
//! `2026-11-28T16:44:16.123Z out <text>` where the stream is `out`, `err` or `tend` (lifecycle markers).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

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
