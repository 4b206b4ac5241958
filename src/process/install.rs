//! Writing an executable file that is about to be run, without ETXTBSY.
//!
//! Owns one helper, [`write_executable`]. It must not run anything it writes.
//!
//! Why a child writes it: `execve` fails with ETXTBSY while any process holds the file open for writing.
//! A file written by this process is open for writing for a moment, and a fork made by another thread in
//! that moment (a service spawn, a test's `Command`) inherits the descriptor until its own exec, so
//! running the file right after writing it fails now and then on a busy machine. A short-lived `sh`
//! opens, writes and closes the file instead; no other process ever has it open, and a rename puts it in
//! place whole.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `contents` to `path` as a new executable file (mode 0755), replacing any file there by rename.
pub fn write_executable(path: &Path, contents: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(contents);
    let out = child.wait_with_output()?;
    written?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::other(format!(
            "sh could not write {}: {}",
            tmp.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_runnable_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello");
        write_executable(&path, b"#!/bin/sh\necho first\n").unwrap();
        write_executable(&path, b"#!/bin/sh\necho second\n").unwrap();
        let out = Command::new(&path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "second\n");
        // No temporary file left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
