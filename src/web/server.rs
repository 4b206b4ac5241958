//! The status page's HTTP server: the accept loop, the connection cap, the TLS handshake, and the
//! per-connection timers that close a slow or idle client, in front of the axum router.
//!
//! Why not `axum::serve`: it has no header, idle or body timeout and no cap, so one client could hold
//! any number of connections forever and exhaust tend's descriptors (the control socket then stops
//! answering too). Here each connection has one deadline, moved as it goes through its phases:
//!
//! - waiting for a request's headers (from the accept, or from the first byte of the next request
//!   on a kept-alive connection): `header_timeout`, which also bounds the TLS handshake;
//! - a request under way (from its head to the end of its response): no deadline here (the body has
//!   `body_timeout` in [`super::guard`]; an SSE stream is a request that lasts);
//! - idle between requests: `idle_timeout`.
//!
//! When the deadline passes the connection is dropped (closed). Beyond `max_connections` open ones, a
//! new connection is answered 503 and closed at once, without a task, and a line is logged when the
//! cap is reached. Owns no application state; must not look at requests beyond counting them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::tls::TlsSwap;
use super::{ClientAddr, WebState};
use crate::config::WebLimits;

/// Hyper reads at most this much of a request head; [`super::guard`] answers smaller limits in
/// JSON before this is reached.
const MAX_HEAD_BUF: usize = 256 * 1024;

/// Serves `router` on `listener` until `shutdown`; then open connections are asked to finish and
/// get `header_timeout` to do so.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsSwap>>,
    router: Router,
    state: WebState,
) {
    let shutdown = state.shutdown.clone();
    let fd_cap = descriptor_cap();
    let configured = state.live().settings.limits.max_connections;
    if configured > fd_cap {
        tracing::warn!(
            "status page: max_connections = {configured} is more than the open-file limit leaves \
             ({fd_cap} after {FD_RESERVE} kept for the rest of tend); serving at most {fd_cap} \
             (raise `ulimit -n`, or LimitNOFILE= under systemd)"
        );
    }
    let tracker = TaskTracker::new();
    let open = Arc::new(AtomicUsize::new(0));
    let at_cap = Arc::new(AtomicBool::new(false));
    let mut refused: u64 = 0;
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning; the control socket has its
                    // own listener and is not starved by this loop.
                    tracing::warn!("status page: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let limits = state.live().settings.limits;
        let cap = limits.max_connections.min(fd_cap);
        let now_open = open.load(Ordering::SeqCst);
        if now_open >= cap {
            refused += 1;
            if !at_cap.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    open = now_open,
                    "status page: {cap} connections open, the [web] max_connections cap; new ones \
                     are answered 503 until some close"
                );
            }
            refuse(tcp, tls.is_some());
            continue;
        }
        if at_cap.swap(false, Ordering::SeqCst) {
            tracing::info!(refused, "status page: below max_connections again");
            refused = 0;
        }
        let slot = Slot(Arc::clone(&open));
        open.fetch_add(1, Ordering::SeqCst);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            connection(tcp, addr, tls, router, limits, shutdown).await;
        });
    }
    tracker.close();
    let drain = state.live().settings.limits.header_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::info!("status page: closing the connections still open at shutdown");
    }
}

/// Descriptors kept for everything but the page's connections (service pipes, log files, the
/// control socket and its clients).
const FD_RESERVE: u64 = 256;

/// The most connections the open-file limit allows while leaving [`FD_RESERVE`] descriptors to the
/// rest of tend: `max_connections` is lowered to it (with a warning) so the page alone can never take
/// the descriptors the control socket needs.
fn descriptor_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return usize::MAX;
    }
    let cap = limit.rlim_cur.saturating_sub(FD_RESERVE).max(16);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// One open connection, released on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection over the cap without a task: a fresh socket's send buffer always takes the
/// few bytes at once. Under TLS there is no handshake to answer in, so it is just closed.
fn refuse(tcp: TcpStream, tls: bool) {
    if !tls {
        let body = r#"{"error":"the status page is at its connection cap ([web] max_connections); try again shortly","status":503}"#;
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.try_write(reply.as_bytes());
    }
    // Whatever of the request already arrived is read away: closing with unread data would send
    // a reset, which can reach the client before the 503 does.
    let mut sink = [0u8; 4096];
    while matches!(tcp.try_read(&mut sink), Ok(n) if n > 0) {}
}

async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<TlsSwap>>,
    router: Router,
    limits: WebLimits,
    shutdown: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => run(tcp, addr, router, limits, shutdown).await,
        Some(tls) => {
            let acceptor = tls.acceptor();
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => run(stream, addr, router, limits, shutdown).await,
                Ok(Err(err)) => tracing::debug!(%addr, "TLS handshake failed: {err}"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    }
}

async fn run<IO>(
    io: IO,
    addr: SocketAddr,
    router: Router,
    limits: WebLimits,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timers = Timers::new(limits);
    let mut deadline = timers.deadline.subscribe();
    let io = Watched {
        inner: io,
        timers: Arc::clone(&timers),
    };
    let service = {
        let timers = Arc::clone(&timers);
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::start(Arc::clone(&timers));
            req.extensions_mut().insert(ConnectInfo(ClientAddr(addr)));
            let call = router.clone().oneshot(req.map(Body::new));
            async move {
                let response = call.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        inner: body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BUF);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%addr, "status page connection: {err}");
                }
                return;
            }
            () = expired(&mut deadline) => {
                tracing::debug!(%addr, "status page: closing a connection past its timeout");
                return;
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when the connection's deadline passes (a moved deadline is followed).
async fn expired(deadline: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let current = *deadline.borrow_and_update();
        match current {
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                changed = deadline.changed() => if changed.is_err() {
                    return std::future::pending().await;
                },
            },
            None => {
                if deadline.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// The phase of one connection and its deadline.
struct Timers {
    limits: WebLimits,
    /// Requests whose response is not finished yet, and whether the connection is between requests.
    phase: Mutex<(usize, bool)>,
    deadline: watch::Sender<Option<Instant>>,
}

impl Timers {
    fn new(limits: WebLimits) -> Arc<Timers> {
        let (deadline, _) = watch::channel(Some(Instant::now() + limits.header_timeout));
        Arc::new(Timers {
            limits,
            phase: Mutex::new((0, false)),
            deadline,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: on an idle connection that is the start of the next request's head.
    fn bytes_read(&self) {
        let mut phase = self.lock();
        if phase.1 {
            phase.1 = false;
            self.deadline
                .send_replace(Some(Instant::now() + self.limits.header_timeout));
        }
    }
}

/// A request under way, from its head to the end of its response's body.
struct InFlight(Arc<Timers>);

impl InFlight {
    fn start(timers: Arc<Timers>) -> InFlight {
        {
            let mut phase = timers.lock();
            phase.0 += 1;
            phase.1 = false;
            timers.deadline.send_replace(None);
        }
        InFlight(timers)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.lock();
        phase.0 = phase.0.saturating_sub(1);
        if phase.0 == 0 {
            phase.1 = true;
            self.0
                .deadline
                .send_replace(Some(Instant::now() + self.0.limits.idle_timeout));
        }
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's stream, telling [`Timers`] when bytes arrive.
struct Watched<IO> {
    inner: IO,
    timers: Arc<Timers>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.timers.bytes_read();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
