//! The status page: an axum server next to the control socket, with a JSON API behind a single-page
//! app embedded from `web/` at compile time.
//!
//! The web layer is a pure function of what the core publishes: handlers read the core's
//! `watch<Snapshot>` and its event stream, ask the checks (`MonitorHandle`) for error reports and
//! history, read log files from disk, and send actions through the same [`CoreHandle`] methods the CLI
//! uses (with `by = "web:<user>@<ip>"`). It never locks or mutates core state.
//!
//! What it owns: logins and sessions ([`auth`]), the failed-login limiter, CSRF tokens, the audit log
//! ([`audit`]), and redaction of secrets ([`redact`]). What it must not touch: service state, the log
//! writer's files (read-only here; nothing outside `log_dir` is ever opened for a log request), and the
//! config (read-only).
//!
//! Map: [`app`] builds the router (testable without a socket); [`bind`] binds it and
//! [`WebServer::serve`] serves it through `server` (the accept loop, connection cap and timeouts)
//! until the shared shutdown token fires. `guard` checks every request (Host, sizes, body timeout)
//! and makes every /api error JSON; `limiter` is the failed-login limiter and `password` the argon2
//! checks with memory that goes back to the system. `api` has the JSON handlers, `view` turns a snapshot into what the page
//! shows (the schedules included), `logs` is the server-side log search, `metrics` the Prometheus
//! text, `assets` the embedded files and the security headers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::checks::monitor::MonitorHandle;
use crate::config::{Config, WebSettings};
use crate::core::CoreHandle;

mod api;
mod assets;
pub mod audit;
pub mod auth;
mod condition;
mod error;
pub mod guard;
pub mod limiter;
pub mod logs;
mod metrics;
pub mod password;
pub mod redact;
mod server;
mod tls;
mod view;

pub use auth::{hash_password, verify_password};
pub use error::{AppError, WebError};

/// The peer address of a connection (plain or TLS), as request extension `ConnectInfo<ClientAddr>`.
/// Proxy headers such as `X-Forwarded-For` are ignored: anyone can send them.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    pub core: CoreHandle,
    pub monitor: MonitorHandle,
    pub http: reqwest::Client,
    pub auth: Arc<auth::Auth>,
    pub audit: Arc<audit::Audit>,
    pub usage: Arc<view::UsageSampler>,
    /// Ends SSE streams so a graceful shutdown does not wait for browsers to go away.
    pub shutdown: CancellationToken,
    /// The address the page was bound to (from the configuration it started with: a new one needs
    /// a restart of tend).
    listen: SocketAddr,
    /// The `[web]` tend started with: what a reload cannot change is compared against it.
    startup: Arc<WebSettings>,
    /// Under TLS: the acceptor, re-read at every reload.
    tls: Option<Arc<tls::TlsSwap>>,
    /// The generated admin, when `[web]` has no users.
    generated: Option<crate::config::WebUser>,
    /// The running configuration, when tend reloads it (None: the one the page started with).
    reload: Option<crate::reload::ReloadHandle>,
    /// The schedule runner, for the Schedules section (None: no schedules are shown).
    schedules: Option<crate::schedule::ScheduleHandle>,
    /// What the page derives from the configuration, rebuilt after a reload (see [`WebState::live`]).
    live: Arc<std::sync::Mutex<Arc<Live>>>,
}

/// What the page derives from the running configuration: built once per configuration, because a
/// RegexSet is costly to compile and every request needs the redactor.
pub struct Live {
    pub config: Arc<Config>,
    /// `[web]` of that configuration (the one the page started with if a reload removed it).
    pub settings: Arc<WebSettings>,
    /// Knows the secret env values of every configured service, so it must follow reloads.
    pub redactor: Arc<redact::Redactor>,
    /// The log patterns and their names.
    pub patterns: Arc<crate::checks::classify::PatternSet>,
    pub error_types: Arc<Vec<String>>,
    /// What the page shows about its own configuration: changes that wait for a restart of tend,
    /// TLS files that could not be re-read.
    pub notices: Vec<String>,
}

impl Live {
    fn build(config: Arc<Config>, settings: Arc<WebSettings>, notices: Vec<String>) -> Live {
        let redactor = redact::Redactor::from_config(&config, &settings.redact);
        let patterns = logs::pattern_set(&config);
        let mut error_types: Vec<String> =
            patterns.names().into_iter().map(str::to_string).collect();
        error_types.dedup();
        Live {
            config,
            settings,
            redactor: Arc::new(redactor),
            patterns: Arc::new(patterns),
            error_types: Arc::new(error_types),
            notices,
        }
    }
}

fn login_checks(settings: &WebSettings) -> usize {
    settings
        .login
        .checks
        .unwrap_or_else(auth::default_login_checks)
}

impl WebState {
    /// Builds the state for `settings`; `users` are the configured users, or the generated admin.
    pub fn new(
        ctx: crate::control::server::Context,
        settings: WebSettings,
        users: Vec<crate::config::WebUser>,
        shutdown: CancellationToken,
    ) -> WebState {
        WebState::with_tls(ctx, settings, users, None, shutdown)
    }

