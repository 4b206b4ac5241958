//! The JSON API behind the page (documented in README, "Status page"): one handler per verb. Reads go
//! to the core's snapshot and event stream, the checks' reports and the log files; actions go through
//! the [`CoreHandle`](crate::core::CoreHandle) methods with `by = "web:<user>@<ip>"` and are audited.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::audit::AuditEntry;
use super::auth::{self, Caller, Operator};
use super::error::AppError;
use super::logs::{self, LogQuery};
use super::view::{self, Me, StatusView};
use super::WebState;
use crate::checks::diagnose::CHAT_PATTERNS;
use crate::checks::monitor::ErrorReport;
use crate::config::CheckKind;
use crate::core::{ActionResult, Event, Outcome};
use crate::verbs::{self, Verb};

/// Lines a download holds at most.
const DOWNLOAD_MAX_LINES: usize = 1_000_000;
/// How often the live stream refreshes uptime and CPU when nothing else changes.
const LIVE_TICK: Duration = Duration::from_secs(5);
const CHAT_ADVICE: &str =
    "\"Cannot find chat\" is not a bug: the automation sends into chats this \
    account is no longer in (kicked, left, or the chat was deleted). Check that the account is a \
    member of every chat the automation sends to; after it joins new chats press Reload Cache (or \
    wait up to 30 minutes for the automatic refresh). A banned channel must be unbanned by that \
    channel's admin.";

pub(super) fn routes(_state: WebState) -> Router<WebState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/services/{name}/{action}", post(service_action))
        .route("/api/groups/{group}/{action}", post(group_action))
        .route("/api/diagnose", get(diagnose))
        .route("/api/logs", get(logs_page))
        .route("/api/logs/download", get(logs_download))
        .route("/api/logs/live", get(logs_live))
        .route("/api/history", get(history))
        .route("/api/chats", get(chats))
        .route("/api/audit", get(audit))
        .route("/api/config", get(config_view))
        .route("/api/schedules", get(schedules))
        .route("/metrics", get(super::metrics::metrics))
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

#[derive(Serialize)]
struct SessionInfo {
    user: String,
    role: crate::config::WebRole,
    csrf: String,
}

