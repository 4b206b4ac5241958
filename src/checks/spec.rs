//! From a configured check to a probe's spec, for one service: placeholder expansion and the http/json
//! specs. Shared by the scheduler (`monitor`) and `tend diagnose`, so both measure the same thing.

use std::time::Duration;

use super::probe::{http::HttpSpec, json::JsonSpec};
use crate::config::CheckKind;

/// Expands `{host}` (127.0.0.1), `{name}` and `{port}` in a url or address of a check.
pub fn expand(template: &str, service: &str, port: Option<u16>) -> String {
    template
        .replace("{host}", "127.0.0.1")
        .replace("{name}", service)
        .replace("{port}", &port.map(|p| p.to_string()).unwrap_or_default())
}

fn method(m: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_bytes()).unwrap_or(reqwest::Method::GET)
}

/// The http spec of an `http` check on `service`, or `None` for another kind.
pub fn http_spec(
    kind: &CheckKind,
    service: &str,
    port: Option<u16>,
    timeout: Duration,
) -> Option<HttpSpec> {
    match kind {
        CheckKind::Http {
            url,
            method: m,
            expect_status,
            body_contains,
        } => Some(HttpSpec {
            url: expand(url, service, port),
            method: method(m),
            expect_status: expect_status.clone(),
            body_contains: body_contains.clone(),
            timeout,
        }),
        _ => None,
    }
}

/// The json spec of a `json` check on `service`, or `None` for another kind.
pub fn json_spec(
    kind: &CheckKind,
    service: &str,
    port: Option<u16>,
    timeout: Duration,
) -> Option<JsonSpec> {
    match kind {
        CheckKind::Json {
            url,
            method: m,
            pointer,
            min,
            max,
            warn_below,
            warn_above,
            ..
        } => Some(JsonSpec {
            url: expand(url, service, port),
            method: method(m),
            pointer: pointer.clone(),
            min: *min,
            max: *max,
            warn_below: *warn_below,
            warn_above: *warn_above,
            timeout,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_per_service() {
        assert_eq!(
            expand("http://{host}:{port}/x/{name}", "send_text", Some(5022)),
            "http://127.0.0.1:5022/x/send_text"
        );
        assert_eq!(expand("{host}:{port}", "a", None), "127.0.0.1:");
    }
}
