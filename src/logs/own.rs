//! tend's own log file, `LOG_DIR/tend.own.log`, rotated by size (`tend.own.log.1` … kept), for the
//! tracing subscriber main.rs sets up. A crash loop logs a lot: a daily file alone can fill the disk.
//!
//! The name holds a dot, which no service name may, so it never meets a service's `NAME.log`. This
//! module owns only that file; it must not touch the service logs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Rotate before a write that would take the file past this.
pub const OWN_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept.
pub const OWN_LOG_KEEP: usize = 5;

/// A `Write` that appends to `tend.own.log` and rotates it by size.
pub struct OwnLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl OwnLog {
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> io::Result<OwnLog> {
        let path = dir.join("tend.own.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(OwnLog {
            path,
            max_bytes,
            keep,
            file,
            size,
        })
    }

    fn rotated(&self, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for index in (1..self.keep).rev() {
            let _ = std::fs::rename(self.rotated(index), self.rotated(index + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, self.rotated(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for OwnLog {
    /// One call is one formatted event: rotation happens between events, never inside one.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            // A failed rotation keeps appending to the current file: the log must not stop.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = OwnLog::open(dir.path(), 100, 2).unwrap();
        for i in 0..20 {
            log.write_all(format!("event {i:02} with some padding text\n").as_bytes())
                .unwrap();
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        // 32-byte events, 100-byte files: three per file; the newest (18, 19) in tend.own.log.
        assert_eq!(read("tend.own.log").lines().count(), 2);
        assert!(read("tend.own.log").contains("event 19"));
        assert!(
            read("tend.own.log.1").contains("event 15 ")
                && read("tend.own.log.1").contains("event 17")
        );
        assert!(
            read("tend.own.log.2").contains("event 12")
                && read("tend.own.log.2").contains("event 14")
        );
        assert!(!dir.path().join("tend.own.log.3").exists());
        for name in ["tend.own.log", "tend.own.log.1", "tend.own.log.2"] {
            assert!(std::fs::metadata(dir.path().join(name)).unwrap().len() <= 100);
        }
    }
}
