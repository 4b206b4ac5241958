//! The `json` probe: fetch a JSON document, read one value by JSON pointer (`/cache_size` of `/stats`)
//! and compare it with thresholds; and the `last_errors` event feed, which turns the service's sliding
//! list of recent errors into a stream where every entry appears exactly once.
//!
//! It never classifies errors itself: [`new_events`] hands entries to the caller, who feeds them to the
//! same classifier as log lines. The only state is the caller-owned [`EventCursor`].

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::http::fetch;
use super::{ProbeResult, Status};

/// What to fetch, where the value is, and what counts as healthy.
///
/// Bounds are checked in order: below `min` or above `max` is `Critical`; below `warn_below` or above
/// `warn_above` is `Warning`. A bound that is not set is not checked.
#[derive(Debug, Clone)]
pub struct JsonSpec {
    pub url: String,
    pub method: Method,
    /// RFC 6901 pointer into the reply, e.g. `/cache_size`.
    pub pointer: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub warn_below: Option<f64>,
    pub warn_above: Option<f64>,
    /// Bounds the whole exchange: connect, headers and body.
    pub timeout: Duration,
}

impl JsonSpec {
    /// A GET of `url` reading `pointer`, no bounds, 5 s timeout.
    pub fn get(url: impl Into<String>, pointer: impl Into<String>) -> JsonSpec {
        JsonSpec {
            url: url.into(),
            method: Method::GET,
            pointer: pointer.into(),
            min: None,
            max: None,
            warn_below: None,
            warn_above: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn has_bounds(&self) -> bool {
        self.min.is_some()
            || self.max.is_some()
            || self.warn_below.is_some()
            || self.warn_above.is_some()
    }
}

/// Fetches and judges; also returns the whole parsed document (when the reply was a 2xx JSON document,
/// whatever the verdict) so the caller can feed `/last_errors` to [`new_events`].
///
/// The value is recorded in `value` for numbers, and booleans as 0/1. A missing pointer is `Critical`
/// ("no /cache_size in the reply"); a value that is not a number is `Critical` when bounds are set and
/// merely shown otherwise.
pub async fn probe(client: &reqwest::Client, spec: &JsonSpec) -> (ProbeResult, Option<Value>) {
    let started = Instant::now();
    let fetched = tokio::time::timeout(
        spec.timeout,
        fetch(client, spec.method.clone(), &spec.url, true),
    )
    .await;
    let (result, doc) = match fetched {
        Err(_elapsed) => (ProbeResult::timed_out(spec.timeout), None),
        Ok(Err(err)) => (err.to_result(), None),
        Ok(Ok(reply)) if !reply.status.is_success() => (
            ProbeResult::critical(format!("HTTP {} (expected 2xx)", reply.status.as_u16())),
            None,
        ),
        Ok(Ok(reply)) => match serde_json::from_slice::<Value>(&reply.body) {
            Err(err) => (
                ProbeResult::critical(format!("reply is not JSON ({err})")),
                None,
            ),
            Ok(doc) => (judge(spec, &doc), Some(doc)),
        },
    };
    (result.with_duration(started.elapsed()), doc)
}

/// Judges the value at `spec.pointer` in an already parsed document.
pub fn judge(spec: &JsonSpec, doc: &Value) -> ProbeResult {
    let name = display_name(&spec.pointer);
    let Some(found) = doc.pointer(&spec.pointer) else {
        return ProbeResult::critical(format!("no {} in the reply", spec.pointer));
    };
    let number = match found {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    let Some(v) = number else {
        let shown = short_json(found);
        return if spec.has_bounds() {
            ProbeResult::critical(format!("{} is {shown}, not a number", spec.pointer))
        } else {
            ProbeResult::ok(format!("{name} {shown}"))
        };
    };
    let (status, message) = if let Some(min) = spec.min.filter(|min| v < *min) {
        (
            Status::Critical,
            format!("{name} {v} below the minimum {min}"),
        )
    } else if let Some(max) = spec.max.filter(|max| v > *max) {
        (
            Status::Critical,
            format!("{name} {v} above the maximum {max}"),
        )
    } else if let Some(low) = spec.warn_below.filter(|low| v < *low) {
        (Status::Warning, format!("{name} {v} below {low}"))
    } else if let Some(high) = spec.warn_above.filter(|high| v > *high) {
        (Status::Warning, format!("{name} {v} above {high}"))
    } else {
        (Status::Ok, format!("{name} {v}"))
    };
    ProbeResult::new(status, message)
        .with_value(v)
        .with_perfdata(format!("{}={v}", perf_label(name)))
}

/// `/cache_size` reads as `cache_size`, `/a/b` as `a/b`, the empty pointer as `value`.
fn display_name(pointer: &str) -> &str {
    match pointer.strip_prefix('/') {
        Some("") | None => "value",
        Some(rest) => rest,
    }
}

/// Nagios labels may not contain `=` or `'`; spaces need quoting, which we avoid by replacing.
fn perf_label(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '=' | '\'' | ' ' => '_',
            c => c,
        })
        .collect()
}

/// A value as shown in a one-line message, cut to a readable length.
fn short_json(v: &Value) -> String {
    const LIMIT: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= LIMIT {
        return text;
    }
    let cut: String = text.chars().take(LIMIT).collect();
    format!("{cut}…")
}

/// One entry of the services' `/stats.last_errors`: `{"ts": 1771581234.12, "error": "FloodWait: 27s"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// Epoch seconds, as the service's clock saw it.
    pub ts: f64,
    pub error: String,
}

