//! Reading the newest lines back from disk: `NAME.log` and its rotated files, backwards in blocks, so
//! asking for the last 100 lines of a 10 MiB log reads kilobytes, not megabytes.
//!
//! Read-only: this module must never write, rename or delete log files (the writer owns them). It may
//! race with a rotation in progress; a file that disappears between listing and reading is skipped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memchr::memrchr;

use super::{parse_line, LogError, LogLine};

/// Bytes read per step when walking a file backwards.
const BLOCK_BYTES: usize = 64 * 1024;

/// `DIR/NAME.log`.
pub(crate) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// `DIR/NAME.log.INDEX`.
pub(crate) fn rotated_path(path: &Path, index: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The rotated files of `DIR/NAME.log` that exist, as (index, path), newest (lowest index) first.
pub(crate) fn rotated_files(dir: &Path, name: &str) -> io::Result<Vec<(usize, PathBuf)>> {
    let prefix = format!("{name}.log.");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(index) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<usize>().ok())
        else {
            continue;
        };
        if index > 0 {
            found.push((index, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(index, _)| *index);
    Ok(found)
}

/// Reads the newest `n` lines of `DIR/NAME.log` and its rotated files (`NAME.log.1`, ...), oldest
/// first. Lines that are not in the log format (e.g. added by hand) are skipped and not counted.
/// Missing files give fewer lines, not an error. Blocking I/O: from async code, call it inside
/// `tokio::task::spawn_blocking`.
pub fn read_tail(dir: &Path, name: &str, n: usize) -> Result<Vec<LogLine>, LogError> {
    read_tail_in_blocks(dir, name, n, BLOCK_BYTES)
}

pub(crate) fn read_tail_in_blocks(
    dir: &Path,
    name: &str,
    n: usize,
    block: usize,
) -> Result<Vec<LogLine>, LogError> {
    let mut newest_first = Vec::new();
    if n == 0 {
        return Ok(newest_first);
    }
    let current = log_path(dir, name);
    let rotated = rotated_files(dir, name).map_err(|source| LogError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = std::iter::once(current).chain(rotated.into_iter().map(|(_, path)| path));
    for path in files {
        if newest_first.len() >= n {
            break;
        }
        read_file_backwards(&path, n, block, &mut newest_first)
            .map_err(|source| LogError::Read { path, source })?;
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// Pushes the lines of one file onto `out`, newest first, until `out` holds `want` lines.
fn read_file_backwards(
    path: &Path,
    want: usize,
    block: usize,
    out: &mut Vec<LogLine>,
) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut pos = file.metadata()?.len();
    // Bytes of the file from some offset up to the first newline we have not consumed yet, i.e. the
    // (so far) incomplete line at the front of what we have read.
    let mut front: Vec<u8> = Vec::new();
    while pos > 0 && out.len() < want {
        let start = pos.saturating_sub(block as u64);
        // `pos - start` <= block, which fits in usize.
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        chunk.extend_from_slice(&front);
        front = chunk;
        pos = start;
        let mut end = front.len();
        while let Some(nl) = memrchr(b'\n', &front[..end]) {
            push(&front[nl + 1..end], out);
            end = nl;
            if out.len() >= want {
                return Ok(());
            }
        }
        front.truncate(end);
    }
    if pos == 0 && out.len() < want {
        push(&front, out);
    }
    Ok(())
}

/// Pushes one file line if it is a log line. Empty segments come from the final newline.
fn push(bytes: &[u8], out: &mut Vec<LogLine>) {
    if !bytes.is_empty() {
        if let Some(line) = parse_line(&String::from_utf8_lossy(bytes)) {
            out.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{format_line, Stream};
    use chrono::{TimeZone, Utc};

    fn line(i: usize) -> LogLine {
        LogLine {
            ts: Utc
                .timestamp_millis_opt(1_795_884_256_000 + i as i64)
                .single()
                .unwrap(),
            stream: if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            // Varying lengths, some longer than the tiny blocks used below.
            text: format!("line {i} {}", "x".repeat(i % 37)),
        }
    }

    fn write_file(path: &Path, lines: std::ops::Range<usize>, trailing_newline: bool) {
        let mut text = lines
            .map(|i| format_line(&line(i)))
            .collect::<Vec<_>>()
            .join("\n");
        if trailing_newline {
            text.push('\n');
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_across_rotated_files_with_any_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "svc");
        write_file(&rotated_path(&path, 2), 0..40, true);
        write_file(&rotated_path(&path, 1), 40..90, true);
        write_file(&path, 90..100, false);
        for block in [1, 2, 7, 64, 1000, BLOCK_BYTES] {
            for n in [0, 1, 5, 10, 11, 60, 99, 100, 1000] {
                let got = read_tail_in_blocks(dir.path(), "svc", n, block).unwrap();
                let expected: Vec<LogLine> = (100usize.saturating_sub(n)..100).map(line).collect();
                assert_eq!(got, expected, "n={n} block={block}");
            }
        }
    }

    #[test]
    fn skips_foreign_lines_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "svc");
        assert!(read_tail(dir.path(), "svc", 10).unwrap().is_empty());
        let text = format!(
            "garbage at the start\n{}\n\nhand-written note\n{}\n",
            format_line(&line(1)),
            format_line(&line(2))
        );
        std::fs::write(&path, text).unwrap();
        // A gap in the numbering (NAME.log.1 missing) is fine too.
        write_file(&rotated_path(&path, 3), 0..1, true);
        assert_eq!(
            read_tail(dir.path(), "svc", 10).unwrap(),
            vec![line(0), line(1), line(2)]
        );
        assert_eq!(
            read_tail(dir.path(), "svc", 2).unwrap(),
            vec![line(1), line(2)]
        );
    }

    #[test]
    fn lists_only_numbered_rotations_of_this_service() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "svc.log",
            "svc.log.1",
            "svc.log.10",
            "svc.log.2",
            "svc.log.x",
            "svc.log.",
            "svc2.log.1",
            "svc.log.0",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let indexes: Vec<usize> = rotated_files(dir.path(), "svc")
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(indexes, vec![1, 2, 10]);
    }
}