async fn login(
    State(state): State<WebState>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Result<Response, AppError> {
    let ip = auth::client_ip(&parts);
    if !auth::same_origin(&parts) {
        state.audit.record(AuditEntry {
            at: Utc::now(),
            user: String::new(),
            ip: ip.to_string(),
            action: "login".into(),
            target: String::new(),
            reason: String::new(),
            outcome: format!("refused (403): {}", AppError::Csrf),
        });
        return Err(AppError::Csrf);
    }
    let body: LoginBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "login wants JSON {{\"user\": ..., \"password\": ...}}: {e}"
        ))
    })?;
    let result = state.auth.login(&body.user, &body.password, ip).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    state.audit.record(AuditEntry {
        at: Utc::now(),
        user: body.user.chars().take(64).collect(),
        ip: ip.to_string(),
        action: "login".into(),
        target: String::new(),
        reason: String::new(),
        outcome,
    });
    let session = result?;
    let cookie = auth::cookie(&session.token, state.auth.ttl(), state.secure_cookies());
    let mut response = Json(SessionInfo {
        user: session.user,
        role: session.role,
        csrf: session.csrf,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

async fn logout(State(state): State<WebState>, caller: Caller) -> Response {
    state.auth.logout(&caller.session.token);
    state.audit.record(AuditEntry {
        at: Utc::now(),
        user: caller.session.user.clone(),
        ip: caller.ip.to_string(),
        action: "logout".into(),
        target: String::new(),
        reason: String::new(),
        outcome: "ok".into(),
    });
    let mut response = Json(serde_json::json!({"ok": true})).into_response();
    let cookie = auth::cookie("", Duration::ZERO, state.secure_cookies());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn session(caller: Caller) -> Json<SessionInfo> {
    Json(SessionInfo {
        user: caller.session.user,
        role: caller.session.role,
        csrf: caller.session.csrf,
    })
}

/// The status view now: snapshot, error reports, memory and CPU.
pub(super) async fn build_view(state: &WebState) -> StatusView {
    let snapshot = state.core.snapshot().borrow().clone();
    let mut errors: HashMap<String, ErrorReport> = HashMap::new();
    for s in &snapshot.services {
        if let Some(report) = state.monitor.errors(&s.name).await {
            errors.insert(s.name.clone(), report);
        }
    }
    let pids: Vec<u32> = snapshot.services.iter().filter_map(|s| s.pid).collect();
    let sampler = state.usage.clone();
    let usage = tokio::task::spawn_blocking(move || sampler.sample(&pids))
        .await
        .unwrap_or_default();
    let live = state.live();
    let mut view = view::build(
        &live.config,
        &snapshot,
        crate::clock::Clock::new().now_ms(),
        &errors,
        &usage,
        &live.redactor,
        &live.error_types,
    );
    view.schedules = schedule_views(state, &live.redactor);
    view.web_notices = live.notices.clone();
    view
}

fn schedule_views(
    state: &WebState,
    redactor: &super::redact::Redactor,
) -> Vec<crate::schedule::ScheduleView> {
    let list = state
        .schedules
        .as_ref()
        .map(|s| s.list())
        .unwrap_or_default();
    view::schedules(list, redactor)
}

/// `GET /api/schedules`: the schedules alone, with the server's clock for countdowns.
async fn schedules(State(state): State<WebState>, _caller: Caller) -> Json<serde_json::Value> {
    let redactor = state.live().redactor.clone();
    Json(serde_json::json!({
        "at_ms": crate::clock::Clock::new().now_ms(),
        "schedules": schedule_views(&state, &redactor),
    }))
}

async fn status(State(state): State<WebState>, caller: Caller) -> Json<StatusView> {
    let mut view = build_view(&state).await;
    view.me = Some(Me {
        user: caller.session.user,
        role: caller.session.role,
    });
    Json(view)
}

/// Live updates: a `status` event with the whole view after every change of the core's snapshot (and
/// every few seconds for uptime and CPU), an `event` for each core event (alerts, recovery stages,
/// notices). Ends when tend shuts down, so a graceful shutdown never waits for a browser.
async fn events(
    State(state): State<WebState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let ended = Arc::clone(&state.auth).session_ended(caller.session.token.clone());
    struct Live {
        state: WebState,
        snapshot: tokio::sync::watch::Receiver<crate::core::Snapshot>,
        events: tokio::sync::broadcast::Receiver<Event>,
        /// A schedule ran, finished or the set changed (the core's snapshot does not see those).
        schedules: Option<tokio::sync::watch::Receiver<Vec<crate::schedule::ScheduleView>>>,
        tick: tokio::time::Interval,
        first: bool,
    }
    let live = Live {
        schedules: state.schedules.as_ref().map(|s| s.subscribe()),
        snapshot: state.core.snapshot(),
        events: state.core.subscribe(),
        tick: tokio::time::interval(LIVE_TICK),
        first: true,
        state,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let status_event = |view: &StatusView| {
            SseEvent::default()
                .event("status")
                .json_data(view)
                .unwrap_or_else(|_| SseEvent::default().comment("unserializable"))
        };
        if live.first {
            live.first = false;
            live.tick.reset();
            let view = build_view(&live.state).await;
            return Some((Ok(status_event(&view)), live));
        }
        let shutdown = live.state.shutdown.clone();
        tokio::select! {
            changed = live.snapshot.changed() => {
                changed.ok()?;
                live.tick.reset();
                let view = build_view(&live.state).await;
                Some((Ok(status_event(&view)), live))
            }
            _ = live.tick.tick() => {
                let view = build_view(&live.state).await;
                Some((Ok(status_event(&view)), live))
            }
            Ok(()) = changed_opt(&mut live.schedules) => {
                live.tick.reset();
                let view = build_view(&live.state).await;
                Some((Ok(status_event(&view)), live))
            }
            event = live.events.recv() => {
                let sse = match event {
                    Ok(Event::Check { .. }) => SseEvent::default().comment("check"),
                    Ok(event) => {
                        let mut value = serde_json::to_value(&event).unwrap_or_default();
                        live.state.live().redactor.json(&mut value);
                        SseEvent::default().event("event").json_data(value)
                            .unwrap_or_else(|_| SseEvent::default().comment("unserializable"))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        SseEvent::default().comment("lagged")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(sse), live))
            }
            _ = shutdown.cancelled() => None,
        }
    });
    let stream = futures_util::StreamExt::take_until(stream, Box::pin(ended));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `changed()` of an optional watch; pending forever without one (or once its sender is gone).
async fn changed_opt<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> Result<(), ()> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Ok(()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

#[derive(Deserialize, Default)]
struct ActionBody {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: String,
}

fn action_body(body: &Bytes) -> Result<ActionBody, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        AppError::BadRequest(format!(
            "the body is JSON {{\"force\": bool, \"reason\": \"...\"}} (both optional): {e}"
        ))
    })
}

fn outcome_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Done { .. } => StatusCode::OK,
        Outcome::Refused { .. } => StatusCode::CONFLICT,
        Outcome::Failed { .. } => StatusCode::BAD_GATEWAY,
        Outcome::NoSuchService => StatusCode::NOT_FOUND,
    }
}

