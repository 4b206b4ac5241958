//! The writer: the single owner of one service's log file, rotated files, ring buffer and broadcast.
//! Everything reaches it as a [`Msg`] on one FIFO channel, which is what orders lines and markers:
//! whatever was sent first is written, kept and published first.
//!
//! It runs on its own thread, not a tokio task, because file writes block: a slow or full disk must
//! stall only this service's log, never the runtime that runs the supervisor, checks and web UI.
//!
//! Must not: read pipes, spawn or signal processes, or fail. A write error is reported through
//! `tracing` (once per episode) and starts an [`Episode`]: the newest lines are kept in memory, the
//! oldest counted lost, the condition published ([`LogLoss`], read by `ServiceLog::write_failure`), and
//! a retry at most every `RETRY_INTERVAL` writes one marker ("N lines, B bytes lost: …, from T1 to T2")
//! and the kept lines once the file takes them. The ring and broadcast keep getting every line meanwhile.
//!
//! Architecture invariant: a line is written whole into exactly one file; rotation happens only
//! between lines.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit};

use super::batch::{Batch, Ring};
use super::format::format_timestamp;
use super::loss::{describe, Episode, LogLoss, RETAIN_BYTES};
use super::tail::{rotated_files, rotated_path};
use super::{LogLine, SharedLine, Stream};

/// Size of the in-memory write buffer; flushed whenever the queue runs empty.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How often (at most) the writer checks, when it wakes up, that `NAME.log` is still the file it has
/// open (someone may have removed or moved it). Explicit flushes always check.
const FILE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Published lines the writer keeps a reference to: more than a receiver can be behind without
/// being told it lagged.
const PUBLISHED_KEPT: usize = 2 * super::BROADCAST_CAPACITY;
/// While writing fails, how often (at most, as lines arrive) the writer tries the file again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// What the writer can be asked to do; see [`ServiceLog`](super::ServiceLog) for the callers.
pub(crate) enum Msg {
    /// Lines to write, keep and publish, in order. `budget` holds the readers' queue permits, released
    /// when the message is dropped after handling.
    Lines {
        batch: Batch,
        budget: Option<OwnedSemaphorePermit>,
    },
    Tail {
        n: usize,
        stream: Option<Stream>,
        reply: oneshot::Sender<Vec<LogLine>>,
    },
    /// Tail plus a receiver subscribed right after it (see `ServiceLog::follow`).
    Follow {
        n: usize,
        stream: Option<Stream>,
        reply: oneshot::Sender<(Vec<LogLine>, tokio::sync::broadcast::Receiver<SharedLine>)>,
    },
    /// Flush to the file; replies with the first write error since the previous flush, if any.
    Flush(oneshot::Sender<io::Result<()>>),
    SetLimits {
        max_size: u64,
        keep: usize,
    },
    Close,
}

/// The open `NAME.log`.
struct OpenLog {
    out: BufWriter<File>,
    /// Bytes in the file, including those still in `out`'s buffer.
    size: u64,
    /// (device, inode) of the file, to notice it being removed or replaced.
    id: (u64, u64),
}

/// State of one service's writer thread.
pub(crate) struct Writer {
    /// `LOG_DIR/NAME.log`.
    path: PathBuf,
    /// Directory and service name, to find rotated files.
    dir: PathBuf,
    name: String,
    /// Rotate before a line that would take the file past this many bytes.
    max_size: u64,
    /// Rotated files kept (`NAME.log.1` ..= `NAME.log.{keep}`).
    keep: usize,
    /// `None` after a failure, until the next line reopens it.
    file: Option<OpenLog>,
    /// The newest `ring_lines` lines.
    ring: Ring,
    broadcast: broadcast::Sender<SharedLine>,
    /// The most recently published lines, held only so that their last reference is usually dropped
    /// here: tokio's broadcast drops a value on the receiver's thread otherwise, and glibc's allocator
    /// is slow and contended when one thread allocates and another frees (a subscriber cut capture
    /// throughput by 10x without this).
    published: VecDeque<SharedLine>,
    /// The last timestamp formatted (consecutive batches often share one).
    ts_cache: (DateTime<Utc>, String),
    /// `"<timestamp> <stream> "` of the batch being written; reused to avoid an allocation per batch.
    prefix: String,
    /// A write failure is being reported: warn once, not per line.
    failing: bool,
    /// First error since the last [`Msg::Flush`], returned by it.
    unreported: Option<io::Error>,
    last_file_check: Instant,
    /// The write failure under way, if any, with the lines kept meanwhile.
    episode: Option<Episode>,
    /// When the file was last tried during an episode.
    last_retry: Instant,
    /// Publishes the episode to the handle (`None` while all is well).
    loss: watch::Sender<Option<LogLoss>>,
}

