//! The audit log of the status page: every action (and every login, logout and refused attempt) with
//! who, from where, what, on what, the reason given and the outcome. Kept in memory for the page (the
//! newest [`KEEP`]) and appended as JSON lines to `STATE_DIR/web-audit.jsonl`.
//!
//! Owned by the web module; a mutex local to it. A failing append is logged and never fails the action.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Entries kept in memory.
pub const KEEP: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: chrono::DateTime<chrono::Utc>,
    pub user: String,
    pub ip: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub outcome: String,
}

pub struct Audit {
    path: PathBuf,
    entries: Mutex<VecDeque<AuditEntry>>,
}

impl Audit {
    /// Loads the newest entries of an existing file, so the page shows history across restarts.
    pub fn open(path: PathBuf) -> Audit {
        let mut entries = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(entry) = serde_json::from_str::<AuditEntry>(line) {
                    entries.push_back(entry);
                    if entries.len() > KEEP {
                        entries.pop_front();
                    }
                }
            }
        }
        Audit {
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn record(&self, entry: AuditEntry) {
        tracing::info!(
            user = %entry.user,
            ip = %entry.ip,
            action = %entry.action,
            target = %entry.target,
            reason = %entry.reason,
            outcome = %entry.outcome,
            "web action"
        );
        if let Ok(line) = serde_json::to_string(&entry) {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(err) = written {
                tracing::warn!("cannot append to {}: {err}", self.path.display());
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.push_back(entry);
        if entries.len() > KEEP {
            entries.pop_front();
        }
    }

    /// Newest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().rev().cloned().collect()
    }
}
