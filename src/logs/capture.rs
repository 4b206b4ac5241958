//! Reader tasks: one per pipe per run. Each reads its pipe continuously, splits the bytes into lines,
//! stamps them and hands them to the writer in batches. This module owns only that; it must not touch the
//! log file, the ring or the broadcast (the writer's), nor the child process (the core's).
//!
//! Why batches: one read of the pipe (up to [`READ_BUFFER_BYTES`]) becomes one message to the writer
//! (more only past [`MAX_BATCH_LINES`] lines), so a burst costs one channel operation and two
//! allocations per read, not per line; and the lines of one write by the service (a Python traceback,
//! say) reach the file next to each other instead of interleaved with the other pipe. All lines of one
//! read share one timestamp: they were read at the same instant.
//!
//! Backpressure: the lines in flight to the writer are bounded by [`LINE_QUEUE_CAPACITY`] (a semaphore
//! whose permits travel with the batch and are released when the writer is done with it). Only when
//! that many lines wait does a reader stop reading, so the service is blocked only if the disk is slower
//! than the service for a long time, and never by tend doing something else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, RawBatch};
use super::format::now_millis;
use super::split::LineSplitter;
use super::writer::Msg;
use super::Stream;

/// Bytes asked for per read of a pipe (the default Linux pipe buffer is this size).
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Most lines waiting for the writer, per service, before readers pause.
pub const LINE_QUEUE_CAPACITY: usize = 16 * 1024;
/// Most lines in one message to the writer; keeps one batch well under the queue capacity.
pub const MAX_BATCH_LINES: usize = 1024;

/// One run's capture, returned by [`ServiceLog::capture`](super::ServiceLog::capture).
///
/// Await it (it is a `Future<Output = ()>`) to know that both pipes reached end-of-file and every line
/// was accepted by the writer, so anything written to the log afterwards comes after the run's output.
/// Dropping it does not stop the readers: they still drain the pipes to the end, so no output is lost.
#[derive(Debug)]
pub struct Capture {
    /// Reader tasks not yet seen finishing, each with its stream.
    readers: Vec<(Stream, JoinHandle<Vec<u8>>)>,
    /// Cancelled by [`Capture::abort`].
    stop: CancellationToken,
    /// Cancelled by [`Capture::suspend`].
    suspend: CancellationToken,
}

/// The bytes of unfinished last lines a suspended capture was holding, to be carried into the next
/// capture of the same pipes (`tend reexec`), so a line split across the switch is stored once, whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stdout: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr: Vec<u8>,
}

impl Carried {
    pub(crate) fn take(&mut self, stream: Stream) -> Vec<u8> {
        match stream {
            Stream::Stderr => std::mem::take(&mut self.stderr),
            _ => std::mem::take(&mut self.stdout),
        }
    }
}

impl Capture {
    pub(crate) fn new(
        readers: Vec<(Stream, JoinHandle<Vec<u8>>)>,
        stop: CancellationToken,
        suspend: CancellationToken,
    ) -> Capture {
        Capture {
            readers,
            stop,
            suspend,
        }
    }

    /// Stops reading at once and returns the unfinished last lines instead of storing them, leaving
    /// every unread byte in the pipes for the next reader. Every complete line read before is accepted
    /// by the writer when this returns (flush the log to have it on disk).
    pub async fn suspend(self) -> Carried {
        self.suspend.cancel();
        let mut carried = Carried::default();
        for (stream, reader) in self.readers {
            match reader.await {
                Ok(bytes) if stream == Stream::Stderr => carried.stderr = bytes,
                Ok(bytes) => carried.stdout = bytes,
                Err(err) => {
                    tracing::error!(error = %err, "a log reader task failed while suspending")
                }
            }
        }
        carried
    }

    /// Stops reading now, for pipes that never reach end-of-file (a grandchild that inherited the pipe
    /// keeps it open after the service exited). Bytes already read are still delivered, including a
    /// partial last line; bytes still in the pipe are not read. The capture then resolves.
    pub fn abort(&self) {
        self.stop.cancel();
    }

    /// Same as awaiting the capture itself.
    pub async fn drained(self) {
        self.await
    }

    /// True once every reader finished (end-of-file or abort) and handed over its last line.
    pub fn is_drained(&self) -> bool {
        self.readers.iter().all(|(_, r)| r.is_finished())
    }
}

impl Future for Capture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        while let Some((_, reader)) = self.readers.last_mut() {
            match Pin::new(reader).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    if let Err(err) = result {
                        if err.is_panic() {
                            tracing::error!(error = %err, "a log reader task panicked; its pipe is no longer captured");
                        }
                    }
                    self.readers.pop();
                }
            }
        }
        Poll::Ready(())
    }
}

