//! The HTTP face of an emulated service: the real endpoints with the real shapes and status codes
//! (TELETHON.md §3), plus the test-only control API under `EMU_CONTROL=1`.
//!
//! Owns request parsing and the mapping from an outcome to a status code, body and log line. It holds no
//! state of its own (everything is in [`Sim`]) and decides nothing about floods or the cache. Bodies are
//! serialised the way Flask's `jsonify` does: sorted keys, compact, a trailing newline.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::account::{Cause, Event, EventKind};
use super::args::Service;
use super::fault_tasks;
use super::faults::FaultRequest;
use super::rpc::RpcError;
use super::service::{
    SendMediaRequest, SendTextRequest, Sim, RELOAD_TIMEOUT_S, SEND_MEDIA_TIMEOUT_S,
    SEND_TEXT_TIMEOUT_S,
};
use super::texts;
use super::universe::{parse_peer, Peer};

/// Flask's 404 page.
const NOT_FOUND_HTML: &str = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";

/// The router of one emulated service.
pub fn app(sim: Arc<Sim>) -> Router {
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/reload_cache", post(reload_cache));
    router = match sim.cfg.service {
        Service::SendText => router.route("/send_text", post(send_text)),
        Service::SendMedia => router.route("/send_media", post(send_media)),
    };
    if sim.cfg.control {
        router = router
            .route("/__emu/state", get(emu_state))
            .route("/__emu/fault", post(emu_fault));
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), hang_layer))
        .with_state(sim)
}

/// A JSON response shaped like Flask's `jsonify`.
fn json_response(status: StatusCode, body: Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        NOT_FOUND_HTML,
    )
        .into_response()
}

/// The `hang` fault stalls every endpoint but the control API (which must stay reachable to clear it).
async fn hang_layer(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/__emu/") {
        sim.faults.wait_hang().await;
    }
    next.run(req).await
}

/// `GET /health`: "ok" as soon as the client object exists, warm or not (the real quirk).
async fn health(State(sim): State<Arc<Sim>>) -> Response {
    sim.faults.wait_health_hang().await;
    let delay = sim.faults.health_delay_s();
    if delay > 0.0 {
        sim.clock.sleep(delay).await;
    }
    if sim.client_ready() {
        json_response(StatusCode::OK, json!({"status": "ok"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready"}),
        )
    }
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, sim.stats_json())
}

/// `POST /reload_cache`: a full sweep on the Telethon thread.
async fn reload_cache(State(sim): State<Arc<Sim>>) -> Response {
    if !sim.client_ready() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "error", "error": "client not ready"}),
        );
    }
    let _ = sim
        .account
        .record(vec![Event::new(EventKind::ReloadCache).cause(Cause::Reload)]);
    let s = sim.clone();
    let outcome = sim
        .telethon
        .run_coro(
            async move { s.full_sweep(Cause::Reload).await },
            sim.clock.real(RELOAD_TIMEOUT_S),
        )
        .await
        .unwrap_or(Err(RpcError::Timeout));
    match outcome {
        Ok(n) => json_response(StatusCode::OK, json!({"status": "ok", "cache_size": n})),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "error", "error": e.to_string()}),
        ),
    }
}

/// Flask's `request.get_json(force=True, silent=True)`: anything unparsable is "no body".
fn body_json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn not_ready() -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "telethon client not ready"}),
    )
}

/// `POST /send_text`.
async fn send_text(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let v = body_json(&body);
    let Some(chat) = v.get("chat").and_then(parse_peer) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "chat is required"}),
        );
    };
    if !sim.client_ready() {
        return not_ready();
    }
    let text = match v.get("text") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    let tag = truthy(v.get("tag_client"));
    let pick = |key: &str| {
        if tag {
            v.get(key).cloned().unwrap_or(Value::Null)
        } else {
            Value::Null
        }
    };
    let req = SendTextRequest {
        chat,
        text,
        tagged_id: pick("client_id"),
        tagged_name: pick("client_username"),
    };
    let s = sim.clone();
    let outcome = sim
        .telethon
        .run_coro(s.send_text(req), sim.clock.real(SEND_TEXT_TIMEOUT_S))
        .await
        .unwrap_or(Err(RpcError::Timeout));
    match outcome {
        Ok(ok) => json_response(
            StatusCode::OK,
            json!({
                "status": "ok",
                "chat_id": ok.chat_id,
                "message_id": ok.message_id,
                "chat_type": ok.chat_type.as_str(),
                "client_tagged_id": ok.tagged_id,
                "client_tagged_name": ok.tagged_name,
            }),
        ),
        Err(e) => send_error(&sim, e),
    }
}

fn bad_media_request(error: String) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "error": error}),
    )
}

/// One `files` entry: a string, or an object with `file`, `url` or `path`.
fn file_ref(entry: &Value) -> Option<String> {
    let s = match entry {
        Value::String(s) => s.as_str(),
        Value::Object(o) => ["file", "url", "path"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))?,
        _ => return None,
    };
    (!s.trim().is_empty()).then(|| s.to_string())
}

