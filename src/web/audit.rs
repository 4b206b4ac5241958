//! The audit log of the status page: every action (and every login, logout and refused attempt) with
//! who, from where, what, on what, the reason given and the outcome. Kept in memory for the page (the
//! newest [`KEEP`]) and appended as JSON lines to `STATE_DIR/web-audit.jsonl`.
//!
//! The file is 0600 (it names users and addresses) and rotated by size: past `[web] audit_max_size` it
//! becomes `web-audit.jsonl.1` (one older file kept), so an attack's stream of refused logins cannot
//! fill the disk. Owned by the web module; a mutex local to it. A failing append is logged and never
//! fails the action.

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
    /// The size the file may reach before it is rotated, and its size now.
    file: Mutex<(u64, u64)>,
}

impl Audit {
    /// Loads the newest entries of an existing file, so the page shows history across restarts.
    pub fn open(path: PathBuf, max_size: u64) -> Audit {
        use std::os::unix::fs::PermissionsExt;
        // A file written by an older tend may be 0644.
        let size = match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                }
                meta.len()
            }
            Err(_) => 0,
        };
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
            file: Mutex::new((max_size, size)),
        }
    }

    pub fn set_max_size(&self, max_size: u64) {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).0 = max_size;
    }

    /// Appends one line (0600), first rotating the file when the line would take it over the limit.
    fn append(&self, line: &str) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (max_size, size) = *file;
        let len = line.len() as u64 + 1;
        if size > 0 && size + len > max_size {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
            file.1 = 0;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"))?;
        file.1 += len;
        Ok(())
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
            if let Err(err) = self.append(&line) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            at: chrono::Utc::now(),
            user: format!("user{i}"),
            ip: "10.0.0.1".into(),
            action: "login".into(),
            target: String::new(),
            reason: String::new(),
            outcome: "wrong user name or password".into(),
        }
    }

    #[test]
    fn the_file_is_private_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let audit = Audit::open(path.clone(), 4096);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "an old 0644 file is tightened");
        for i in 0..100 {
            audit.record(entry(i));
        }
        let rotated = dir.path().join("web-audit.jsonl.1");
        for p in [&path, &rotated] {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(len > 0 && len <= 4096, "{} is {len} bytes", p.display());
            assert_eq!(mode(p), 0o600);
        }
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("\"user99\""), "{last}");
        assert_eq!(audit.entries().len(), 100, "the page keeps its own window");
    }
}
