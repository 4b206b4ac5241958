//! Daemon side of the control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::protocol::{self, CheckRow, ErrorCode, Request, Response, MAX_REQUEST_BYTES};
use crate::checks::monitor::MonitorHandle;
use crate::config::{CheckKind, Config, FailAction};
use crate::core::{CoreHandle, ShutdownMode, Snapshot};
use crate::verbs::{self, Verb};

/// What a connection handler may use: the core, the checks, the configuration.
#[derive(Clone)]
pub struct Context {
    pub core: CoreHandle,
    pub monitor: MonitorHandle,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    /// Live reload (`tend reload` / `tend reread`); `None` where nothing watches the configuration.
    pub reload: Option<crate::reload::ReloadHandle>,
    /// Asks the daemon to re-execute itself (`tend reexec`); `None` where no daemon can.
    pub reexec: Option<tokio::sync::mpsc::Sender<()>>,
    /// The schedule runner (`tend schedules`); `None` where no runner runs.
    pub schedules: Option<crate::schedule::ScheduleHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another tend is already running with control socket {} (it answered a connection); stop it first with `tend shutdown`", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("cannot {action} control socket {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket_group `{0}` does not exist")]
    NoSuchGroup(String),
}

/// A bound control socket. Removes its file when dropped, unless it is handed over to a re-executed
/// tend (see [`ControlSocket::keep_file`]).
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    keep_file: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if !self.keep_file.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves the control socket a previous image of this tend was listening on (`tend reexec`): the same
/// socket, so connections made during the switch wait in its backlog.
pub fn inherit(path: &Path, fd: std::os::fd::OwnedFd) -> Result<ControlSocket, SocketError> {
    let io = |source| SocketError::Io {
        action: "take over the inherited",
        path: path.to_path_buf(),
        source,
    };
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener.set_nonblocking(true).map_err(io)?;
    let listener = UnixListener::from_std(std_listener).map_err(io)?;
    Ok(ControlSocket {
        listener,
        path: path.to_path_buf(),
        keep_file: Arc::default(),
    })
}

/// Binds the control socket at `path` with `mode` (and group), refusing if a live daemon answers there and
/// replacing a stale file left by a dead one. The socket gets its permissions before it becomes reachable
/// under its real name: it is bound under a temporary name and renamed into place.
pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<ControlSocket, SocketError> {
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| SocketError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::AlreadyRunning(path.to_path_buf())),
            Err(_) => {
                tracing::warn!(
                    "removing stale control socket {} (no daemon answers there)",
                    path.display()
                );
                std::fs::remove_file(path).map_err(io("remove stale"))?;
            }
        }
    }
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tend.sock"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io("bind"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions of"))?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| SocketError::NoSuchGroup(group.to_string()))?
            .gid;
        nix::unistd::chown(&tmp, None, Some(gid))
            .map_err(|e| io("set the group of")(std::io::Error::from_raw_os_error(e as i32)))?;
    }
    std::fs::rename(&tmp, path).map_err(io("move into place"))?;
    Ok(ControlSocket {
        listener,
        path: path.to_path_buf(),
        keep_file: Arc::default(),
    })
}

