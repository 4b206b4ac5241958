//! Server-side log search for the page: newest first, paged, filtered by service, errors only, text,
//! time range and error type, over `LOG_DIR/NAME.log` and its rotated files, without ever loading a
//! whole file.
//!
//! Files are read backwards in blocks. A page ends after `limit` matching lines or after the scan
//! budget; its cursor says, per service, "everything before byte N of the file with inode I", so paging
//! survives a rotation (a rename keeps the inode). Only files named `NAME.log[.N]` of configured services
//! inside `log_dir` are ever opened: service names come from the config, never from a path in the request.
//!
//! Read-only, blocking I/O: call it from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use memchr::memmem;
use serde::Serialize;

use super::redact::Redactor;
use crate::checks::classify::{PatternSet, PatternSpec, Severity};
use crate::config::{CheckKind, Config};
use crate::logs::{parse_line, LogLine, Stream};

const BLOCK_BYTES: usize = 256 * 1024;
/// The longest partial line kept between blocks.
const MAX_CARRY_BYTES: usize = 4 * crate::logs::MAX_LINE_BYTES;
pub const DEFAULT_LIMIT: usize = 200;
pub const MAX_LIMIT: usize = 5000;
/// Bytes read per request at most; the page asks again with the cursor.
pub const DEFAULT_SCAN_BUDGET: u64 = 256 * 1024 * 1024;

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Configured service names (validated by the caller).
    pub services: Vec<String>,
    pub errors_only: bool,
    /// Case-insensitive substring.
    pub text: Option<String>,
    /// An error type: a log pattern name such as `FloodWait`.
    pub error_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<String>,
    pub scan_budget: u64,
}

/// One line as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundLine {
    pub service: String,
    pub ts: DateTime<Utc>,
    pub stream: Stream,
    pub text: String,
    /// The error type (pattern name) of the line, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub error: bool,
}

impl FoundLine {
    /// `service ts stream text`: the Copy / Download format.
    pub fn to_text(&self) -> String {
        let line = LogLine {
            ts: self.ts,
            stream: self.stream,
            text: self.text.clone(),
        };
        format!("{} {}", self.service, crate::logs::format_line(&line))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// Newest first.
    pub lines: Vec<FoundLine>,
    /// Pass back for the next (older) page; `None` when everything was read.
    pub cursor: Option<String>,
    pub scanned_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("bad cursor `{0}`: start over without one")]
    BadCursor(String),
    #[error("cannot read logs of {service} in {}: {source}", dir.display())]
    Io {
        service: String,
        dir: PathBuf,
        source: io::Error,
    },
}

/// The log patterns of every log check (and the shipped set): the error types the page filters by.
pub fn pattern_set(config: &Config) -> PatternSet {
    let mut specs: Vec<PatternSpec> = Vec::new();
    for check in config.checks.values() {
        if let CheckKind::Log { patterns, .. } = &check.kind {
            specs.extend(patterns.iter().map(crate::checks::monitor::spec_of));
        }
    }
    specs.extend(PatternSet::shipped().specs().iter().cloned());
    PatternSet::compile(&specs).unwrap_or_else(|_| PatternSet::shipped())
}

/// Whether a line reads as an error without a pattern: Python logging levels, gunicorn's, tracebacks.
fn looks_like_error(text: &str) -> bool {
    const MARKS: &[&str] = &[
        "ERROR:",
        "CRITICAL:",
        " - ERROR - ",
        " - CRITICAL - ",
        "[ERROR]",
        "[CRITICAL]",
        "Traceback (most recent call last)",
        "Exception in thread",
    ];
    MARKS.iter().any(|m| text.contains(m))
}

/// Where a service's reading continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// Before byte `offset` of the file with inode `inode`.
    At {
        inode: u64,
        offset: u64,
    },
    Done,
}

fn parse_cursor(cursor: &str) -> Result<BTreeMap<String, Pos>, SearchError> {
    let bad = || SearchError::BadCursor(cursor.chars().take(80).collect());
    let mut out = BTreeMap::new();
    for part in cursor.split(',').filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let name = it.next().ok_or_else(bad)?.to_string();
        let pos = match (it.next(), it.next(), it.next()) {
            (Some("done"), None, None) => Pos::Done,
            (Some(inode), Some(offset), None) => Pos::At {
                inode: inode.parse().map_err(|_| bad())?,
                offset: offset.parse().map_err(|_| bad())?,
            },
            _ => return Err(bad()),
        };
        out.insert(name, pos);
    }
    Ok(out)
}