/// Sets the `stopped` flag when the writer thread ends, however it ends.
pub(crate) struct StoppedGuard(pub(crate) watch::Sender<bool>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Opens `path` for appending (creating it, and its directory if that vanished).
fn open_log(path: &Path) -> io::Result<OpenLog> {
    let mut options = OpenOptions::new();
    // Read access only for peeking at the last byte below; every write goes to the end (O_APPEND).
    options.create(true).append(true).read(true);
    let mut file = match options.open(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            options.open(path)?
        }
        other => other?,
    };
    let meta = file.metadata()?;
    let mut size = meta.len();
    if size > 0 {
        // A writer that died mid-line left no newline at the end; start on a fresh line so that ours
        // and the old partial one both stay separate lines.
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            size += 1;
        }
    }
    Ok(OpenLog {
        out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        size,
        id: (meta.dev(), meta.ino()),
    })
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

impl Writer {
    /// Opens `LOG_DIR/NAME.log`; this first open reports its failure to the caller, later ones only log.
    pub(crate) fn open(
        settings: &super::LogSettings,
        ring: Ring,
        broadcast: broadcast::Sender<SharedLine>,
        loss: watch::Sender<Option<LogLoss>>,
    ) -> io::Result<Writer> {
        let path = super::tail::log_path(&settings.dir, &settings.name);
        let file = open_log(&path)?;
        Ok(Writer {
            path,
            dir: settings.dir.clone(),
            name: settings.name.clone(),
            max_size: settings.max_size,
            keep: settings.keep,
            file: Some(file),
            ring,
            broadcast,
            published: VecDeque::new(),
            ts_cache: (DateTime::<Utc>::MIN_UTC, String::new()),
            prefix: String::new(),
            failing: false,
            unreported: None,
            last_file_check: Instant::now(),
            episode: None,
            last_retry: Instant::now(),
            loss,
        })
    }