impl ControlSocket {
    /// Set it to leave the socket file in place when dropped (the listener lives on in a new image).
    pub fn keep_file(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.keep_file)
    }

    /// A close-on-exec duplicate of the listening descriptor, to hand over.
    pub fn duplicate(&self) -> Option<std::os::fd::OwnedFd> {
        crate::reexec::keep(&self.listener)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until `shutdown` fires. Each connection gets its own task; a misbehaving client
    /// only ever affects itself.
    pub async fn serve(self, ctx: Context, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let ctx = ctx.clone();
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            if let Err(err) = handle_connection(stream, ctx, shutdown).await {
                                tracing::debug!("control connection ended: {err}");
                            }
                        });
                    }
                    Err(err) => {
                        tracing::warn!("control socket accept failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

async fn handle_connection(
    stream: UnixStream,
    ctx: Context,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let core = &ctx.core;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let reply = Response::Error {
                code: ErrorCode::BadRequest,
                message: format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            };
            write.write_all(protocol::encode(&reply).as_bytes()).await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        // A blank line gets an error reply too (`decode_request`): a client waiting for an answer
        // must never hang.
        let text = text.trim();
        let request = match protocol::decode_request(text) {
            Ok(request) => request,
            Err(reply) => {
                write.write_all(protocol::encode(&reply).as_bytes()).await?;
                continue;
            }
        };
        if let Request::Logs {
            name,
            lines,
            stream,
            follow: true,
        } = &request
        {
            return follow_logs(core, name, *lines, *stream, &mut write, &shutdown).await;
        }
        let reply = handle_request(&ctx, request).await;
        write.write_all(protocol::encode(&reply).as_bytes()).await?;
    }
}

/// The configuration tend runs now (the last good one a reload applied).
fn current_config(ctx: &Context) -> Arc<Config> {
    match &ctx.reload {
        Some(reload) => reload.current(),
        None => ctx.config.clone(),
    }
}

fn reload_reply(result: Result<String, crate::reload::ReloadError>) -> Response {
    use crate::reload::ReloadError;
    match result {
        Ok(message) => Response::Ok { message },
        Err(err @ ReloadError::Config(_)) => Response::Error {
            code: ErrorCode::ConfigInvalid,
            message: err.to_string(),
        },
        Err(ReloadError::Gone(_)) => gone(),
        Err(err) => Response::Error {
            code: ErrorCode::ReloadFailed,
            message: err.to_string(),
        },
    }
}

fn no_reload() -> Response {
    Response::Error {
        code: ErrorCode::BadRequest,
        message: "this tend does not reload its configuration".into(),
    }
}

fn gone() -> Response {
    Response::Error {
        code: ErrorCode::ShuttingDown,
        message: "tend is shutting down".into(),
    }
}

/// Expands `all` / empty to every service; rejects unknown names before anything is done.
fn resolve_names(
    snapshot: &Snapshot,
    names: &[String],
    empty_means_all: bool,
) -> Result<Vec<String>, Response> {
    let known: Vec<&str> = snapshot.services.iter().map(|s| s.name.as_str()).collect();
    if names.iter().any(|n| n == "all") || (names.is_empty() && empty_means_all) {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    if names.is_empty() {
        return Err(Response::Error {
            code: ErrorCode::BadRequest,
            message: "name at least one service, or `all`".into(),
        });
    }
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(Response::Error {
            code: ErrorCode::UnknownService,
            message: format!(
                "no such service: {}; known services: {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            ),
        });
    }
    Ok(names.to_vec())
}

/// Who asked, in the log and the start history, for every verb that comes over the socket.
const BY: &str = "control socket";

async fn handle_request(ctx: &Context, request: Request) -> Response {
    let core = &ctx.core;
    let Ok(snapshot) = core.status().await else {
        return gone();
    };
    match request {
        Request::Ping => Response::Pong {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
        },
        Request::Status { names } => match resolve_names(&snapshot, &names, true) {
            Ok(names) => Response::Status {
                snapshot: Box::new(Snapshot {
                    at_ms: snapshot.at_ms,
                    recoveries: snapshot.recoveries,
                    accounts: snapshot.accounts,
                    config_error: snapshot.config_error,
                    state_warning: snapshot.state_warning,
                    pending_removals: snapshot.pending_removals,
                    services: snapshot
                        .services
                        .into_iter()
                        .filter(|s| names.contains(&s.name))
                        .collect(),
                }),
            },
            Err(reply) => reply,
        },
        Request::Start { names, force } => {
            run_verb(core, &snapshot, &names, Verb::Start { force }).await
        }
        Request::Stop { names } => run_verb(core, &snapshot, &names, Verb::Stop).await,
        Request::Restart { names, force } => {
            run_verb(core, &snapshot, &names, Verb::Restart { force }).await
        }
        Request::Logs {
            name,
            lines,
            stream,
            follow: _,
        } => match core.log(&name).await {
            Ok(Some(log)) => {
                let mut tail = log.tail(lines, stream).await;
                if tail.len() < lines {
                    // More than the in-memory ring holds: read the files (and rotated ones) backwards.
                    let dir = ctx.config.supervisor.log_dir.clone();
                    let wanted = name.clone();
                    let from_files = tokio::task::spawn_blocking(move || {
                        crate::logs::read_tail(&dir, &wanted, lines)
                    })
                    .await;
                    if let Ok(Ok(mut from_files)) = from_files {
                        from_files.retain(|l| stream.is_none_or(|s| s == l.stream));
                        if from_files.len() > tail.len() {
                            tail = from_files;
                        }
                    }
                }
                Response::Lines { lines: tail }
            }
            Ok(None) => unknown_service(&snapshot, &name),
            Err(_) => gone(),
        },
        Request::Recover { group, cancel } => {
            let verb = if cancel {
                Verb::CancelRecovery
            } else {
                Verb::Recover
            };
            match verbs::dispatch(core, &verb, &group, BY).await {
                Ok(r) => Response::Actions { results: vec![r] },
                Err(_) => gone(),
            }
        }
        Request::ReloadCache { names, force } => {
            run_verb(core, &snapshot, &names, Verb::ReloadCache { force }).await
        }
        Request::Checks => Response::Checks {
            checks: check_rows(&current_config(ctx), &snapshot),
        },
        Request::Reload => match &ctx.reload {
            Some(reload) => reload_reply(reload.reload("tend reload").await),
            None => no_reload(),
        },
        Request::Schedules => Response::Schedules {
            at_ms: crate::clock::Clock::new().now_ms(),
            schedules: ctx.schedules.as_ref().map(|s| s.list()).unwrap_or_default(),
        },
        Request::Reread => match &ctx.reload {
            Some(reload) => reload_reply(reload.reread().await),
            None => no_reload(),
        },
        Request::Diagnose => {
            match crate::checks::diagnose::diagnose(
                &current_config(ctx),
                core,
                &ctx.monitor,
                &ctx.http,
            )
            .await
            {
                Some(diagnosis) => Response::Diagnosis { diagnosis },
                None => gone(),
            }
        }
        Request::Shutdown { keep_services } => {
            let mode = match keep_services {
                Some(true) => ShutdownMode::KeepServices,
                Some(false) => ShutdownMode::Stop,
                None => ShutdownMode::configured(&ctx.config),
            };
            if mode.keeps_services() && crate::process::is_pid1() {
                return Response::Error {
                    code: ErrorCode::BadRequest,
                    message:
                        "tend runs as PID 1: its services end with it, nothing could adopt them; \
                              use `tend shutdown` (or `tend reexec` to restart tend alone)"
                            .into(),
                };
            }
            crate::host::notify_stopping(match mode {
                ShutdownMode::Stop => "stopping: stopping every service",
                _ => "stopping: leaving the services for the next tend",
            });
            // Answer first: the core only replies once every service is down, and the client should know
            // the request was taken even if it does not wait that long.
            let core = core.clone();
            tokio::spawn(async move {
                let _ = core.shutdown(mode).await;
            });
            let message = match mode {
                ShutdownMode::Stop => "shutting down: stopping every service",
                _ => "shutting down: the services keep running for the next tend to adopt",
            };
            Response::Ok {
                message: message.into(),
            }
        }
        Request::Reexec => {
            let Some(trigger) = &ctx.reexec else {
                return Response::Error {
                    code: ErrorCode::ReexecRefused,
                    message: "this tend cannot re-execute itself".into(),
                };
            };
            let exe = crate::reexec::own_exe();
            match crate::reexec::preflight(&exe, &ctx.config.source).await {
                Err(err) => {
                    tracing::error!("tend reexec refused: {err}");
                    Response::Error {
                        code: ErrorCode::ReexecRefused,
                        message: err.to_string(),
                    }
                }
                Ok(version) => {
                    if trigger.try_send(()).is_err() {
                        return Response::Error {
                            code: ErrorCode::ReexecRefused,
                            message: "a reexec or shutdown is already under way".into(),
                        };
                    }
                    Response::Ok {
                        message: format!(
                            "re-executing tend (pid {}) as {} ({version}); the services keep running",
                            std::process::id(),
                            exe.display()
                        ),
                    }
                }
            }
        }
    }
}

fn check_rows(config: &Config, snapshot: &Snapshot) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for check in config.checks.values() {
        for service in &check.services {
            let last = snapshot
                .services
                .iter()
                .find(|s| &s.name == service)
                .and_then(|s| s.checks.iter().find(|c| c.check == check.name))
                .cloned();
            rows.push(CheckRow {
                check: check.name.clone(),
                service: service.clone(),
                kind: match check.kind {
                    CheckKind::Http { .. } => "http",
                    CheckKind::Json { .. } => "json",
                    CheckKind::Log { .. } => "log",
                    CheckKind::Tcp { .. } => "tcp",
                    CheckKind::Process { .. } => "process",
                    CheckKind::Exec { .. } => "exec",
                }
                .to_string(),
                interval_ms: check.interval.as_millis() as u64,
                action: match check.on_fail.action {
                    FailAction::None => "none",
                    FailAction::Alert => "alert",
                    FailAction::Restart => "restart",
                    FailAction::ReloadCache => "reload_cache",
                    FailAction::FloodRecover => "flood_recover",
                }
                .to_string(),
                last,
            });
        }
    }
    rows
}

fn unknown_service(snapshot: &Snapshot, name: &str) -> Response {
    resolve_names(snapshot, &[name.to_string()], false)
        .err()
        .unwrap_or_else(gone)
}

/// Runs `verb` on each named service (all of them concurrently, see [`verbs::dispatch_each`]) and
/// answers with the results in the order the names were given.
async fn run_verb(
    core: &CoreHandle,
    snapshot: &Snapshot,
    names: &[String],
    verb: Verb,
) -> Response {
    let names = match resolve_names(snapshot, names, false) {
        Ok(names) => names,
        Err(reply) => return reply,
    };
    match verbs::dispatch_each(core, &verb, &names, BY).await {
        Ok(results) => Response::Actions { results },
        Err(_) => gone(),
    }
}

async fn follow_logs(
    core: &CoreHandle,
    name: &str,
    lines: usize,
    stream: Option<crate::logs::Stream>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let log = match core.log(name).await {
        Ok(Some(log)) => log,
        Ok(None) => {
            let snapshot = core.status().await.unwrap_or_default();
            let reply = unknown_service(&snapshot, name);
            return write.write_all(protocol::encode(&reply).as_bytes()).await;
        }
        Err(_) => return write.write_all(protocol::encode(&gone()).as_bytes()).await,
    };
    // Taken atomically by the log writer: no line falls between the tail and the live stream.
    let (tail, mut live) = log.follow(lines, stream).await;
    for line in tail {
        write
            .write_all(protocol::encode(&Response::Line { line }).as_bytes())
            .await?;
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(line) => {
                    if stream.is_some_and(|s| s != line.stream) {
                        continue;
                    }
                    let reply = Response::Line { line: (*line).clone() };
                    write.write_all(protocol::encode(&reply).as_bytes()).await?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let reply = Response::Error {
                        code: ErrorCode::BadRequest,
                        message: format!("follower too slow: {n} lines skipped"),
                    };
                    write.write_all(protocol::encode(&reply).as_bytes()).await?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}