fn format_cursor(positions: &BTreeMap<String, Option<Pos>>) -> Option<String> {
    if positions.values().all(|p| *p == Some(Pos::Done)) {
        return None;
    }
    let parts: Vec<String> = positions
        .iter()
        .filter_map(|(name, pos)| {
            Some(match (*pos)? {
                Pos::Done => format!("{name}:done"),
                Pos::At { inode, offset } => format!("{name}:{inode}:{offset}"),
            })
        })
        .collect();
    Some(parts.join(","))
}

/// `NAME.log`, `NAME.log.1`, ... that exist, newest first, with their inodes.
fn log_files(dir: &Path, name: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut rotated = Vec::new();
    let prefix = format!("{name}.log.");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(index) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<usize>().ok())
        else {
            continue;
        };
        rotated.push((index, entry.path()));
    }
    rotated.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    let current = dir.join(format!("{name}.log"));
    for path in std::iter::once(current).chain(rotated.into_iter().map(|(_, p)| p)) {
        // symlink_metadata: a symlink planted in the log dir is not followed out of it.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => out.push((meta.ino(), path)),
            _ => {}
        }
    }
    Ok(out)
}

/// Filters one live line the way [`search`] filters stored ones (for the live tail).
pub fn filter_live(
    query: &LogQuery,
    patterns: &PatternSet,
    redactor: &Redactor,
    service: &str,
    line: LogLine,
) -> Option<FoundLine> {
    let mut matcher = Matcher::new(query, patterns, redactor);
    if query.from.is_some_and(|from| line.ts < from) {
        return None;
    }
    matcher.check(service, line)
}

/// One service's lines, newest first.
struct Reverse {
    files: Vec<(u64, PathBuf)>,
    index: usize,
    file: Option<File>,
    /// The first file is read from here instead of its end (a cursor).
    resume_at: Option<u64>,
    /// Bytes `[0, pos)` of the current file are unread.
    pos: u64,
    /// The tail of a line whose beginning is before `pos`.
    carry: Vec<u8>,
    /// Complete lines of the current block in file order, as (start offset, bytes).
    ready: Vec<(u64, Vec<u8>)>,
    scanned: u64,
}

impl Reverse {
    fn open(dir: &Path, name: &str, start: Option<Pos>) -> io::Result<Reverse> {
        let mut files = log_files(dir, name)?;
        let mut resume_at = None;
        if let Some(Pos::At { inode, offset }) = start {
            match files.iter().position(|(ino, _)| *ino == inode) {
                Some(i) => {
                    files.drain(..i);
                    resume_at = Some(offset);
                }
                // That file was rotated out of existence: nothing older is left.
                None => files.clear(),
            }
        }
        if start == Some(Pos::Done) {
            files.clear();
        }
        Ok(Reverse {
            files,
            index: 0,
            file: None,
            resume_at,
            pos: 0,
            carry: Vec::new(),
            ready: Vec::new(),
            scanned: 0,
        })
    }

    fn inode(&self) -> u64 {
        self.files.get(self.index).map_or(0, |(i, _)| *i)
    }

