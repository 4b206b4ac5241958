//! Probes: one measurement of one service, returned as a [`ProbeResult`] value.
//!
//! Each kind lives in its own file: [`http`] (status and body), [`json`] (a value by JSON pointer, and the
//! `last_errors` event feed), [`tcp`] (the port accepts), [`procstat`] (RSS and CPU of a process tree from
//! /proc, judged by [`process::probe`]), and [`exec`] (Nagios-style plugins). Alert delivery is
//! [`crate::alerts`].
//!
//! Every probe is bounded by its own timeout and turns every failure into a result (a timeout is
//! `Critical` "no answer within 5s"); none panics, none keeps global state, none decides what to do about
//! a result. Scheduling, configuration and history belong to the caller.

pub mod exec;
pub mod http;
pub mod json;
pub mod procstat;
pub mod tcp;

/// The check vocabulary lives in a leaf module (the core reads it too); this is its old address.
pub use crate::check_result::{ProbeResult, Status};
pub(crate) use crate::error_chain::{io_error_kind, root_cause};
/// The judging half of the `process` check kind lives next to the /proc reader it judges.
pub use procstat as process;

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
