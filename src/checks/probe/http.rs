//! The `http` probe: one request to a URL, judged by its status code and optionally a body substring.
//!
//! Also owns the bounded fetch that [`super::json`] reuses. It never retries: the caller's schedule is
//! the retry. It keeps no state besides the `reqwest::Client` the caller lends it.

use std::io::ErrorKind;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use super::{io_error_kind, root_cause, ProbeResult, Status};

/// The most of a reply body a probe reads; a bigger body is a failure, not a memory spike.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What to request and what counts as healthy.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: String,
    pub method: Method,
    /// Accepted status codes; `[200]` by default.
    pub expect_status: Vec<u16>,
    /// If set, the body must contain this text.
    pub body_contains: Option<String>,
    /// Bounds the whole exchange: connect, headers and body.
    pub timeout: Duration,
}

impl HttpSpec {
    /// A GET expecting 200 within 5 s.
    pub fn get(url: impl Into<String>) -> HttpSpec {
        HttpSpec {
            url: url.into(),
            method: Method::GET,
            expect_status: vec![200],
            body_contains: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Requests `spec.url` and judges the reply. Never fails: every problem is a `Critical` (or, for a URL
/// that cannot even be requested, `Unknown`) result.
pub async fn probe(client: &reqwest::Client, spec: &HttpSpec) -> ProbeResult {
    let started = Instant::now();
    let read_body = spec.body_contains.is_some();
    let fetched = tokio::time::timeout(
        spec.timeout,
        fetch(client, spec.method.clone(), &spec.url, read_body),
    )
    .await;
    let result = match fetched {
        Err(_elapsed) => ProbeResult::timed_out(spec.timeout),
        Ok(Err(err)) => err.to_result(),
        Ok(Ok(reply)) => judge(spec, &reply, started.elapsed()),
    };
    result.with_duration(started.elapsed())
}

fn judge(spec: &HttpSpec, reply: &Reply, elapsed: Duration) -> ProbeResult {
    let code = reply.status.as_u16();
    let expected: &[u16] = if spec.expect_status.is_empty() {
        &[200]
    } else {
        &spec.expect_status
    };
    if !expected.contains(&code) {
        let list: Vec<String> = expected.iter().map(u16::to_string).collect();
        return ProbeResult::critical(format!("HTTP {code} (expected {})", list.join(" or ")));
    }
    if let Some(needle) = &spec.body_contains {
        let body = String::from_utf8_lossy(&reply.body);
        if !body.contains(needle.as_str()) {
            return ProbeResult::critical(format!("body lacks {needle:?}"));
        }
    }
    ProbeResult::ok(format!("HTTP {code} in {} ms", elapsed.as_millis()))
}

/// A reply as far as probes care: the status and (if asked for) the body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("reply body is larger than {} KiB", MAX_BODY_BYTES / 1024)]
    BodyTooLarge,
}

impl FetchError {
    /// The result a failed fetch gives. A request that could not be built (a malformed URL) is a fault of
    /// the check, not of the service, hence `Unknown`.
    pub(crate) fn to_result(&self) -> ProbeResult {
        match self {
            FetchError::BodyTooLarge => ProbeResult::critical(self.to_string()),
            FetchError::Request(err) => {
                if err.is_builder() {
                    return ProbeResult::unknown(format!(
                        "cannot request this URL ({}); fix the check's url",
                        root_cause(err)
                    ));
                }
                match io_error_kind(err) {
                    Some(ErrorKind::ConnectionRefused) => {
                        return ProbeResult::critical("connection refused")
                    }
                    Some(ErrorKind::ConnectionReset) => {
                        return ProbeResult::critical("connection reset by the service")
                    }
                    _ => {}
                }
                let what = if err.is_connect() {
                    "cannot connect"
                } else if err.is_timeout() {
                    "request timed out"
                } else if err.is_body() || err.is_decode() {
                    "reply broke off"
                } else {
                    "request failed"
                };
                ProbeResult::new(Status::Critical, format!("{what}: {}", root_cause(err)))
            }
        }
    }
}

/// Sends one request; reads at most [`MAX_BODY_BYTES`] of the body when `read_body`. Unbounded in time:
/// callers wrap it in their timeout.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    read_body: bool,
) -> Result<Reply, FetchError> {
    let mut response = client.request(method, url).send().await?;
    let status = response.status();
    let mut body = Vec::new();
    if read_body {
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::probe::test_support::{client, closed_addr, serve};
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::get;
    use axum::Router;

    async fn server() -> String {
        let app = Router::new()
            .route("/health", get(|| async { r#"{"status":"ok"}"# }))
            .route(
                "/broken",
                get(|| async { (AxumStatus::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/created", get(|| async { (AxumStatus::CREATED, "made") }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/big", get(|| async { vec![b'x'; MAX_BODY_BYTES + 1] }));
        format!("http://{}", serve(app).await)
    }

    fn spec(url: String) -> HttpSpec {
        HttpSpec {
            timeout: Duration::from_secs(5),
            ..HttpSpec::get(url)
        }
    }

    #[tokio::test]
    async fn expected_status_is_ok_and_says_how_long_it_took() {
        let base = server().await;
        let r = probe(&client(), &spec(format!("{base}/health"))).await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.message.starts_with("HTTP 200 in "), "{}", r.message);
        assert!(r.message.ends_with(" ms"), "{}", r.message);
    }

    #[tokio::test]
    async fn unexpected_status_is_critical_and_names_what_was_expected() {
        let base = server().await;
        let r = probe(&client(), &spec(format!("{base}/broken"))).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "HTTP 500 (expected 200)");

        let mut s = spec(format!("{base}/created"));
        s.expect_status = vec![200, 201];
        assert_eq!(probe(&client(), &s).await.status, Status::Ok);
        s.expect_status = vec![200, 204];
        assert_eq!(
            probe(&client(), &s).await.message,
            "HTTP 201 (expected 200 or 204)"
        );
    }

    #[tokio::test]
    async fn body_substring_is_checked() {
        let base = server().await;
        let mut s = spec(format!("{base}/health"));
        s.body_contains = Some("\"ok\"".into());
        assert_eq!(probe(&client(), &s).await.status, Status::Ok);
        s.body_contains = Some("not_ready".into());
        let r = probe(&client(), &s).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "body lacks \"not_ready\"");
    }

    #[tokio::test]
    async fn slow_handler_hits_the_timeout() {
        let base = server().await;
        let mut s = spec(format!("{base}/slow"));
        s.timeout = Duration::from_millis(150);
        let started = std::time::Instant::now();
        let r = probe(&client(), &s).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "no answer within 150ms");
        assert!(r.duration_ms >= 150, "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn closed_port_is_connection_refused() {
        let s = spec(format!("http://{}/health", closed_addr()));
        let r = probe(&client(), &s).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "connection refused");
    }

    #[tokio::test]
    async fn oversized_body_and_bad_url_are_reported_not_panicked() {
        let base = server().await;
        let mut s = spec(format!("{base}/big"));
        s.body_contains = Some("y".into());
        let r = probe(&client(), &s).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "reply body is larger than 1024 KiB");

        let r = probe(&client(), &spec("not a url".into())).await;
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.starts_with("cannot request this URL"), "{r:?}");
    }
}
