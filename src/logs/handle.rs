//! [`ServiceLog`], the handle through which the rest of tend uses one service's log. It only sends
//! messages to the writer and starts readers; it holds no log state itself (no locks, no ring copy).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, Ring};
use super::capture::{
    spawn_reader, Capture, Carried, LineSink, ReaderControl, LINE_QUEUE_CAPACITY,
};
use super::format::now_millis;
use super::loss::LogLoss;
use super::tail::{log_path, read_tail};
use super::writer::{Msg, StoppedGuard, Writer};
use super::{LogError, LogLine, LogSettings, SharedLine, Stream};

/// Lines a [`ServiceLog::subscribe`] receiver may fall behind before it sees `Lagged`.
pub const BROADCAST_CAPACITY: usize = 4096;

/// Handle to one service's log writer. Clone = another handle to the same writer.
///
/// The writer stops when [`ServiceLog::close`] is called or when every handle and every running
/// capture is gone; it writes everything accepted before that.
#[derive(Clone)]
pub struct ServiceLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `LOG_DIR/NAME.log`.
    path: PathBuf,
    /// To the writer; FIFO, so order of sending is order of writing.
    tx: mpsc::UnboundedSender<Msg>,
    /// Bounds captured lines in flight to the writer (see `capture`).
    budget: Arc<Semaphore>,
    /// Only for `subscribe`; the writer sends.
    broadcast: broadcast::Sender<SharedLine>,
    /// Becomes true when the writer thread has ended.
    stopped: watch::Receiver<bool>,
    /// The write failure under way (`None` while the file takes every line).
    loss: watch::Receiver<Option<LogLoss>>,
}