    /// The next older line: (inode, start offset, bytes).
    fn next(&mut self) -> io::Result<Option<(u64, u64, Vec<u8>)>> {
        loop {
            if let Some((start, bytes)) = self.ready.pop() {
                return Ok(Some((self.inode(), start, bytes)));
            }
            if self.file.is_none() {
                let Some((_, path)) = self.files.get(self.index) else {
                    return Ok(None);
                };
                let file = match File::open(path) {
                    Ok(f) => f,
                    // Rotated away between listing and opening: go on with the next one.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.index += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let len = file.metadata()?.len();
                self.pos = self.resume_at.take().map_or(len, |o| o.min(len));
                self.carry.clear();
                self.file = Some(file);
            }
            if self.pos == 0 {
                if !self.carry.is_empty() {
                    self.ready.push((0, std::mem::take(&mut self.carry)));
                }
                self.file = None;
                if self.ready.is_empty() {
                    self.index += 1;
                } else {
                    // Pop the first line of this file before moving on (inode must still be this one).
                    let line = self.ready.pop();
                    let inode = self.inode();
                    self.index += 1;
                    return Ok(line.map(|(s, b)| (inode, s, b)));
                }
                continue;
            }
            let n = (self.pos as usize).min(BLOCK_BYTES);
            let start = self.pos - n as u64;
            let mut buf = vec![0u8; n];
            if let Some(file) = &self.file {
                file.read_exact_at(&mut buf, start)?;
            }
            self.scanned += n as u64;
            self.pos = start;
            buf.extend_from_slice(&self.carry);
            self.carry.clear();
            let mut line_start = if start == 0 { Some(0) } else { None };
            let mut first_nl = None;
            for nl in memchr::memchr_iter(b'\n', &buf) {
                if first_nl.is_none() {
                    first_nl = Some(nl);
                }
                if let Some(s) = line_start {
                    if nl > s {
                        self.ready.push((start + s as u64, buf[s..nl].to_vec()));
                    }
                }
                line_start = Some(nl + 1);
            }
            if let Some(s) = line_start {
                if s < buf.len() {
                    self.ready.push((start + s as u64, buf[s..].to_vec()));
                }
            }
            if start > 0 {
                let head_end = first_nl.unwrap_or(buf.len());
                // tend writes lines of at most MAX_LINE_BYTES; a longer run without a newline was not
                // written by it, and keeping it would let one odd file eat memory.
                if head_end <= MAX_CARRY_BYTES {
                    self.carry = buf[..head_end].to_vec();
                }
            }
        }
    }
}

struct Matcher<'a> {
    query: &'a LogQuery,
    needle: Option<memmem::Finder<'static>>,
    patterns: &'a PatternSet,
    redactor: &'a Redactor,
    lower: Vec<u8>,
}

impl<'a> Matcher<'a> {
    fn new(query: &'a LogQuery, patterns: &'a PatternSet, redactor: &'a Redactor) -> Matcher<'a> {
        Matcher {
            query,
            // Case-insensitive text search: lines are lowered into `lower` before the search.
            needle: query
                .text
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| memmem::Finder::new(t.to_ascii_lowercase().as_bytes()).into_owned()),
            patterns,
            redactor,
            lower: Vec::new(),
        }
    }

    /// The line as shown, if it passes every filter.
    fn check(&mut self, service: &str, line: LogLine) -> Option<FoundLine> {
        if self.query.to.is_some_and(|to| line.ts > to) {
            return None;
        }
        let text = self.redactor.text(&line.text).into_owned();
        if let Some(needle) = &self.needle {
            self.lower.clear();
            self.lower
                .extend(text.bytes().map(|b| b.to_ascii_lowercase()));
            needle.find(&self.lower)?;
        }
        // Cheap: the pattern set is a prefiltered RegexSet, and without a filter only the lines of one
        // page get this far.
        let classified = self.patterns.classify_text(&text);
        let error = match &classified {
            Some(c) => c.severity != Severity::Info,
            None => looks_like_error(&text),
        };
        if self.query.errors_only && !error {
            return None;
        }
        if let Some(kind) = &self.query.error_type {
            if classified.as_ref().map(|c| &c.pattern) != Some(kind) {
                return None;
            }
        }
        Some(FoundLine {
            service: service.to_string(),
            ts: line.ts,
            stream: line.stream,
            text,
            kind: classified.map(|c| c.pattern),
            error,
        })
    }
}

/// One service's reader with its look-ahead line.
struct Source {
    name: String,
    reader: Reverse,
    head: Option<(u64, u64, usize, FoundLine)>,
    /// Where to continue if `head` is empty.
    resume: Option<Pos>,
    exhausted: bool,
}