/// Remembers which error entries were already handed out, so each is returned exactly once.
///
/// `last_errors` is a sliding list of the last 10, so consecutive polls overlap; entries are keyed by
/// `(ts, error)`. Keys are remembered, not positions or a high-water mark, which is what makes a restarted
/// service work: its list shrinks to nothing and its new entries are new keys, even if its clock went
/// backwards. The memory is bounded ([`EventCursor::MEMORY`] keys, oldest forgotten first), far more than
/// one window, so an entry still in the window is never forgotten.
///
/// A fresh cursor returns every entry of the first document: the errors since the service started count.
/// The cursor is serializable so the caller can persist it and not count them twice across a restart of
/// tend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventCursor {
    seen: VecDeque<(u64, String)>,
}

impl EventCursor {
    /// How many entry keys a cursor remembers.
    pub const MEMORY: usize = 256;

    pub fn new() -> EventCursor {
        EventCursor::default()
    }

    fn remember(&mut self, entry: &ErrorEntry) -> bool {
        let key = (entry.ts.to_bits(), entry.error.clone());
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen.len() == Self::MEMORY {
            self.seen.pop_front();
        }
        self.seen.push_back(key);
        true
    }
}

/// The entries of the array at `pointer` (normally `/last_errors`) not returned before, oldest first.
///
/// A missing or non-array value gives nothing; entries without a numeric `ts` are skipped, and an `error`
/// that is not a string is kept as its JSON text.
pub fn new_events(doc: &Value, pointer: &str, seen: &mut EventCursor) -> Vec<ErrorEntry> {
    let Some(list) = doc.pointer(pointer).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(parse_entry)
        .filter(|entry| seen.remember(entry))
        .collect()
}

