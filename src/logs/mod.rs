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

// ---- TEMPORARY STUB (replaced by the logs branch) ----
#[derive(Debug, thiserror::Error)]
#[error("log error")]
pub struct LogError;
#[derive(Debug, Clone)]
pub struct ServiceLog {
    tx: tokio::sync::broadcast::Sender<SharedLine>,
}
pub struct Capture;
impl std::future::Future for Capture {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
}
impl ServiceLog {
    pub fn open(_s: LogSettings) -> Result<ServiceLog, LogError> {
        Ok(ServiceLog {
            tx: tokio::sync::broadcast::channel(16).0,
        })
    }
    pub fn capture(
        &self,
        _o: Option<tokio::process::ChildStdout>,
        _e: Option<tokio::process::ChildStderr>,
    ) -> Capture {
        Capture
    }
    pub async fn marker(&self, _t: impl Into<String>) {}
    pub fn try_marker(&self, _t: impl Into<String>) -> Result<(), LogError> {
        Ok(())
    }
    pub async fn tail(&self, _n: usize, _s: Option<Stream>) -> Vec<LogLine> {
        vec![]
    }
    pub async fn follow(
        &self,
        _n: usize,
        _s: Option<Stream>,
    ) -> (Vec<LogLine>, tokio::sync::broadcast::Receiver<SharedLine>) {
        (vec![], self.tx.subscribe())
    }
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SharedLine> {
        self.tx.subscribe()
    }
    pub async fn close(&self) {}
}
pub fn format_line(l: &LogLine) -> String {
    l.text.clone()
}