use super::condition::{prefixed, web_words};

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done { message } => prefixed("done: ", message),
        Outcome::Refused { message, .. } => prefixed("refused: ", message),
        Outcome::Failed { message } => prefixed("failed: ", message),
        Outcome::NoSuchService => "no such service".into(),
    }
}

fn record_action(
    state: &WebState,
    caller: &Caller,
    action: &str,
    target: &str,
    body: &ActionBody,
    outcome: String,
) {
    let action = if body.force {
        format!("{action} --force")
    } else {
        action.to_string()
    };
    state.audit.record(AuditEntry {
        at: Utc::now(),
        user: caller.session.user.clone(),
        ip: caller.ip.to_string(),
        action,
        target: target.to_string(),
        reason: body.reason.chars().take(500).collect(),
        outcome: state.live().redactor.text(&outcome).into_owned(),
    });
}

fn action_response(state: &WebState, mut result: ActionResult) -> Response {
    let status = outcome_status(&result.outcome);
    match &mut result.outcome {
        Outcome::Done { message } | Outcome::Failed { message } => {
            *message = web_words(&state.live().redactor.text(message));
        }
        Outcome::Refused { message, .. } => {
            *message = web_words(&state.live().redactor.text(message));
        }
        Outcome::NoSuchService => {}
    }
    (status, Json(result)).into_response()
}

