//! The control protocol shared by the daemon and the CLI: one JSON request per line, answered by one JSON
//! response per line (a followed log answers with many `line` responses until the client hangs up).
//!
//! ```text
//! -> {"v":1,"cmd":"restart","names":["send_text"],"force":false}
//! <- {"v":1,"reply":"actions","results":[{"name":"send_text","outcome":"refused",...}]}
//! ```

use serde::{Deserialize, Serialize};

use crate::checks::diagnose::Diagnosis;
use crate::core::{ActionResult, CheckView, Snapshot};
use crate::logs::{LogLine, Stream};
use crate::schedule::ScheduleView;

/// Bumped on any incompatible change; a daemon answers other versions with `unsupported_version`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the daemon reads.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    /// Empty `names` = every service.
    Status {
        #[serde(default)]
        names: Vec<String>,
    },
    /// `names` may be `["all"]`.
    Start {
        names: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    Stop {
        names: Vec<String>,
    },
    Restart {
        names: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    Logs {
        name: String,
        #[serde(default = "default_lines")]
        lines: usize,
        #[serde(default)]
        stream: Option<Stream>,
        #[serde(default)]
        follow: bool,
    },
    /// Ends tend. `keep_services`: leave them running for the next tend to adopt (`true`), stop them
    /// (`false`), or do what `on_shutdown` says (absent).
    Shutdown {
        #[serde(default)]
        keep_services: Option<bool>,
    },
    /// tend replaces itself with the binary on disk; the services keep running.
    Reexec,
    /// The staged flood-wait recovery of a group (or cancel the running one).
    Recover {
        group: String,
        #[serde(default)]
        cancel: bool,
    },
    /// `POST /reload_cache` on services; gated like a start unless `force`.
    ReloadCache {
        names: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    /// Every check on every service with its last result.
    Checks,
    /// A full check now, with a verdict and advice.
    Diagnose,
    /// Re-read the configuration and apply the change (the reply lists what was done).
    Reload,
    /// Re-read the configuration and show the planned change without applying it.
    Reread,
    /// Every `[[schedule]]` entry with its next run and recent outcomes.
    Schedules,
}

fn default_lines() -> usize {
    50
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown `cmd`, missing fields.
    BadRequest,
    UnsupportedVersion,
    UnknownService,
    ShuttingDown,
    /// The configuration on disk does not validate; nothing was changed.
    ConfigInvalid,
    /// The configuration is valid but could not be applied (a log could not be opened).
    ReloadFailed,
    /// `tend reexec` was called off (the new binary failed its check, or a switch is under way).
    ReexecRefused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Pong {
        version: String,
        pid: u32,
    },
    Status {
        /// Boxed: by far the largest reply, and most replies are small.
        snapshot: Box<Snapshot>,
    },
    Actions {
        results: Vec<ActionResult>,
    },
    Lines {
        lines: Vec<LogLine>,
    },
    /// One line of a followed log.
    Line {
        line: LogLine,
    },
    Ok {
        message: String,
    },
    Checks {
        checks: Vec<CheckRow>,
    },
    Diagnosis {
        diagnosis: Diagnosis,
    },
    /// The schedules in configuration order; `at_ms` is the daemon's clock (for "in 4m10s").
    Schedules {
        at_ms: i64,
        schedules: Vec<ScheduleView>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// One check on one service, for `tend checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    pub check: String,
    pub service: String,
    pub kind: String,
    pub interval_ms: u64,
    pub action: String,
    /// None until its first result.
    pub last: Option<CheckView>,
}

/// A request or response with its protocol version, as sent on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    #[serde(flatten)]
    pub body: T,
}

/// Encodes one message as a line (with the trailing newline).
pub fn encode<T: Serialize>(body: &T) -> String {
    let mut line = serde_json::to_string(&Envelope {
        v: PROTOCOL_VERSION,
        body,
    })
    .expect("protocol messages serialize");
    line.push('\n');
    line
}

/// Decodes a request line, with an error response ready when it is not acceptable.
pub fn decode_request(line: &str) -> Result<Request, Response> {
    let bad = |message: String| Response::Error {
        code: ErrorCode::BadRequest,
        message,
    };
    if line.trim().is_empty() {
        return Err(bad(format!(
            "empty request line: send one JSON object per line, e.g. {{\"v\":{PROTOCOL_VERSION},\"cmd\":\"ping\"}}"
        )));
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(bad("request must be a JSON object".into()));
    };
    match object.get("v") {
        None => return Err(bad("request lacks the protocol version field `v`".into())),
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(PROTOCOL_VERSION) => {}
            Some(n) => {
                return Err(Response::Error {
                    code: ErrorCode::UnsupportedVersion,
                    message: format!(
                        "protocol version {n} is not supported; this tend speaks version {PROTOCOL_VERSION}"
                    ),
                })
            }
            None => {
                return Err(bad(format!(
                    "the protocol version `v` must be the integer {PROTOCOL_VERSION}, found {v}"
                )))
            }
        },
    }
    let mut object = object.clone();
    object.remove("v");
    let request: Request = serde_json::from_value(serde_json::Value::Object(object.clone()))
        .map_err(|e| bad(format!("invalid request: {e}")))?;
    // serde's `deny_unknown_fields` does not reach verbs without fields (`ping`, `reload`…): compare
    // with the fields the decoded request has (it serializes every one of them).
    let known = serde_json::to_value(&request).expect("protocol messages serialize");
    let unknown: Vec<&str> = object
        .keys()
        .filter(|k| known.get(k.as_str()).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let cmd = known
            .get("cmd")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        return Err(bad(format!(
            "invalid request: unknown field(s) {} for `{cmd}`",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(request)
}

/// Decodes a response line (client side).
pub fn decode_response(line: &str) -> Result<Response, String> {
    let envelope: Envelope<Response> =
        serde_json::from_str(line).map_err(|e| format!("unreadable reply from tend: {e}"))?;
    if envelope.v != PROTOCOL_VERSION {
        return Err(format!(
            "the daemon speaks protocol version {}, this client {PROTOCOL_VERSION}: use the same tend binary",
            envelope.v
        ));
    }
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip() {
        let req = Request::Restart {
            names: vec!["a".into()],
            force: true,
        };
        let line = encode(&req);
        assert_eq!(
            line,
            "{\"v\":1,\"cmd\":\"restart\",\"names\":[\"a\"],\"force\":true}\n"
        );
        assert_eq!(decode_request(line.trim_end()).unwrap(), req);
    }

    #[test]
    fn bad_requests_get_error_replies() {
        let code = |line: &str| match decode_request(line) {
            Err(Response::Error { code, message }) => (code, message),
            other => panic!("expected an error for {line}: {other:?}"),
        };
        assert_eq!(code("nonsense").0, ErrorCode::BadRequest);
        assert_eq!(code("[1,2]").0, ErrorCode::BadRequest);
        assert_eq!(code(r#"{"cmd":"ping"}"#).0, ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"v":2,"cmd":"ping"}"#).0,
            ErrorCode::UnsupportedVersion
        );
        let (c, m) = code(r#"{"v":1,"cmd":"explode"}"#);
        assert_eq!(c, ErrorCode::BadRequest);
        assert!(m.contains("explode"), "{m}");
        assert_eq!(code(r#"{"v":1,"cmd":"stop"}"#).0, ErrorCode::BadRequest);
        // A blank line is answered, not ignored.
        for blank in ["", "   "] {
            let (c, m) = code(blank);
            assert_eq!(c, ErrorCode::BadRequest);
            assert!(m.contains("empty request line"), "{m}");
        }
        // Unknown fields are refused on verbs with and without fields.
        for line in [
            r#"{"v":1,"cmd":"ping","x":1}"#,
            r#"{"v":1,"cmd":"reload","force":true}"#,
            r#"{"v":1,"cmd":"stop","names":["a"],"force":true}"#,
        ] {
            let (c, m) = code(line);
            assert_eq!(c, ErrorCode::BadRequest, "{line}");
            assert!(m.contains("unknown field"), "{line}: {m}");
        }
        // A `v` that is there but wrong is named as bad, not missing.
        for (line, says) in [
            (
                r#"{"v":"1","cmd":"ping"}"#,
                "must be the integer 1, found \"1\"",
            ),
            (
                r#"{"v":-1,"cmd":"ping"}"#,
                "must be the integer 1, found -1",
            ),
            (r#"{"v":1e30,"cmd":"ping"}"#, "must be the integer 1"),
            (r#"{"cmd":"ping"}"#, "lacks the protocol version"),
        ] {
            let (c, m) = code(line);
            assert_eq!(c, ErrorCode::BadRequest, "{line}");
            assert!(m.contains(says), "{line}: {m}");
        }
        // Every field a request may have is still accepted.
        assert!(decode_request(
            r#"{"v":1,"cmd":"logs","name":"a","lines":3,"stream":null,"follow":false}"#
        )
        .is_ok());
        assert!(decode_request(r#"{"v":1,"cmd":"status"}"#).is_ok());
        assert_eq!(
            decode_request(r#"{"v":1,"cmd":"ping"}"#).unwrap(),
            Request::Ping
        );
    }
}
