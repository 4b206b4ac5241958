//! The systemd watchdog: with `WatchdogSec=` set, systemd restarts tend unless it hears `WATCHDOG=1`
//! at least once per interval.
//!
//! A keep-alive must mean "tend works", not "a timer fires": each one is sent only if the supervisor
//! core answered a `status()` request within the interval, so a wedged core stops the keep-alives and
//! systemd restarts tend (`KillMode=process` leaves the services running for the next tend to adopt).
//! Owns the interval arithmetic (pure, tested with explicit instants) and the keep-alive loop; it asks
//! the core nothing but `status()` and touches no service.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::notify::SystemdEnv;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchdogError {
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds; the watchdog keep-alives are off")]
    BadUsec(String),
}

/// The watchdog interval systemd asks for, if the watchdog is meant for this process: `WATCHDOG_USEC`
/// set, and `WATCHDOG_PID` unset or equal to `own_pid` (otherwise the variables were meant for a parent
/// that ran tend, and are none of tend's business).
pub fn interval(inherited: &SystemdEnv, own_pid: u32) -> Result<Option<Duration>, WatchdogError> {
    let Some(usec) = &inherited.watchdog_usec else {
        return Ok(None);
    };
    if let Some(pid) = &inherited.watchdog_pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(WatchdogError::BadUsec(usec.clone())),
    }
}

/// How often a keep-alive is due: half the interval, as sd_watchdog_enabled(3) recommends, so one late
/// tick does not cost tend its life.
pub fn ping_period(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(1))
}

/// How long one `status()` request may take before it counts as unanswered.
pub fn probe_timeout(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(1))
}

/// A keep-alive goes out only if the core answered within the last `interval`.
pub fn should_ping(now: Instant, last_answer: Option<Instant>, interval: Duration) -> bool {
    last_answer.is_some_and(|at| now.saturating_duration_since(at) <= interval)
}

/// Every [`ping_period`]: asks `probe` (the core's `status()`, true when it answered) and calls `ping`
/// (send `WATCHDOG=1`) when [`should_ping`] says so. Ends when `stop` is cancelled.
pub async fn keep_alive<P, F>(
    interval: Duration,
    mut probe: P,
    mut ping: impl FnMut(),
    stop: CancellationToken,
) where
    P: FnMut() -> F,
    F: Future<Output = bool>,
{
    let mut ticks = tokio::time::interval(ping_period(interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_answer: Option<Instant> = None;
    let mut pinging = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let answered = tokio::select! {
            answer = tokio::time::timeout(probe_timeout(interval), probe()) => answer.unwrap_or(false),
            _ = stop.cancelled() => return,
        };
        let now = Instant::now();
        if answered {
            last_answer = Some(now);
        }
        if should_ping(now, last_answer, interval) {
            ping();
            if !pinging {
                tracing::warn!("the supervisor core answers again; watchdog keep-alives resume");
                pinging = true;
            }
        } else if pinging && last_answer.is_some() {
            tracing::error!(
                "the supervisor core has not answered for {}; no more watchdog keep-alives, so systemd \
                 will restart tend (the services keep running)",
                crate::clock::human_ms(interval.as_millis() as i64)
            );
            pinging = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    fn inherited(usec: Option<&str>, pid: Option<&str>) -> SystemdEnv {
        SystemdEnv {
            watchdog_usec: usec.map(String::from),
            watchdog_pid: pid.map(String::from),
            notify_socket: Some(OsString::from("@x")),
            ..SystemdEnv::default()
        }
    }

    #[test]
    fn interval_from_the_environment() {
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<Option<Duration>, WatchdogError>,
        );
        let table: [Row; 7] = [
            (None, None, Ok(None)),
            (Some("30000000"), None, Ok(Some(Duration::from_secs(30)))),
            (
                Some("200000"),
                Some("42"),
                Ok(Some(Duration::from_millis(200))),
            ),
            // Meant for another process: not ours to feed.
            (Some("200000"), Some("41"), Ok(None)),
            (Some("200000"), Some("garbage"), Ok(None)),
            (Some("0"), None, Err(WatchdogError::BadUsec("0".into()))),
            (
                Some("30s"),
                Some("42"),
                Err(WatchdogError::BadUsec("30s".into())),
            ),
        ];
        for (usec, pid, want) in table {
            assert_eq!(
                interval(&inherited(usec, pid), 42),
                want,
                "{usec:?} {pid:?}"
            );
        }
    }

    #[test]
    fn periods() {
        assert_eq!(
            ping_period(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            probe_timeout(Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
        assert_eq!(
            ping_period(Duration::from_micros(1)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn pings_only_while_the_core_answered_within_the_interval() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(200);
        let ms = Duration::from_millis;
        let table = [
            (None, 0, false),
            (Some(0), 0, true),
            (Some(0), 200, true),
            (Some(0), 201, false),
            (Some(100), 250, true),
            (Some(100), 301, false),
        ];
        for (answered_at, now, want) in table {
            let last = answered_at.map(|a| t0 + ms(a));
            assert_eq!(
                should_ping(t0 + ms(now), last, interval),
                want,
                "answered at {answered_at:?}, now {now}"
            );
        }
    }

    /// A probe that answers at once while `healthy`, and never while not (a wedged core).
    fn probe(
        healthy: Arc<AtomicBool>,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
        move || {
            let healthy = healthy.load(Ordering::SeqCst);
            Box::pin(async move {
                if !healthy {
                    std::future::pending::<()>().await;
                }
                true
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_core_stops_the_keep_alives_and_a_recovered_one_resumes_them() {
        let interval = Duration::from_millis(200);
        let healthy = Arc::new(AtomicBool::new(true));
        let pings = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counter = pings.clone();
        let task = tokio::spawn(keep_alive(
            interval,
            probe(healthy.clone()),
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
            stop.clone(),
        ));
        // 1 s at a 100 ms period: a keep-alive at 0, 100, …, 1000 ms (the probe answers instantly).
        tokio::time::sleep(Duration::from_millis(1001)).await;
        let healthy_pings = pings.load(Ordering::SeqCst);
        assert_eq!(healthy_pings, 11);

        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wedged_pings = pings.load(Ordering::SeqCst) - healthy_pings;
        // The last answer is at most one interval old for at most two more ticks; then silence.
        assert!(
            wedged_pings <= 2,
            "{wedged_pings} keep-alives from a wedged core"
        );
        let silent = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pings.load(Ordering::SeqCst), silent, "keep-alives went on");

        healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            pings.load(Ordering::SeqCst) > silent,
            "no keep-alive after recovery"
        );

        stop.cancel();
        task.await.unwrap();
    }
}