/// `POST /send_media`.
async fn send_media(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    sim.log.info(
        texts::LOGGER_MEDIA_WEBHOOK,
        &texts::media_dump(content_type, &String::from_utf8_lossy(&body)),
    );
    let v = body_json(&body);
    let recipient = match (v.get("user_id"), v.get("username")) {
        (Some(uid), _) if !uid.is_null() => match parse_peer(uid) {
            Some(Peer::Id(id)) => Peer::Id(id),
            _ => return bad_media_request(format!("user_id must be an integer, got {uid}")),
        },
        (_, Some(Value::String(name))) if !name.trim().is_empty() => {
            Peer::Username(name.trim().to_string())
        }
        _ => return bad_media_request("user_id or username is required".into()),
    };
    let files = match v.get("files") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut refs = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match file_ref(item) {
                    Some(r) => refs.push(r),
                    None => {
                        return bad_media_request(format!(
                            "files[{i}]: expected a URL, t.me link or path, or an object with file, url or path"
                        ))
                    }
                }
            }
            refs
        }
        _ => return bad_media_request("files must be a non-empty list".into()),
    };
    if !sim.client_ready() {
        return not_ready();
    }
    let recipient_json = match &recipient {
        Peer::Id(id) => json!(id),
        Peer::Username(name) => json!(name),
    };
    let req = SendMediaRequest { recipient, files };
    let s = sim.clone();
    let outcome = sim
        .telethon
        .run_coro(s.send_media(req), sim.clock.real(SEND_MEDIA_TIMEOUT_S))
        .await
        .unwrap_or(Err(RpcError::Timeout));
    match outcome {
        Ok(ok) => json_response(
            StatusCode::OK,
            json!({
                "status": "ok",
                "recipient": recipient_json,
                "count": ok.message_ids.len(),
                "message_ids": ok.message_ids,
            }),
        ),
        Err(e) => send_error(&sim, e),
    }
}

/// How the scripts answer a failed send. A FloodWait is not logged, only counted, and answered 429
/// (500 in `--legacy-refetch`, as the pre-fix scripts did); everything else is logged as
/// `<endpoint> failed: <Class>: <msg>` and answered with the traceback.
fn send_error(sim: &Sim, err: RpcError) -> Response {
    if let RpcError::FloodWait { seconds, .. } = err {
        if !sim.cfg.legacy_refetch {
            sim.record_error(format!("FloodWait: {seconds}s"));
            return json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "error", "error": "FloodWait", "retry_after": seconds}),
            );
        }
    }
    let service = sim.cfg.service;
    let class = err.class();
    let message = err.to_string();
    sim.log.error(
        service.logger(),
        &texts::send_failed(service.name(), class, &message),
    );
    sim.record_error(format!("{class}: {message}"));
    let frames = match (&err, service) {
        (RpcError::Timeout, _) => texts::FRAMES_HANDLER_TIMEOUT,
        (e, Service::SendText) if e.is_rpc() => texts::FRAMES_HANDLER_SEND_MESSAGE,
        (e, Service::SendMedia) if e.is_rpc() => texts::FRAMES_HANDLER_SEND_MEDIA,
        _ => texts::FRAMES_HANDLER_MISS,
    };
    let trace = texts::traceback(frames, &err.exception_line());
    match service {
        Service::SendText => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "error", "error": message, "traceback": trace}),
        ),
        Service::SendMedia => {
            let status = match err {
                RpcError::FileReferenceExpired { .. } => StatusCode::GONE,
                RpcError::EntityNotFound(_) => StatusCode::NOT_FOUND,
                RpcError::PeerIdInvalid { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = if status == StatusCode::INTERNAL_SERVER_ERROR {
                json!({"status": "error", "error": message, "trace": trace})
            } else {
                json!({"status": "error", "error": message})
            };
            json_response(status, body)
        }
    }
}

/// `GET /__emu/state[?events=N]`: process and account state, plus the last N events (all by default).
async fn emu_state(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = match sim.state_json() {
        Ok(s) => s,
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "error", "error": e.to_string()}),
            )
        }
    };
    let limit = query.get("events").and_then(|n| n.parse::<usize>().ok());
    let events = match sim.account.events() {
        Ok(all) => {
            let skip = limit.map_or(0, |n| all.len().saturating_sub(n));
            json!(all[skip..])
        }
        Err(e) => json!({"error": e.to_string()}),
    };
    if let Value::Object(map) = &mut state {
        map.insert("events".into(), events);
    }
    json_response(StatusCode::OK, state)
}

/// `POST /__emu/fault`.
async fn emu_fault(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"status": "error", "error": format!(
                    "bad fault request ({e}); expected {{\"kind\": \"flood\"|\"pts_noise\"|\"hang\"|\"health_delay\"|\"health_hang\"|\"crash_thread\"|\"exit\"|\"crash\"|\"refuse_start\"|\"ignore_sigterm\"|\"spawn_grandchild\"|\"grow_memory\"|\"flood_output\"|\"join\"|\"clear\", ...}}"
                )}),
            )
        }
    };
    match fault_tasks::apply(&sim, req) {
        Ok(extra) => {
            let mut body = json!({"status": "ok"});
            if let (Value::Object(map), Value::Object(extra)) = (&mut body, extra) {
                map.extend(extra);
            }
            json_response(StatusCode::OK, body)
        }
        Err(error) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "error": error}),
        ),
    }
}