    fn with_tls(
        ctx: crate::control::server::Context,
        settings: WebSettings,
        users: Vec<crate::config::WebUser>,
        tls: Option<Arc<tls::TlsSwap>>,
        shutdown: CancellationToken,
    ) -> WebState {
        let audit_path = ctx.config.supervisor.state_dir.join("web-audit.jsonl");
        let settings = Arc::new(settings);
        let generated = settings
            .users
            .is_empty()
            .then(|| users.first().cloned())
            .flatten();
        let live = Live::build(ctx.config.clone(), settings.clone(), Vec::new());
        WebState {
            auth: Arc::new(auth::Auth::with_limits(
                users,
                settings.session_ttl,
                settings.login,
                login_checks(&settings),
            )),
            audit: Arc::new(audit::Audit::open(audit_path, settings.audit_max_size)),
            usage: Arc::new(view::UsageSampler::default()),
            listen: settings.listen,
            startup: settings,
            tls,
            generated,
            core: ctx.core,
            monitor: ctx.monitor,
            http: ctx.http,
            shutdown,
            reload: ctx.reload,
            schedules: ctx.schedules,
            live: Arc::new(std::sync::Mutex::new(Arc::new(live))),
        }
    }

    /// The configuration-derived state for the running configuration (rebuilt once after a reload,
    /// which is also when the page applies a new `[web]`: see [`WebState::apply`]).
    pub fn live(&self) -> Arc<Live> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(current) = self.reload.as_ref().map(|r| r.current()) {
            if !Arc::ptr_eq(&live.config, &current) {
                *live = Arc::new(self.apply(current, &live.settings));
            }
        }
        live.clone()
    }

    /// Applies the `[web]` of a reloaded configuration: users (ending the sessions of removed users
    /// and changed passwords), limits, the audit size, and the TLS files, re-read even when their
    /// paths did not change (a certificate renewed in place). What needs a restart becomes a notice.
    fn apply(&self, config: Arc<Config>, running: &Arc<WebSettings>) -> Live {
        let mut notices = Vec::new();
        let settings = match &config.web {
            Some(web) => Arc::new(web.clone()),
            None => running.clone(),
        };
        let (_, restart) = crate::config::web_changes(Some(&self.startup), config.web.as_ref());
        for (key, change) in restart {
            notices.push(format!(
                "[web] {key}: {change} in the configuration; takes effect when tend restarts"
            ));
        }
        if **running != *settings {
            let users = match (&self.generated, settings.users.is_empty()) {
                (Some(admin), true) => vec![admin.clone()],
                _ => settings.users.clone(),
            };
            let ended = self
                .auth
                .set_users(users, settings.session_ttl, settings.login);
            if ended > 0 {
                tracing::info!(
                    sessions = ended,
                    "status page: sessions of removed users or changed passwords ended"
                );
            }
            self.audit.set_max_size(settings.audit_max_size);
        }
        if let (Some(tls), Some(files)) = (&self.tls, &settings.tls) {
            if let Err(err) = tls.reload(files) {
                tracing::error!("status page: {err}; the certificate in use stays");
                notices.push(format!("{err}; the certificate in use stays"));
            }
        }
        Live::build(config, settings, notices)
    }

    fn secure_cookies(&self) -> bool {
        self.tls.is_some()
    }

    fn log_dir(&self) -> PathBuf {
        self.live().config.supervisor.log_dir.clone()
    }
}