impl std::fmt::Debug for ServiceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// A service name becomes a file name: refuse anything that could point elsewhere.
fn check_name(name: &str) -> Result<(), LogError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(LogError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl ServiceLog {
    /// Creates LOG_DIR if needed, opens LOG_DIR/NAME.log for append, loads its last `ring_lines` lines
    /// from the files on disk into the ring (so `tail` works right after a tend restart), and starts the
    /// writer.
    pub fn open(settings: LogSettings) -> Result<ServiceLog, LogError> {
        check_name(&settings.name)?;
        std::fs::create_dir_all(&settings.dir).map_err(|source| LogError::CreateDir {
            path: settings.dir.clone(),
            source,
        })?;
        let path = log_path(&settings.dir, &settings.name);
        let ring = Ring::from_lines(
            settings.ring_lines,
            read_tail(&settings.dir, &settings.name, settings.ring_lines)?,
        );
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (loss_tx, loss) = watch::channel(None);
        let writer =
            Writer::open(&settings, ring, broadcast.clone(), loss_tx).map_err(|source| {
                LogError::Open {
                    path: path.clone(),
                    source,
                }
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stopped_tx, stopped) = watch::channel(false);
        let guard = StoppedGuard(stopped_tx);
        std::thread::Builder::new()
            .name(format!("log-{}", settings.name))
            .spawn(move || writer.run(rx, guard))
            .map_err(|source| LogError::Spawn {
                name: settings.name.clone(),
                source,
            })?;
        Ok(ServiceLog {
            inner: Arc::new(Inner {
                path,
                tx,
                budget: Arc::new(Semaphore::new(LINE_QUEUE_CAPACITY)),
                broadcast,
                stopped,
                loss,
            }),
        })
    }

    /// The write failure under way, if any: since when, why, lines lost and lines kept in memory.
    /// For status, diagnose, the page and /metrics while it lasts; `None` again once the marker is
    /// written.
    pub fn write_failure(&self) -> Option<LogLoss> {
        self.inner.loss.borrow().clone()
    }

    /// Captures one run of the service: spawns a reader task per pipe (needs a tokio runtime). The
    /// returned [`Capture`] resolves when both pipes hit end-of-file and every line read was accepted by
    /// the writer, so a marker written after it comes after the run's last line. Either pipe may be None.
    pub fn capture(&self, stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Capture {
        self.capture_pipes(stdout, stderr, Carried::default())
    }

    /// [`ServiceLog::capture`] for any pair of pipes (the FIFOs of a run, see
    /// [`crate::process::OutputPipes`]), continuing the partial lines a suspended capture handed over.
    pub fn capture_pipes<O, E>(
        &self,
        stdout: Option<O>,
        stderr: Option<E>,
        mut carried: Carried,
    ) -> Capture
    where
        O: AsyncRead + Unpin + Send + 'static,
        E: AsyncRead + Unpin + Send + 'static,
    {
        let stop = CancellationToken::new();
        let suspend = CancellationToken::new();
        let control = |carried: Vec<u8>| ReaderControl {
            stop: stop.clone(),
            suspend: suspend.clone(),
            carried,
        };
        let mut readers = Vec::with_capacity(2);
        if let Some(pipe) = stdout {
            let carried = control(carried.take(Stream::Stdout));
            readers.push(spawn_reader(pipe, Stream::Stdout, self.sink(), carried));
        }
        if let Some(pipe) = stderr {
            let carried = control(carried.take(Stream::Stderr));
            readers.push(spawn_reader(pipe, Stream::Stderr, self.sink(), carried));
        }
        Capture::new(readers, stop, suspend)
    }

    /// Captures any byte source as `stream`, exactly as [`ServiceLog::capture`] captures a pipe; for
    /// benchmarks and tests that should not depend on process spawning.
    pub fn capture_reader<R>(&self, reader: R, stream: Stream) -> Capture
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let stop = CancellationToken::new();
        let suspend = CancellationToken::new();
        let control = ReaderControl {
            stop: stop.clone(),
            suspend: suspend.clone(),
            carried: Vec::new(),
        };
        let reader = spawn_reader(reader, stream, self.sink(), control);
        Capture::new(vec![reader], stop, suspend)
    }

    fn sink(&self) -> LineSink {
        LineSink {
            tx: self.inner.tx.clone(),
            budget: Arc::clone(&self.inner.budget),
        }
    }

    /// Writes a lifecycle line (stream `Tend`), e.g. "spawned pid 1234 (reason: crash, exit code 1)".
    /// Returns once the writer accepted it. Text with newlines becomes several lines, since a stored
    /// line never contains one. Ignored (with a debug trace) after [`ServiceLog::close`].
    pub async fn marker(&self, text: impl Into<String>) {
        self.try_marker(text);
    }

    /// [`ServiceLog::marker`] for code that cannot await (the supervisor actor): the writer's queue is
    /// unbounded for markers, so this never blocks, and order with captured lines is kept.
    pub fn try_marker(&self, text: impl Into<String>) {
        let text = text.into();
        let mut batch = Batch::with_capacity(now_millis(), Stream::Tend, text.len(), 1);
        for line in text.split('\n') {
            batch.push_str(line.strip_suffix('\r').unwrap_or(line));
        }
        let msg = Msg::Lines {
            batch,
            budget: None,
        };
        if self.inner.tx.send(msg).is_err() {
            tracing::debug!(path = %self.inner.path.display(), "marker dropped: the log is closed");
        }
    }

    /// The last `n` lines and a receiver of every line after them, taken at one point of the writer's
    /// order: nothing falls between the two, nothing comes twice (`tend logs -f`).
    pub async fn follow(
        &self,
        n: usize,
        stream: Option<Stream>,
    ) -> (Vec<LogLine>, broadcast::Receiver<SharedLine>) {
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(Msg::Follow { n, stream, reply }).is_ok() {
            if let Ok(pair) = answer.await {
                return pair;
            }
        }
        (Vec::new(), self.inner.broadcast.subscribe())
    }

    /// The last `n` lines in the ring (oldest first), optionally of one stream only. Empty once closed.
    pub async fn tail(&self, n: usize, stream: Option<Stream>) -> Vec<LogLine> {
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(Msg::Tail { n, stream, reply }).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Every line accepted from now on (captured and markers), in order. A receiver that falls more
    /// than [`BROADCAST_CAPACITY`] lines behind gets `RecvError::Lagged` and continues from there.
    pub fn subscribe(&self) -> broadcast::Receiver<SharedLine> {
        self.inner.broadcast.subscribe()
    }

    /// Resolves when everything accepted so far has been written and flushed to the file (to the
    /// operating system; no fsync). Errs if some of it could not be written since the last flush, or if
    /// the log is closed.
    pub async fn flush(&self) -> Result<(), LogError> {
        let closed = || LogError::Closed {
            path: self.inner.path.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(reply))
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| closed())?
            .map_err(|source| LogError::Write {
                path: self.inner.path.clone(),
                source,
            })
    }

    /// Changes rotation limits (config reload). Rotated files beyond the new `keep` are deleted now; a
    /// smaller `max_size` applies from the next line.
    pub fn set_limits(&self, max_size: u64, keep: usize) {
        let _ = self.inner.tx.send(Msg::SetLimits { max_size, keep });
    }

    /// `LOG_DIR/NAME.log`.
    pub fn path(&self) -> PathBuf {
        self.inner.path.clone()
    }

    /// Stops the writer after writing everything accepted so far; returns when it has stopped. Lines
    /// captured after this are read (so the service is not blocked) but dropped.
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Msg::Close);
        let mut stopped = self.inner.stopped.clone();
        // Err means the writer is gone anyway.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}
