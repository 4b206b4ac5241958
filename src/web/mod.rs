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
//! Map: [`app`] builds the router (testable without a socket); [`serve`] binds and serves it until the
//! shared shutdown token fires. `api` has the JSON handlers, `view` turns a snapshot into what the page
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
mod error;
pub mod logs;
mod metrics;
pub mod redact;
mod tls;
mod view;

pub use auth::{hash_password, verify_password};
pub use error::{AppError, WebError};

/// The peer address of a connection (plain or TLS), as request extension `ConnectInfo<ClientAddr>`.
/// Proxy headers such as `X-Forwarded-For` are ignored: anyone can send them.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    pub core: CoreHandle,
    pub monitor: MonitorHandle,
    pub settings: Arc<WebSettings>,
    pub http: reqwest::Client,
    pub auth: Arc<auth::Auth>,
    pub audit: Arc<audit::Audit>,
    pub usage: Arc<view::UsageSampler>,
    /// Ends SSE streams so a graceful shutdown does not wait for browsers to go away.
    pub shutdown: CancellationToken,
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
    /// Knows the secret env values of every configured service, so it must follow reloads.
    pub redactor: Arc<redact::Redactor>,
    /// The log patterns and their names.
    pub patterns: Arc<crate::checks::classify::PatternSet>,
    pub error_types: Arc<Vec<String>>,
}

impl Live {
    fn build(config: Arc<Config>, settings: &WebSettings) -> Live {
        let redactor = redact::Redactor::from_config(&config, &settings.redact);
        let patterns = logs::pattern_set(&config);
        let mut error_types: Vec<String> =
            patterns.names().into_iter().map(str::to_string).collect();
        error_types.dedup();
        Live {
            config,
            redactor: Arc::new(redactor),
            patterns: Arc::new(patterns),
            error_types: Arc::new(error_types),
        }
    }
}

impl WebState {
    /// Builds the state for `settings`; `users` are the configured users, or the generated admin.
    pub fn new(
        ctx: crate::control::server::Context,
        settings: WebSettings,
        users: Vec<crate::config::WebUser>,
        shutdown: CancellationToken,
    ) -> WebState {
        let audit_path = ctx.config.supervisor.state_dir.join("web-audit.jsonl");
        let live = Live::build(ctx.config.clone(), &settings);
        WebState {
            auth: Arc::new(auth::Auth::new(users, settings.session_ttl)),
            audit: Arc::new(audit::Audit::open(audit_path)),
            usage: Arc::new(view::UsageSampler::default()),
            settings: Arc::new(settings),
            core: ctx.core,
            monitor: ctx.monitor,
            http: ctx.http,
            shutdown,
            reload: ctx.reload,
            schedules: ctx.schedules,
            live: Arc::new(std::sync::Mutex::new(Arc::new(live))),
        }
    }

    /// The configuration-derived state for the running configuration (rebuilt once after a reload).
    pub fn live(&self) -> Arc<Live> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(current) = self.reload.as_ref().map(|r| r.current()) {
            if !Arc::ptr_eq(&live.config, &current) {
                *live = Arc::new(Live::build(current, &self.settings));
            }
        }
        live.clone()
    }

    fn secure_cookies(&self) -> bool {
        self.settings.tls.is_some()
    }

    fn log_dir(&self) -> PathBuf {
        self.live().config.supervisor.log_dir.clone()
    }
}

/// The whole site: pages, JSON API, SSE, metrics; security headers on every response.
pub fn app(state: WebState) -> Router {
    api::routes(state.clone())
        .merge(assets::routes())
        .layer(axum::middleware::from_fn(assets::security_headers))
        .with_state(state)
}

/// A bound status page, not yet serving.
pub struct WebServer {
    listener: std::net::TcpListener,
    tls: Option<tls::TlsConfig>,
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
        Some(files) => Some(tls::load(files)?),
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
    let state = WebState::new(ctx, settings, users, shutdown);
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
    Ok(Some(WebServer {
        listener,
        tls,
        state,
    }))
}

impl WebServer {
    /// Serves until the state's shutdown token fires; open connections are drained.
    pub async fn serve(self) {
        let addr = self.local_addr();
        let shutdown = self.state.shutdown.clone();
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
            tls = self.tls.is_some(),
            "status page listening"
        );
        match self.tls {
            Some(tls) => tls::serve(listener, tls, router, shutdown).await,
            None => {
                let service = router.into_make_service_with_connect_info::<ClientAddr>();
                if let Err(err) = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
                {
                    tracing::error!("status page stopped: {err}");
                }
            }
        }
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