    /// The thread body: handle messages until `Close` or every sender is gone; flush when idle.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, stopped: StoppedGuard) {
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // The queue ran dry: make what we have visible on disk before sleeping.
                    self.flush_file();
                    match rx.blocking_recv() {
                        Some(msg) => {
                            if self.last_file_check.elapsed() >= FILE_CHECK_INTERVAL {
                                self.check_file_identity();
                            }
                            msg
                        }
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Lines { batch, budget } => {
                    self.accept(batch);
                    drop(budget);
                }
                Msg::Tail { n, stream, reply } => {
                    let _ = reply.send(self.ring.tail(n, stream));
                }
                Msg::Follow { n, stream, reply } => {
                    let _ = reply.send((self.ring.tail(n, stream), self.broadcast.subscribe()));
                }
                Msg::Flush(reply) => {
                    if self.episode.is_some() {
                        // An explicit flush tries the file at once: the caller wants to know.
                        self.retry(true);
                    }
                    self.check_file_identity();
                    self.flush_file();
                    let _ = reply.send(self.unreported.take().map_or(Ok(()), Err));
                }
                Msg::SetLimits { max_size, keep } => {
                    self.max_size = max_size;
                    self.keep = keep;
                    self.prune_rotated();
                }
                Msg::Close => break,
            }
        }
        self.flush_file();
        drop(stopped);
    }

    /// Writes, publishes and keeps one batch of lines.
    fn accept(&mut self, batch: Batch) {
        self.write_batch(&batch);
        // Per-line shared copies only for subscribers. A receiver subscribing concurrently misses
        // nothing it is owed: it only gets lines accepted after `subscribe` returned, and those are
        // handled after this check. Lagging receivers find out themselves (`Lagged`).
        if self.broadcast.receiver_count() > 0 {
            for index in 0..batch.len() {
                let line = Arc::new(batch.log_line(index));
                if self.published.len() >= PUBLISHED_KEPT {
                    self.published.pop_front();
                }
                self.published.push_back(Arc::clone(&line));
                let _ = self.broadcast.send(line);
            }
        } else {
            self.published.clear();
        }
        self.ring.push(batch);
    }

    fn write_batch(&mut self, batch: &Batch) {
        if self.ts_cache.0 != batch.ts {
            self.ts_cache = (batch.ts, format_timestamp(batch.ts));
        }
        self.prefix.clear();
        self.prefix.push_str(&self.ts_cache.1);
        self.prefix.push(' ');
        self.prefix.push_str(batch.stream.tag());
        self.prefix.push(' ');
        for line in batch.lines_with_newline() {
            self.write_line(line, batch.ts);
        }
        if let Some(episode) = &self.episode {
            self.loss.send_replace(Some(episode.status()));
        }
    }

    /// Writes one line (`self.prefix` + `line`, which ends in `\n`), rotating first if it would not fit.
    /// During a write failure the line is kept in memory instead (see [`Episode`]).
    fn write_line(&mut self, line: &str, ts: DateTime<Utc>) {
        let len = (self.prefix.len() + line.len()) as u64;
        if self.episode.is_some() && !self.retry(false) {
            self.keep(line, ts);
            return;
        }
        if self.file.is_none() && !self.reopen() {
            self.keep(line, ts);
            return;
        }
        let must_rotate = self
            .file
            .as_ref()
            .is_some_and(|f| f.size > 0 && f.size.saturating_add(len) > self.max_size);
        if must_rotate {
            self.rotate();
            if self.episode.is_some() {
                // The rotation's flush failed: this line joins the kept ones, in order.
                self.keep(line, ts);
                return;
            }
        }
        let Some(file) = self.file.as_mut() else {
            self.keep(line, ts);
            return;
        };
        let written = write_record(&mut file.out, &self.prefix, line);
        match written {
            Ok(()) => file.size += len,
            Err(err) => {
                self.fail("write to", err);
                self.keep(line, ts);
            }
        }
    }

    /// Keeps one record in memory during an episode (`fail` has started it).
    fn keep(&mut self, line: &str, ts: DateTime<Utc>) {
        if let Some(episode) = self.episode.as_mut() {
            episode.keep(ts, format!("{}{line}", self.prefix));
        }
    }

    /// During an episode: tries the file again (at most every `RETRY_INTERVAL`, unless `now`); on
    /// success writes the marker and the kept lines, ends the episode and returns true.
    fn retry(&mut self, now: bool) -> bool {
        if !now && self.last_retry.elapsed() < RETRY_INTERVAL {
            return false;
        }
        self.last_retry = Instant::now();
        let Some(episode) = self.episode.as_mut() else {
            return true;
        };
        let mut file = match open_log(&self.path) {
            Ok(file) => file,
            Err(err) => {
                episode.set_error(describe(&err));
                return false;
            }
        };
        let (marker, text) = episode.recovery_text(Utc::now());
        let written = file
            .out
            .write_all(text.as_bytes())
            .and_then(|()| file.out.flush());
        if let Err(err) = written {
            episode.set_error(describe(&err));
            // Whatever part of it reached the disk may show twice after the next try: better than lost.
            drop(file.out.into_parts());
            return false;
        }
        file.size += text.len() as u64;
        self.file = Some(file);
        let status = episode.status();
        self.episode = None;
        self.failing = false;
        self.loss.send_replace(None);
        match marker {
            Some(marker) => {
                tracing::warn!(path = %self.path.display(), "service log is writable again; {marker}");
                let mut batch = Batch::with_capacity(Utc::now(), Stream::Tend, marker.len(), 1);
                batch.push_str(&marker);
                self.ring.push(batch);
            }
            None => tracing::info!(path = %self.path.display(),
                "service log is writable again; nothing lost ({} lines written late)", status.lines_waiting),
        }
        true
    }

    /// NAME.log -> NAME.log.1 -> ... -> NAME.log.{keep}; the oldest is deleted; a fresh NAME.log opened.
    fn rotate(&mut self) {
        if let Some(mut file) = self.file.take() {
            if let Err(err) = file.out.flush() {
                self.fail("write to", err);
            }
        }
        let shifted = self.shift_rotated();
        if let Err(err) = &shifted {
            tracing::warn!(path = %self.path.display(), error = %err,
                "cannot rotate service log; appending to it until the next rotation attempt");
        }
        self.prune_rotated();
        if self.reopen() && shifted.is_err() {
            // Pretend the file is fresh so we retry only after another `max_size` bytes, not per line.
            if let Some(file) = self.file.as_mut() {
                file.size = 0;
            }
        }
    }

    fn shift_rotated(&self) -> io::Result<()> {
        if self.keep == 0 {
            return remove_if_exists(&self.path);
        }
        remove_if_exists(&rotated_path(&self.path, self.keep))?;
        for index in (1..self.keep).rev() {
            rename_if_exists(
                &rotated_path(&self.path, index),
                &rotated_path(&self.path, index + 1),
            )?;
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))
    }

    /// Deletes rotated files beyond `keep` (left by a larger `keep` before a reload).
    fn prune_rotated(&self) {
        let result = rotated_files(&self.dir, &self.name).and_then(|files| {
            files
                .into_iter()
                .filter(|(index, _)| *index > self.keep)
                .try_for_each(|(_, path)| remove_if_exists(&path))
        });
        if let Err(err) = result {
            tracing::warn!(path = %self.path.display(), error = %err,
                "cannot delete old rotated service logs; check permissions on the log directory");
        }
    }

    /// Opens NAME.log again after a failure or rotation. False (and reported) if it cannot.
    fn reopen(&mut self) -> bool {
        match open_log(&self.path) {
            Ok(file) => {
                self.file = Some(file);
                if self.failing {
                    self.failing = false;
                    tracing::info!(path = %self.path.display(), "service log is writable again");
                }
                true
            }
            Err(err) => {
                self.fail("open", err);
                false
            }
        }
    }

    /// Reports a write failure (once per episode), starts the episode and drops the file; the bytes
    /// still in the write buffer are counted lost.
    fn fail(&mut self, operation: &str, err: io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(path = %self.path.display(), error = %err,
                "cannot {operation} service log; the newest lines are kept in memory, the rest counted, and tend retries");
        }
        let now = Utc::now();
        let episode = self
            .episode
            .get_or_insert_with(|| Episode::new(now, describe(&err), RETAIN_BYTES));
        episode.set_error(describe(&err));
        self.last_retry = Instant::now();
        if self.unreported.is_none() {
            self.unreported = Some(err);
        }
        if let Some(file) = self.file.take() {
            // Drop without the implicit flush-on-drop: that would just fail again.
            let (_, buffered) = file.out.into_parts();
            let buffered = buffered.unwrap_or_else(|panicked| panicked.into_inner());
            let lines = buffered.iter().filter(|&&b| b == b'\n').count() as u64;
            episode.lose(now, lines, buffered.len() as u64);
        }
        self.loss.send_replace(Some(episode.status()));
    }

    fn flush_file(&mut self) {
        if let Some(file) = self.file.as_mut() {
            if let Err(err) = file.out.flush() {
                self.fail("write to", err);
            }
        }
    }

    /// If NAME.log is no longer the file we hold open (removed, or moved away by hand or by an external
    /// logrotate), start a new NAME.log and put the still-buffered bytes there rather than into the old one.
    fn check_file_identity(&mut self) {
        self.last_file_check = Instant::now();
        let Some(file) = self.file.as_ref() else {
            return;
        };
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == file.id);
        if same {
            return;
        }
        tracing::info!(path = %self.path.display(), "service log was moved or removed; starting a new file");
        let Some(old) = self.file.take() else {
            return;
        };
        let (_old_file, buffered) = old.out.into_parts();
        let buffered = buffered.unwrap_or_else(|panicked| panicked.into_inner());
        if !self.reopen() {
            // `reopen` started an episode: the buffered records (whole ones) wait with the rest.
            if let Some(episode) = self.episode.as_mut() {
                episode.keep(Utc::now(), String::from_utf8_lossy(&buffered).into_owned());
            }
            return;
        }
        if let Some(file) = self.file.as_mut() {
            match file.out.write_all(&buffered) {
                Ok(()) => file.size += buffered.len() as u64,
                Err(err) => self.fail("write to", err),
            }
        }
    }
}

fn write_record(out: &mut BufWriter<File>, prefix: &str, line: &str) -> io::Result<()> {
    out.write_all(prefix.as_bytes())?;
    out.write_all(line.as_bytes())
}