/// Runs one page of `query` over the logs in `dir`.
pub fn search(
    dir: &Path,
    query: &LogQuery,
    patterns: &PatternSet,
    redactor: &Redactor,
) -> Result<Page, SearchError> {
    let starts = match &query.cursor {
        Some(c) => parse_cursor(c)?,
        None => BTreeMap::new(),
    };
    let limit = if query.limit == 0 {
        DEFAULT_LIMIT
    } else {
        query.limit.min(MAX_LIMIT)
    };
    let budget = if query.scan_budget == 0 {
        DEFAULT_SCAN_BUDGET
    } else {
        query.scan_budget
    };
    let mut matcher = Matcher::new(query, patterns, redactor);
    let io_err = |service: &str, source| SearchError::Io {
        service: service.to_string(),
        dir: dir.to_path_buf(),
        source,
    };
    let mut sources = Vec::new();
    for name in &query.services {
        let start = starts.get(name).copied();
        let reader = Reverse::open(dir, name, start).map_err(|e| io_err(name, e))?;
        sources.push(Source {
            name: name.clone(),
            reader,
            head: None,
            resume: start,
            exhausted: false,
        });
    }
    let mut lines = Vec::new();
    let mut over_budget = false;
    loop {
        // Fill every head with its next matching line.
        for src in sources.iter_mut() {
            while src.head.is_none() && !src.exhausted {
                let scanned: u64 = src.reader.scanned;
                if scanned > budget {
                    over_budget = true;
                    break;
                }
                let Some((inode, start, bytes)) =
                    src.reader.next().map_err(|e| io_err(&src.name, e))?
                else {
                    src.exhausted = true;
                    src.resume = Some(Pos::Done);
                    break;
                };
                let text = String::from_utf8_lossy(&bytes);
                let Some(line) = parse_line(&text) else {
                    src.resume = Some(Pos::At {
                        inode,
                        offset: start,
                    });
                    continue;
                };
                if query.from.is_some_and(|from| line.ts < from) {
                    // Files are in time order: everything older is older still.
                    src.exhausted = true;
                    src.resume = Some(Pos::Done);
                    break;
                }
                match matcher.check(&src.name, line) {
                    Some(found) => src.head = Some((inode, start, bytes.len(), found)),
                    None => {
                        src.resume = Some(Pos::At {
                            inode,
                            offset: start,
                        })
                    }
                }
            }
        }
        if lines.len() >= limit || over_budget {
            break;
        }
        let newest = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|h| (i, h.3.ts)))
            .max_by_key(|(i, ts)| (*ts, std::cmp::Reverse(*i)));
        let Some((i, _)) = newest else { break };
        if let Some((inode, start, _, found)) = sources[i].head.take() {
            sources[i].resume = Some(Pos::At {
                inode,
                offset: start,
            });
            lines.push(found);
        }
    }
    let mut positions = BTreeMap::new();
    let mut scanned_bytes = 0;
    for src in &sources {
        scanned_bytes += src.reader.scanned;
        // A pulled but unshown line must come again: continue just after its end.
        let pos = match &src.head {
            Some((inode, start, len, _)) => Some(Pos::At {
                inode: *inode,
                offset: start + *len as u64,
            }),
            None => src.resume,
        };
        positions.insert(src.name.clone(), pos);
    }
    let cursor = if sources.iter().all(|s| s.exhausted && s.head.is_none()) {
        None
    } else {
        // A service never read from has no position yet: it starts at its end next time too, which
        // is only right if it was never reached; give it its current end explicitly.
        for src in &sources {
            if positions.get(&src.name).is_some_and(|p| p.is_none()) {
                if let Some((inode, path)) = src.reader.files.first() {
                    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    positions.insert(
                        src.name.clone(),
                        Some(Pos::At {
                            inode: *inode,
                            offset: len,
                        }),
                    );
                } else {
                    positions.insert(src.name.clone(), Some(Pos::Done));
                }
            }
        }
        format_cursor(&positions)
    };
    Ok(Page {
        lines,
        cursor,
        scanned_bytes,
    })
}