async fn service_action(
    State(state): State<WebState>,
    Operator(caller): Operator,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AppError> {
    let body = action_body(&body)?;
    if !state.live().config.services.contains_key(&name) {
        return Err(AppError::NotFound(format!(
            "no such service `{}`; known services: {}",
            name.chars().take(64).collect::<String>(),
            state
                .live()
                .config
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let Some(verb) = Verb::for_service(&action, body.force) else {
        return Err(AppError::NotFound(
            "unknown action; use start, stop, restart or reload_cache".into(),
        ));
    };
    let result = verbs::dispatch(&state.core, &verb, &name, &caller.by()).await?;
    record_action(
        &state,
        &caller,
        &action,
        &name,
        &body,
        outcome_text(&result.outcome),
    );
    Ok(action_response(&state, result))
}

async fn group_action(
    State(state): State<WebState>,
    Operator(caller): Operator,
    Path((group, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AppError> {
    let body = action_body(&body)?;
    if !state.live().config.groups.contains_key(&group) {
        return Err(AppError::NotFound(format!(
            "no such group `{}`; known groups: {}",
            group.chars().take(64).collect::<String>(),
            state
                .live()
                .config
                .groups
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let Some(verb) = Verb::for_group(&action) else {
        return Err(AppError::NotFound(
            "unknown action; use recover or cancel_recovery".into(),
        ));
    };
    let result = verbs::dispatch(&state.core, &verb, &group, &caller.by()).await?;
    record_action(
        &state,
        &caller,
        &action,
        &group,
        &body,
        outcome_text(&result.outcome),
    );
    Ok(action_response(&state, result))
}

async fn diagnose(
    State(state): State<WebState>,
    _caller: Caller,
) -> Result<Json<serde_json::Value>, AppError> {
    let diagnosis = crate::checks::diagnose::diagnose(
        &state.live().config,
        &state.core,
        &state.monitor,
        &state.http,
    )
    .await
    .ok_or(AppError::Gone)?;
    let text = crate::checks::diagnose::render(&diagnosis);
    let mut value = serde_json::json!({ "diagnosis": diagnosis, "text": text });
    state.live().redactor.json(&mut value);
    Ok(Json(value))
}

#[derive(Deserialize, Default)]
struct LogParams {
    /// `all` (default) or a service name.
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    errors: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn parse_time(what: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            AppError::BadRequest(format!(
                "`{what}` is not an RFC 3339 time such as 2026-11-28T16:44:00Z: {e}"
            ))
        })
}

fn log_query(state: &WebState, p: LogParams) -> Result<LogQuery, AppError> {
    let services = match p.service.as_deref() {
        None | Some("") | Some("all") => state.live().config.services.keys().cloned().collect(),
        // Only a configured name ever becomes part of a path; anything else is unknown.
        Some(name) if state.live().config.services.contains_key(name) => vec![name.to_string()],
        Some(name) => {
            return Err(AppError::NotFound(format!(
                "no such service `{}`",
                name.chars().take(64).collect::<String>()
            )))
        }
    };
    Ok(LogQuery {
        services,
        errors_only: matches!(p.errors.as_deref(), Some("1" | "true" | "on" | "yes")),
        text: p.q.filter(|q| !q.is_empty()),
        error_type: p.kind.filter(|k| !k.is_empty()),
        from: parse_time("from", p.from.as_deref())?,
        to: parse_time("to", p.to.as_deref())?,
        limit: p.limit.unwrap_or(logs::DEFAULT_LIMIT),
        cursor: p.cursor.filter(|c| !c.is_empty()),
        scan_budget: 0,
    })
}

async fn logs_page(
    State(state): State<WebState>,
    _caller: Caller,
    Query(params): Query<LogParams>,
) -> Result<Json<logs::Page>, AppError> {
    let query = log_query(&state, params)?;
    let dir = state.log_dir();
    let redactor = state.live().redactor.clone();
    let patterns = state.live().patterns.clone();
    let page =
        tokio::task::spawn_blocking(move || logs::search(&dir, &query, &patterns, &redactor))
            .await
            .map_err(|e| AppError::Internal(format!("log search panicked: {e}")))?
            .map_err(|e| match e {
                logs::SearchError::BadCursor(_) => AppError::BadRequest(e.to_string()),
                logs::SearchError::Io { .. } => AppError::Internal(e.to_string()),
            })?;
    Ok(Json(page))
}

async fn logs_download(
    State(state): State<WebState>,
    _caller: Caller,
    Query(params): Query<LogParams>,
) -> Result<Response, AppError> {
    let mut query = log_query(&state, params)?;
    query.cursor = None;
    let dir = state.log_dir();
    let redactor = state.live().redactor.clone();
    let patterns = state.live().patterns.clone();
    let (lines, cut) = tokio::task::spawn_blocking(move || {
        logs::collect_all(&dir, &query, &patterns, &redactor, DOWNLOAD_MAX_LINES)
    })
    .await
    .map_err(|e| AppError::Internal(format!("log download panicked: {e}")))?
    .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let mut body = String::new();
    for line in &lines {
        body.push_str(&line.to_text());
        body.push('\n');
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tend-logs.txt\""),
    );
    if cut {
        headers.insert(
            "x-tend-truncated",
            HeaderValue::from_static("newest 1000000 lines only"),
        );
    }
    Ok((headers, body).into_response())
}

/// New lines as they are captured (`line` events), filtered like the search. Ends with tend.
async fn logs_live(
    State(state): State<WebState>,
    caller: Caller,
    Query(params): Query<LogParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let query = log_query(&state, params)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    let patterns = state.live().patterns.clone();
    for name in &query.services {
        let Some(log) = state.core.log(name).await? else {
            continue;
        };
        let mut lines = log.subscribe();
        let (tx, name, query, patterns) =
            (tx.clone(), name.clone(), query.clone(), patterns.clone());
        let (redactor, shutdown) = (state.live().redactor.clone(), state.shutdown.clone());
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    line = lines.recv() => line,
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                };
                let line = match line {
                    Ok(line) => line,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(found) =
                    logs::filter_live(&query, &patterns, &redactor, &name, (*line).clone())
                else {
                    continue;
                };
                if let Ok(event) = SseEvent::default().event("line").json_data(&found) {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    let ended = Arc::clone(&state.auth).session_ended(caller.session.token.clone());
    let stream = futures_util::StreamExt::take_until(stream, Box::pin(ended));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Deserialize)]
struct HistoryParams {
    #[serde(default)]
    minutes: Option<i64>,
}

#[derive(Serialize)]
struct HealthStrip {
    service: String,
    check: String,
    /// `[at_ms, "ok" | "warning" | "critical" | "unknown"]`, oldest first.
    points: Vec<(crate::clock::Millis, crate::checks::probe::Status)>,
}

/// Per service, the results of its health check (its http check, else its first check) over the last
/// `minutes` (default 120).
async fn history(
    State(state): State<WebState>,
    _caller: Caller,
    Query(p): Query<HistoryParams>,
) -> Json<serde_json::Value> {
    let minutes = p.minutes.unwrap_or(120).clamp(1, 24 * 60);
    let now = crate::clock::Clock::new().now_ms();
    let since = now - minutes * 60_000;
    let series = state.monitor.history(since).await;
    let mut strips = Vec::new();
    for service in state.live().config.services.keys() {
        let of_service: Vec<_> = series.iter().filter(|s| &s.service == service).collect();
        let is_http = |check: &str| {
            state
                .live()
                .config
                .checks
                .get(check)
                .is_some_and(|c| matches!(c.kind, CheckKind::Http { .. }))
        };
        let chosen = of_service
            .iter()
            .find(|s| is_http(&s.check))
            .or_else(|| of_service.first());
        strips.push(HealthStrip {
            service: service.clone(),
            check: chosen.map(|s| s.check.clone()).unwrap_or_default(),
            points: chosen
                .map(|s| {
                    s.points
                        .iter()
                        .filter(|p| p.at_ms >= since)
                        .map(|p| (p.at_ms, p.status))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Json(serde_json::json!({ "now_ms": now, "since_ms": since, "strips": strips }))
}

#[derive(Serialize)]
struct ChatRow {
    service: String,
    pattern: String,
    chat_id: String,
    count: u64,
    first_seen_ms: crate::clock::Millis,
    last_seen_ms: crate::clock::Millis,
}

/// The chat ids that keep failing, most frequent first, with the operator's advice.
async fn chats(State(state): State<WebState>, _caller: Caller) -> Json<serde_json::Value> {
    let mut rows = Vec::new();
    for service in state.live().config.services.keys() {
        let Some(report) = state.monitor.errors(service).await else {
            continue;
        };
        for (pattern, group) in &report.groups {
            if !CHAT_PATTERNS.contains(&pattern.as_str()) {
                continue;
            }
            for row in group {
                rows.push(ChatRow {
                    service: service.clone(),
                    pattern: pattern.clone(),
                    chat_id: state.live().redactor.text(&row.key).into_owned(),
                    count: row.count,
                    first_seen_ms: row.first_seen_ms,
                    last_seen_ms: row.last_seen_ms,
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_seen_ms.cmp(&a.last_seen_ms))
    });
    Json(serde_json::json!({ "rows": rows, "advice": CHAT_ADVICE }))
}

async fn audit(State(state): State<WebState>, _caller: Caller) -> Json<Vec<AuditEntry>> {
    Json(state.audit.entries())
}

/// The services as configured, secrets masked.
async fn config_view(State(state): State<WebState>, _caller: Caller) -> Json<serde_json::Value> {
    let r = &state.live().redactor;
    let services: Vec<serde_json::Value> = state
        .live()
        .config
        .services
        .values()
        .map(|s| {
            let env: serde_json::Map<String, serde_json::Value> = s
                .env
                .iter()
                .map(|(k, v)| (k.clone(), r.env_value(k, v).into_owned().into()))
                .collect();
            serde_json::json!({
                "name": s.name,
                "command": s.command.iter().map(|a| r.text(a).into_owned()).collect::<Vec<_>>(),
                "cwd": s.cwd,
                "env": env,
                "group": s.group,
                "port": s.port,
                "min_restart_interval_ms": s.min_restart_interval.as_millis() as u64,
            })
        })
        .collect();
    Json(serde_json::json!({ "services": services }))
}
