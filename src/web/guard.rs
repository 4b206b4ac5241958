//! The checks every request passes before a handler sees it, and what every answer gets after:
//! the `Host` allow-list (DNS rebinding), the URL and header size limits, the body read under
//! `[web] body_timeout` and a size cap, JSON error bodies for every failure under `/api`, and HSTS
//! under TLS.
//!
//! Pure decisions ([`host_allowed`]) are separate from the middleware; owns no state and must not
//! know about sessions or actions.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::WebState;

/// Longest URL (path and query) answered; a log search query is far shorter.
pub const MAX_URI: usize = 8 * 1024;
/// Largest request head (all header names and values) answered.
pub const MAX_HEADERS: usize = 32 * 1024;
/// Largest body of a login (a user name and a password).
pub const MAX_LOGIN_BODY: usize = 16 * 1024;
/// Largest body of any other request (an action's reason).
pub const MAX_BODY: usize = 64 * 1024;
/// HSTS under TLS: a year, the usual value; the page is never meant to be reached over plain HTTP.
const HSTS: &str = "max-age=31536000";

/// Whether a request with `Host: host` may be answered by a page listening on `listen`. IP literals
/// always pass (DNS rebinding needs a name); `localhost` passes when the page listens on loopback or
/// on every address; any other name only when it is in `[web] hosts`. No Host at all passes (an
/// HTTP/1.0 script: browsers, the only rebinding vector, always send one); an empty one fails.
pub fn host_allowed(host: Option<&str>, listen: SocketAddr, hosts: &[String]) -> bool {
    let Some(host) = host.map(str::trim) else {
        return true;
    };
    if host.is_empty() {
        return false;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, tail)| ip.parse::<IpAddr>().is_ok() && port_ok(tail));
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" && (listen.ip().is_loopback() || listen.ip().is_unspecified()) {
        return true;
    }
    hosts.contains(&name)
}

fn port_ok(tail: &str) -> bool {
    tail.is_empty()
        || tail
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

pub(super) async fn guard(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let tls = state.secure_cookies();
    let mut response = match admit(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(err) => err.into_response(),
    };
    if api {
        response = json_error(response).await;
    }
    if tls {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The request with its body read in full, or why it is refused.
async fn admit(state: &WebState, request: Request) -> Result<Request, AppError> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI {
        return Err(AppError::UriTooLong(MAX_URI));
    }
    let head: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if head > MAX_HEADERS {
        return Err(AppError::HeadersTooLarge(MAX_HEADERS));
    }
    let live = state.live();
    let settings = &live.settings;
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts
        .next()
        .map(|h| h.to_str().unwrap_or(""))
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    // Two Host headers: which one a proxy in front read is anyone's guess.
    let several = hosts.next().is_some();
    if several || !host_allowed(host, state.listen, &settings.hosts) {
        let shown: String = host.unwrap_or("(none)").chars().take(100).collect();
        return Err(AppError::Host(shown));
    }
    let limit = if request.uri().path() == "/api/login" {
        MAX_LOGIN_BODY
    } else {
        MAX_BODY
    };
    let timeout = settings.limits.body_timeout;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::TooLarge(limit));
    }
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                AppError::TooLarge(limit)
            } else {
                AppError::BadRequest(format!("reading the request's body failed: {err}"))
            });
        }
        Err(_) => return Err(AppError::BodyTimeout(timeout.as_millis())),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A failure from below the handlers (routing 404/405, extractor rejections) as the JSON the API
/// promises, with the original text as the message.
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let text = if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such API path (see README, Status page)".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => {
                "wrong method: actions are POST, reads are GET".to_string()
            }
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        }
    } else {
        text
    };
    let mut out = AppError::Status(status, text).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_allow_list() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let public: SocketAddr = "192.0.2.7:443".parse().unwrap();
        let hosts = vec!["status.example.org".to_string()];
        let table: &[(Option<&str>, SocketAddr, bool)] = &[
            (Some("127.0.0.1:8080"), lo, true),
            (Some("127.0.0.1"), lo, true),
            (Some("[::1]:8080"), lo, true),
            (Some("localhost:8080"), lo, true),
            (Some("LOCALHOST"), any, true),
            (Some("localhost"), public, false),
            (Some("status.example.org"), public, true),
            (Some("Status.Example.Org.:443"), public, true),
            // A DNS-rebinding page reaches the loopback address under its own name.
            (Some("evil.example:8080"), lo, false),
            (Some("status.example.org.evil.example"), public, false),
            (Some("127.0.0.1:80x"), lo, false),
            (Some("[::1]x"), lo, false),
            (Some(""), lo, false),
            (None, lo, true),
        ];
        for (host, listen, expected) in table {
            assert_eq!(
                host_allowed(*host, *listen, &hosts),
                *expected,
                "{host:?} on {listen}"
            );
        }
    }
}