/// Every matching line (up to `max_lines`), oldest first, for a download. The bool says whether it
/// was cut at `max_lines`.
pub fn collect_all(
    dir: &Path,
    query: &LogQuery,
    patterns: &PatternSet,
    redactor: &Redactor,
    max_lines: usize,
) -> Result<(Vec<FoundLine>, bool), SearchError> {
    let mut q = query.clone();
    q.limit = MAX_LIMIT;
    q.scan_budget = u64::MAX;
    let mut all = Vec::new();
    loop {
        let page = search(dir, &q, patterns, redactor)?;
        all.extend(page.lines);
        if all.len() >= max_lines {
            all.truncate(max_lines);
            all.reverse();
            return Ok((all, true));
        }
        match page.cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    all.reverse();
    Ok((all, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(ms: i64, stream: &str, text: &str) -> String {
        let ts = Utc.timestamp_millis_opt(ms).unwrap();
        format!(
            "{} {stream} {text}\n",
            ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }

    fn query(services: &[&str]) -> LogQuery {
        LogQuery {
            services: services.iter().map(|s| s.to_string()).collect(),
            ..LogQuery::default()
        }
    }

    fn write(dir: &Path, name: &str, lines: &[String]) {
        std::fs::write(dir.join(name), lines.concat()).unwrap();
    }

    /// Every line once, newest first, whatever the page size and block boundaries.
    #[test]
    fn pages_cover_every_line_once_across_rotated_files_and_services() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, from: i64, n: i64| -> Vec<String> {
            (0..n)
                .map(|i| {
                    line(
                        (from + i) * 10,
                        "out",
                        &format!("{name} {} {}", from + i, "x".repeat((i % 7) as usize * 40)),
                    )
                })
                .collect()
        };
        write(dir.path(), "a.log.2", &mk("a", 0, 300));
        write(dir.path(), "a.log.1", &mk("a", 300, 300));
        write(dir.path(), "a.log", &mk("a", 600, 50));
        // b interleaves in time with a (odd times).
        let b: Vec<String> = (0..200)
            .map(|i| line(i * 20 + 5, "err", &format!("b {i}")))
            .collect();
        write(dir.path(), "b.log", &b);
        let patterns = PatternSet::shipped();
        let redactor = Redactor::default();
        for limit in [1, 7, 1000] {
            let mut q = query(&["a", "b"]);
            q.limit = limit;
            let mut seen = Vec::new();
            loop {
                let page = search(dir.path(), &q, &patterns, &redactor).unwrap();
                seen.extend(page.lines);
                match page.cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 650 + 200, "limit {limit}");
            assert!(seen.windows(2).all(|w| w[0].ts >= w[1].ts), "newest first");
            assert_eq!(
                seen[0].text.split(' ').take(2).collect::<Vec<_>>(),
                ["a", "649"]
            );
            assert_eq!(seen.last().unwrap().text, "a 0 ");
        }
    }

    #[test]
    fn filters_text_type_errors_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec![
            line(1000, "out", "INFO:send_text_bot:Telethon client started"),
            line(2000, "err", "INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait"),
            line(3000, "err", "ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381 в диалогах"),
            line(4000, "err", "ERROR:send_text_bot:send_text failed: ValueError: boom"),
            line(5000, "out", "INFO:send_text_bot:hello WORLD"),
        ];
        write(dir.path(), "s.log", &lines);
        let patterns = PatternSet::shipped();
        let redactor = Redactor::default();
        let run = |q: &LogQuery| -> Vec<i64> {
            search(dir.path(), q, &patterns, &redactor)
                .unwrap()
                .lines
                .iter()
                .map(|l| l.ts.timestamp_millis())
                .collect()
        };
        let mut q = query(&["s"]);
        q.text = Some("world".into());
        assert_eq!(run(&q), [5000]);
        let mut q = query(&["s"]);
        q.error_type = Some("Cannot find chat".into());
        assert_eq!(run(&q), [3000]);
        let mut q = query(&["s"]);
        q.errors_only = true;
        assert_eq!(
            run(&q),
            [4000, 3000, 2000],
            "warnings count as errors, info does not"
        );
        let mut q = query(&["s"]);
        q.from = Some(Utc.timestamp_millis_opt(2000).unwrap());
        q.to = Some(Utc.timestamp_millis_opt(4000).unwrap());
        assert_eq!(run(&q), [4000, 3000, 2000]);
        let (all, cut) = collect_all(dir.path(), &query(&["s"]), &patterns, &redactor, 3).unwrap();
        assert!(cut);
        assert_eq!(
            all.iter()
                .map(|l| l.ts.timestamp_millis())
                .collect::<Vec<_>>(),
            [3000, 4000, 5000],
            "the newest lines, oldest first"
        );
    }

    #[test]
    fn bad_cursors_are_refused_and_foreign_inodes_read_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.log", &[line(1, "out", "x")]);
        let patterns = PatternSet::shipped();
        let mut q = query(&["s"]);
        q.cursor = Some("s:../../etc/passwd".into());
        assert!(matches!(
            search(dir.path(), &q, &patterns, &Redactor::default()),
            Err(SearchError::BadCursor(_))
        ));
        q.cursor = Some("s:1:999999".into());
        let page = search(dir.path(), &q, &patterns, &Redactor::default()).unwrap();
        assert!(page.lines.is_empty() && page.cursor.is_none());
    }
}