/// A reader's way to the writer: the message channel plus the shared line budget.
#[derive(Clone)]
pub(crate) struct LineSink {
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    pub(crate) budget: Arc<Semaphore>,
}

/// How a reader ends: at end-of-file or `stop` it stores its partial last line; at `suspend` it
/// returns it instead.
pub(crate) struct ReaderControl {
    pub(crate) stop: CancellationToken,
    pub(crate) suspend: CancellationToken,
    /// Partial line carried over from the previous reader of this pipe.
    pub(crate) carried: Vec<u8>,
}

/// Spawns the task that captures one pipe until end-of-file, `stop` or `suspend`.
pub(crate) fn spawn_reader<R>(
    pipe: R,
    stream: Stream,
    sink: LineSink,
    control: ReaderControl,
) -> (Stream, JoinHandle<Vec<u8>>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    (stream, tokio::spawn(read_pipe(pipe, stream, sink, control)))
}

async fn read_pipe<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    mut sink: LineSink,
    control: ReaderControl,
) -> Vec<u8> {
    let ReaderControl {
        stop,
        suspend,
        carried,
    } = control;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut splitter = LineSplitter::new();
    let mut batches = Batches::new(stream);
    if !carried.is_empty() {
        batches.start(now_millis(), carried.len());
        splitter.feed(&carried, &mut |line: &[u8]| batches.push(line));
    }
    // Set once the writer is gone: keep draining so the service does not get SIGPIPE, but drop lines.
    let mut writer_gone = false;
    loop {
        let read = tokio::select! {
            biased;
            () = suspend.cancelled() => {
                if !writer_gone {
                    sink.send(&mut batches).await;
                }
                return splitter.take_pending();
            }
            () = stop.cancelled() => break,
            read = pipe.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(stream = stream.tag(), error = %err, "reading a service pipe failed; capture of this pipe ends");
                break;
            }
        };
        if writer_gone {
            continue;
        }
        batches.start(now_millis(), n);
        splitter.feed(&buf[..n], &mut |line: &[u8]| batches.push(line));
        writer_gone = !sink.send(&mut batches).await;
    }
    batches.start(now_millis(), splitter.pending_len());
    splitter.finish(&mut |line: &[u8]| batches.push(line));
    if !writer_gone {
        sink.send(&mut batches).await;
    }
    Vec::new()
}

/// The batches being filled from one read: a new one starts every [`MAX_BATCH_LINES`] lines.
struct Batches {
    stream: Stream,
    full: Vec<RawBatch>,
    current: RawBatch,
}

impl Batches {
    fn new(stream: Stream) -> Batches {
        Batches {
            stream,
            full: Vec::new(),
            current: RawBatch::with_capacity(DateTime::<Utc>::MIN_UTC, stream, 0),
        }
    }

    /// Lines pushed from now on were read at `ts`, in a read of `bytes` bytes.
    fn start(&mut self, ts: DateTime<Utc>, bytes: usize) {
        // Roughly the bytes read (newlines kept, `\r`s dropped); a held partial line may need more.
        self.current = RawBatch::with_capacity(ts, self.stream, bytes + bytes / 8);
    }

    fn push(&mut self, line: &[u8]) {
        if self.current.len() >= MAX_BATCH_LINES {
            // The next batch of this read is likely about as big as this one.
            let next =
                RawBatch::with_capacity(self.current.ts(), self.stream, self.current.byte_len());
            self.full.push(std::mem::replace(&mut self.current, next));
        }
        self.current.push(line);
    }

    /// Every batch filled since `start`, in order.
    fn take(&mut self) -> impl Iterator<Item = Batch> + '_ {
        if self.current.len() > 0 {
            let ts = self.current.ts();
            let done = std::mem::replace(
                &mut self.current,
                RawBatch::with_capacity(ts, self.stream, 0),
            );
            self.full.push(done);
        }
        self.full.drain(..).map(RawBatch::seal)
    }
}

impl LineSink {
    /// Hands the filled batches to the writer, waiting for queue room. False if the writer is gone.
    async fn send(&mut self, batches: &mut Batches) -> bool {
        for batch in batches.take() {
            // A batch has at most MAX_BATCH_LINES lines: far below u32::MAX and the queue capacity.
            let lines = batch.len() as u32;
            let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(lines).await else {
                return false;
            };
            let msg = Msg::Lines {
                batch,
                budget: Some(permit),
            };
            if self.tx.send(msg).is_err() {
                return false;
            }
        }
        true
    }
}
