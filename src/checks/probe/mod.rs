//! Probes: one measurement of one service, returned as a [`ProbeResult`] value.
//!
//! Each kind lives in its own file: [`http`] (status and body), [`json`] (a value by JSON pointer, and the
//! `last_errors` event feed), [`tcp`] (the port accepts), [`procstat`] (RSS and CPU of a process tree from
//! /proc, judged by [`process::probe`]), [`exec`] (Nagios-style plugins) and [`webhook`] (alert delivery).
//!
//! Every probe is bounded by its own timeout and turns every failure into a result (a timeout is
//! `Critical` "no answer within 5s"); none panics, none keeps global state, none decides what to do about
//! a result. Scheduling, configuration and history belong to the caller.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod exec;
pub mod http;
pub mod json;
pub mod procstat;
pub mod tcp;
pub mod webhook;

/// The judging half of the `process` check kind lives next to the /proc reader it judges.
pub use procstat as process;

/// How a probe judged the service, ordered from best to worst (Nagios' states, same meaning).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    Warning,
    Critical,
    /// The probe could not tell (a broken plugin, a reply it cannot read); not a verdict on the service.
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code for this status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    pub fn nagios_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// The status for a Nagios plugin exit code; anything outside 0..=3 is `None`.
    pub fn from_nagios_code(code: i32) -> Option<Status> {
        match code {
            0 => Some(Status::Ok),
            1 => Some(Status::Warning),
            2 => Some(Status::Critical),
            3 => Some(Status::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        })
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub status: Status,
    /// One line for a human: `HTTP 200 in 3 ms`, `cache_size 3978`, `no answer within 5s`.
    pub message: String,
    /// The measured number, if the probe measures one (the cache size, the RSS in bytes); the status
    /// page shows it and the history keeps it.
    pub value: Option<f64>,
    /// Wall time the probe took, including a timeout it hit.
    pub duration_ms: u64,
    /// Nagios perfdata (`cache_size=3978`), if any.
    pub perfdata: Option<String>,
}

impl ProbeResult {
    pub fn new(status: Status, message: impl Into<String>) -> ProbeResult {
        ProbeResult {
            status,
            message: message.into(),
            value: None,
            duration_ms: 0,
            perfdata: None,
        }
    }

    pub fn ok(message: impl Into<String>) -> ProbeResult {
        ProbeResult::new(Status::Ok, message)
    }

    pub fn critical(message: impl Into<String>) -> ProbeResult {
        ProbeResult::new(Status::Critical, message)
    }

    pub fn unknown(message: impl Into<String>) -> ProbeResult {
        ProbeResult::new(Status::Unknown, message)
    }

    /// The result every probe gives when its timeout elapses first.
    pub fn timed_out(timeout: Duration) -> ProbeResult {
        ProbeResult::critical(format!(
            "no answer within {}",
            crate::clock::format_duration(timeout)
        ))
    }

    pub fn with_value(mut self, value: f64) -> ProbeResult {
        self.value = Some(value);
        self
    }

    pub fn with_perfdata(mut self, perfdata: impl Into<String>) -> ProbeResult {
        self.perfdata = Some(perfdata.into());
        self
    }

    pub fn with_duration(mut self, elapsed: Duration) -> ProbeResult {
        self.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Walks an error's `source()` chain looking for an I/O error (reqwest and hyper wrap it deeply).
pub(crate) fn io_error_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// The innermost message of an error chain: `reqwest`'s outer layers only say "error sending request".
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Shared by the probe tests: small servers on 127.0.0.1:0 and waiting on conditions with a deadline.
#[cfg(test)]
pub(crate) mod test_support {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// Serves `app` on a fresh 127.0.0.1 port until the test's runtime ends.
    pub async fn serve(app: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        addr
    }

    /// An address nobody listens on: bound by the OS, then released.
    pub fn closed_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    /// Polls `cond` every 10 ms until it yields `Some`, or panics naming `what` after `timeout`.
    pub async fn wait_for<T>(
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = cond() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_orders_from_best_to_worst_and_maps_nagios_codes() {
        assert!(Status::Ok < Status::Warning);
        assert!(Status::Warning < Status::Critical);
        assert!(Status::Critical < Status::Unknown);
        for code in 0..=3 {
            assert_eq!(Status::from_nagios_code(code).unwrap().nagios_code(), code);
        }
        assert_eq!(Status::from_nagios_code(4), None);
        assert_eq!(
            serde_json::to_string(&Status::Critical).unwrap(),
            "\"critical\""
        );
    }

    #[test]
    fn timeouts_read_like_a_human_wrote_them() {
        assert_eq!(
            ProbeResult::timed_out(Duration::from_secs(5)).message,
            "no answer within 5s"
        );
        assert_eq!(
            ProbeResult::timed_out(Duration::from_micros(1_500_300)).message,
            "no answer within 1.5s"
        );
    }
}