/// The whole site: pages, JSON API, SSE, metrics; the request guard and the security headers on
/// every response.
pub fn app(state: WebState) -> Router {
    api::routes(state.clone())
        .merge(assets::routes())
        .layer(axum::middleware::from_fn(assets::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// A bound status page, not yet serving.
pub struct WebServer {
    listener: std::net::TcpListener,
    state: WebState,
}

impl WebServer {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// A close-on-exec duplicate of the listening descriptor, to hand over at `tend reexec`.
    pub fn duplicate(&self) -> Option<std::os::fd::OwnedFd> {
        crate::reexec::keep(&self.listener)
    }

    /// The sign-ins, to hand over at `tend reexec` ([`auth::Auth::save_handover`]).
    pub fn auth(&self) -> Arc<auth::Auth> {
        Arc::clone(&self.state.auth)
    }
}

/// Where the sessions wait for the next image during a `tend reexec`.
pub fn sessions_handover_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("web-sessions.handover.json")
}

/// Binds the listen address and loads the TLS files (so `tend up` fails early on a bad certificate or
/// a taken port) and resolves the users: the configured ones, or a generated admin password printed
/// once on the terminal.
pub fn bind(
    ctx: crate::control::server::Context,
    shutdown: CancellationToken,
) -> Result<Option<WebServer>, WebError> {
    bind_inherited(ctx, shutdown, None)
}

/// [`bind`], taking over `inherited` (the listening socket of the tend that re-executed into this
/// one) when it is bound to the configured address.
pub fn bind_inherited(
    ctx: crate::control::server::Context,
    shutdown: CancellationToken,
    inherited: Option<std::os::fd::OwnedFd>,
) -> Result<Option<WebServer>, WebError> {
    let Some(settings) = ctx.config.web.clone() else {
        return Ok(None);
    };
    let tls = match &settings.tls {
        Some(files) => Some(Arc::new(tls::TlsSwap::new(tls::load(files)?))),
        None => None,
    };
    let users = if settings.users.is_empty() {
        vec![auth::generated_admin(
            &ctx.config.supervisor.state_dir,
            settings.listen,
            tls.is_some(),
        )?]
    } else {
        settings.users.clone()
    };
    let reexec = inherited.is_some();
    let inherited = inherited.map(std::net::TcpListener::from).filter(|l| {
        l.local_addr().is_ok_and(|addr| {
            addr == settings.listen
                || (settings.listen.port() == 0 && addr.ip() == settings.listen.ip())
        })
    });
    let listener = match inherited {
        Some(listener) => listener,
        None => std::net::TcpListener::bind(settings.listen).map_err(|source| WebError::Bind {
            addr: settings.listen,
            source,
        })?,
    };
    listener
        .set_nonblocking(true)
        .map_err(|source| WebError::Bind {
            addr: settings.listen,
            source,
        })?;
    let handover = sessions_handover_path(&ctx.config.supervisor.state_dir);
    let state = WebState::with_tls(ctx, settings, users, tls, shutdown);
    if reexec {
        let taken = state.auth.take_handover(&handover);
        tracing::info!(
            sessions = taken,
            "status page: sign-ins carried over from the previous image"
        );
    } else {
        // Left by a switch that never completed: tokens must not outlive it on disk.
        let _ = std::fs::remove_file(&handover);
    }
    Ok(Some(WebServer { listener, state }))
}

impl WebServer {
    /// Serves until the state's shutdown token fires; open connections are drained.
    pub async fn serve(self) {
        let addr = self.local_addr();
        let tls = self.state.tls.clone();
        let state = self.state.clone();
        let router = app(self.state);
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!("status page: cannot use the bound socket: {err}");
                return;
            }
        };
        tracing::info!(
            addr = ?addr,
            tls = tls.is_some(),
            "status page listening"
        );
        if let Some(mut changes) = state.reload.as_ref().map(|r| r.subscribe()) {
            // Applied as soon as tend runs the new configuration, not at the next request: the
            // sessions of a removed user end now, a renewed certificate is used for the next
            // handshake.
            let state = state.clone();
            let stop = state.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return },
                        _ = stop.cancelled() => return,
                    }
                    let _ = state.live();
                }
            });
        }
        server::serve(listener, tls, router, state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    /// A real core and monitor over a config with one idle service, and the router without a socket.
    async fn state(dir: &std::path::Path) -> WebState {
        let text = "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n\
                    [services.idle]\ncommand = \"sleep 1000\"\nautostart = false\n\
                    [web]\nlisten = \"127.0.0.1:1\"\n";
        let config = Arc::new(crate::config::parse(&dir.join("supervisor.toml"), text).unwrap());
        let shutdown = CancellationToken::new();
        let clock = crate::clock::Clock::new();
        let (supervisor, core) =
            crate::core::Supervisor::new(config.clone(), clock, shutdown.clone()).unwrap();
        let (monitor, _tasks) = crate::checks::monitor::spawn(
            config.clone(),
            core.clone(),
            &supervisor.logs(),
            clock,
            shutdown.clone(),
        );
        tokio::spawn(supervisor.run());
        let ctx = crate::control::server::Context {
            core,
            monitor,
            config: config.clone(),
            http: reqwest::Client::new(),
            reload: None,
            reexec: None,
            schedules: None,
        };
        let users = vec![crate::config::WebUser {
            name: "ann".into(),
            password_hash: hash_password("pw").unwrap(),
            role: crate::config::WebRole::Operator,
        }];
        let settings = config.web.clone().unwrap();
        WebState::new(ctx, settings, users, shutdown)
    }

    fn get(path: &str, cookie: &str) -> Request<Body> {
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn the_router_answers_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(state(dir.path()).await);

        let page = app.clone().oneshot(get("/", "")).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"));
        assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");

        let anon = app.clone().oneshot(get("/api/status", "")).await.unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

        let login = Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"user":"ann","password":"pw"}"#))
            .unwrap();
        let login = app.clone().oneshot(login).await.unwrap();
        assert_eq!(login.status(), StatusCode::OK);
        let cookie = login.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();

        let status = app
            .clone()
            .oneshot(get("/api/status", &cookie))
            .await
            .unwrap();
        assert_eq!(status.status(), StatusCode::OK);
        let body = axum::body::to_bytes(status.into_body(), 1 << 20)
            .await
            .unwrap();
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(view["services"][0]["name"], "idle");
        assert_eq!(view["services"][0]["color"], "red");

        let no_csrf = Request::post("/api/services/idle/start")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        let no_csrf = app.clone().oneshot(no_csrf).await.unwrap();
        assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    }
}
