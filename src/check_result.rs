//! The check vocabulary: how a probe judged a service ([`Status`]) and one probe's outcome
//! ([`ProbeResult`]).
//!
//! A leaf: the core, the checks, the web page and the state files all speak it, so it imports nothing of
//! tend but the duration formatter (`clock`). It must not run a probe or decide what a result means.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