fn parse_entry(v: &Value) -> Option<ErrorEntry> {
    let ts = v.get("ts")?.as_f64()?;
    let error = match v.get("error")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(ErrorEntry { ts, error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::probe::test_support::{client, closed_addr, serve};
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use serde_json::json;

    async fn server() -> String {
        let app = Router::new()
            .route(
                "/stats",
                get(|| async {
                    axum::Json(json!({
                        "cache_size": 3978,
                        "uptime_seconds": 1234.5,
                        "error_count": 7,
                        "warm": true,
                        "name": "send_text",
                        "last_errors": [{"ts": 1771581234.12, "error": "FloodWait: 27s"}],
                    }))
                }),
            )
            .route("/text", get(|| async { "<html>" }))
            .route(
                "/down",
                get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"status": "error"})),
                    )
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "{}"
                }),
            );
        format!("http://{}", serve(app).await)
    }

    #[tokio::test]
    async fn value_is_recorded_and_whole_document_returned() {
        let base = server().await;
        let spec = JsonSpec {
            warn_below: Some(3900.0),
            min: Some(1.0),
            ..JsonSpec::get(format!("{base}/stats"), "/cache_size")
        };
        let (r, doc) = probe(&client(), &spec).await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.message, "cache_size 3978");
        assert_eq!(r.value, Some(3978.0));
        assert_eq!(r.perfdata.as_deref(), Some("cache_size=3978"));
        let doc = doc.unwrap();
        assert_eq!(doc["last_errors"][0]["error"], "FloodWait: 27s");
    }

    #[tokio::test]
    async fn missing_pointer_is_critical() {
        let base = server().await;
        let (r, doc) = probe(
            &client(),
            &JsonSpec::get(format!("{base}/stats"), "/cache_sise"),
        )
        .await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "no /cache_sise in the reply");
        assert_eq!(r.value, None);
        assert!(doc.is_some(), "the document still goes to the event feed");
    }

    #[tokio::test]
    async fn non_numeric_values_and_booleans() {
        let base = server().await;
        let url = format!("{base}/stats");
        let (r, _) = probe(&client(), &JsonSpec::get(&url, "/name")).await;
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::Ok, "name \"send_text\"")
        );
        assert_eq!(r.value, None);

        let bounded = JsonSpec {
            min: Some(1.0),
            ..JsonSpec::get(&url, "/name")
        };
        let (r, _) = probe(&client(), &bounded).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "/name is \"send_text\", not a number");

        let (r, _) = probe(&client(), &JsonSpec::get(&url, "/warm")).await;
        assert_eq!(r.value, Some(1.0));
    }

    #[test]
    fn thresholds() {
        let spec = JsonSpec {
            min: Some(1.0),
            max: Some(10_000.0),
            warn_below: Some(3900.0),
            warn_above: Some(9000.0),
            ..JsonSpec::get("http://unused", "/cache_size")
        };
        let table = [
            (0.0, Status::Critical, "cache_size 0 below the minimum 1"),
            (3850.0, Status::Warning, "cache_size 3850 below 3900"),
            (3900.0, Status::Ok, "cache_size 3900"),
            (3978.5, Status::Ok, "cache_size 3978.5"),
            (9500.0, Status::Warning, "cache_size 9500 above 9000"),
            (
                10_001.0,
                Status::Critical,
                "cache_size 10001 above the maximum 10000",
            ),
        ];
        for (v, status, message) in table {
            let r = judge(&spec, &json!({ "cache_size": v }));
            assert_eq!((r.status, r.message.as_str()), (status, message), "{v}");
            assert_eq!(r.value, Some(v));
        }
    }

    #[tokio::test]
    async fn bad_replies_are_critical_without_a_document() {
        let base = server().await;
        let (r, doc) = probe(&client(), &JsonSpec::get(format!("{base}/text"), "/x")).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message.starts_with("reply is not JSON ("),
            "{}",
            r.message
        );
        assert!(doc.is_none());

        let (r, doc) = probe(&client(), &JsonSpec::get(format!("{base}/down"), "/x")).await;
        assert_eq!(r.message, "HTTP 503 (expected 2xx)");
        assert!(doc.is_none());

        let spec = JsonSpec {
            timeout: Duration::from_millis(100),
            ..JsonSpec::get(format!("{base}/slow"), "/x")
        };
        let (r, _) = probe(&client(), &spec).await;
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::Critical, "no answer within 100ms")
        );

        let closed = JsonSpec::get(format!("http://{}/stats", closed_addr()), "/x");
        assert_eq!(
            probe(&client(), &closed).await.0.message,
            "connection refused"
        );
    }

    fn stats(entries: &[(f64, &str)]) -> Value {
        let list: Vec<Value> = entries
            .iter()
            .map(|(ts, e)| json!({"ts": ts, "error": e}))
            .collect();
        json!({ "cache_size": 3978, "last_errors": list })
    }

    fn errors(events: &[ErrorEntry]) -> Vec<&str> {
        events.iter().map(|e| e.error.as_str()).collect()
    }

    #[test]
    fn each_entry_once_over_overlapping_windows() {
        let mut cursor = EventCursor::new();
        // A sliding window of the last 3 over a stream of errors e0..e9, polled after every 2 new ones.
        let stream: Vec<(f64, String)> = (0..10)
            .map(|i| (100.0 + i as f64, format!("e{i}")))
            .collect();
        let mut delivered = Vec::new();
        for end in (2..=10usize).step_by(2) {
            let window: Vec<(f64, &str)> = stream[end.saturating_sub(3)..end]
                .iter()
                .map(|(ts, e)| (*ts, e.as_str()))
                .collect();
            let events = new_events(&stats(&window), "/last_errors", &mut cursor);
            delivered.extend(events.into_iter().map(|e| e.error));
            // Polling again with nothing new gives nothing.
            assert!(new_events(&stats(&window), "/last_errors", &mut cursor).is_empty());
        }
        let expected: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
        // Every window overlaps the previous one by one entry, and nothing slid out unseen.
        assert_eq!(delivered, expected);
    }

    #[test]
    fn same_text_at_another_time_is_another_event() {
        let mut cursor = EventCursor::new();
        let first = new_events(
            &stats(&[(1.0, "FloodWait: 27s"), (2.0, "FloodWait: 27s")]),
            "/last_errors",
            &mut cursor,
        );
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].ts, 2.0);
    }

    #[test]
    fn restarted_service_shrinks_the_list_and_may_go_back_in_time() {
        let mut cursor = EventCursor::new();
        let before = [(500.0, "a"), (501.0, "b"), (502.0, "c")];
        assert_eq!(
            errors(&new_events(&stats(&before), "/last_errors", &mut cursor)),
            ["a", "b", "c"]
        );
        // Restart: the list starts over, empty.
        assert!(new_events(&stats(&[]), "/last_errors", &mut cursor).is_empty());
        // Its clock is behind the old one; the new entries still count, once.
        let after = [(400.0, "ValueError: x")];
        assert_eq!(
            errors(&new_events(&stats(&after), "/last_errors", &mut cursor)),
            ["ValueError: x"]
        );
        let after = [(400.0, "ValueError: x"), (401.0, "b")];
        assert_eq!(
            errors(&new_events(&stats(&after), "/last_errors", &mut cursor)),
            ["b"]
        );
    }

    #[test]
    fn malformed_documents_give_nothing_and_memory_is_bounded() {
        let mut cursor = EventCursor::new();
        assert!(new_events(&json!({}), "/last_errors", &mut cursor).is_empty());
        assert!(new_events(&json!({"last_errors": 3}), "/last_errors", &mut cursor).is_empty());
        let odd = json!({"last_errors": [{"error": "no ts"}, {"ts": 5, "error": {"code": 1}}, 7]});
        let events = new_events(&odd, "/last_errors", &mut cursor);
        assert_eq!(errors(&events), [r#"{"code":1}"#]);

        for i in 0..(EventCursor::MEMORY * 2) {
            new_events(&stats(&[(i as f64, "x")]), "/last_errors", &mut cursor);
        }
        assert_eq!(cursor.seen.len(), EventCursor::MEMORY);
        // A persisted cursor round-trips.
        let text = serde_json::to_string(&cursor).unwrap();
        assert_eq!(serde_json::from_str::<EventCursor>(&text).unwrap(), cursor);
    }
}
