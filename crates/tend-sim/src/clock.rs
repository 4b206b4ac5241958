//! Model time: how `--time-scale` turns the services' nominal seconds into real sleeps.
//!
//! Owns the only conversion between the two clocks. Nominal ("model") seconds are what the logs print
//! and what the flood model reasons in; a real sleep lasts `nominal × scale`. The model clock is the
//! wall clock divided by the scale (`model_ms = epoch_ms / scale`), so every process of one account,
//! started with the same scale, agrees on model time without talking to each other. All sleeps go through
//! `tokio::time`. This module must not know about floods or logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Converts between nominal seconds and real time for one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelClock {
    scale: f64,
}

impl ModelClock {
    /// `scale` must be finite and > 0 (validated with the options).
    pub fn new(scale: f64) -> Self {
        ModelClock { scale }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Model time now, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        (wall_ns() as f64 / 1e6 / self.scale).round() as i64
    }

    /// The real duration of `nominal_s` model seconds (negative and NaN count as zero).
    pub fn real(&self, nominal_s: f64) -> Duration {
        let secs = nominal_s * self.scale;
        if secs.is_finite() && secs > 0.0 {
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }

    /// Sleeps for `nominal_s` model seconds.
    pub async fn sleep(&self, nominal_s: f64) {
        let d = self.real(nominal_s);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// The model time of a wall-clock instant (milliseconds since the epoch).
    pub fn model_ms_at(&self, wall_ms: i64) -> i64 {
        (wall_ms as f64 / self.scale).round() as i64
    }

    /// Model seconds elapsed since `start`.
    pub fn nominal_since(&self, start: Instant) -> f64 {
        start.elapsed().as_secs_f64() / self.scale
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    (wall_ns() / 1_000_000) as i64
}

/// Wall-clock seconds since the epoch, as Python's `time.time()`.
pub fn wall_secs() -> f64 {
    wall_ns() as f64 / 1e9
}

/// Wall-clock milliseconds of this process's birth (the fork that made it), from the kernel's record
/// (`/proc/self/stat` start time against `/proc/uptime`, both 10 ms ticks), never earlier than the
/// birth and at most two ticks later. `None` off Linux.
///
/// Why: at `--time-scale 0.001` the exec and start-up latency of a loaded machine (easily 100 ms) would
/// be 100 model seconds, which no real service takes; dating the start-up from birth keeps the machine's
/// load out of the model, so the flood model judges the supervisor's spacing, not the scheduler.
pub fn birth_wall_ms() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let now = wall_ms();
    // Fields after the `(comm)`, which may hold spaces: state is field 3, starttime field 22.
    let after_comm = stat.rsplit_once(')')?.1;
    let ticks: f64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let up_s: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    if hz <= 0 {
        return None;
    }
    // Both figures are truncated to a tick, so the age is known within one tick either way: take the
    // youngest age it can be, so a birth is never dated before it happened (at most a tick after).
    let tick_s = 1.0 / hz as f64;
    let age_ms = ((up_s - ticks * tick_s - tick_s) * 1000.0).max(0.0);
    Some(now - age_ms.round() as i64)
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Paces a sequence of steps on an absolute schedule, so that tokio's millisecond timer does not
/// stretch a sweep of 40 × 50 µs pages (at `--time-scale 0.001`) into 40 ms. After a long stall
/// (a flood sleep) the schedule restarts from now instead of bursting to catch up.
#[derive(Debug)]
pub struct Pacer {
    step: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(step: Duration) -> Self {
        Pacer {
            step,
            next: Instant::now(),
        }
    }

    /// Waits until the next step is due.
    pub async fn tick(&mut self) {
        self.next += self.step;
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        } else if now - self.next > self.step.max(Duration::from_millis(5)) {
            self.next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_durations_scale_and_never_go_negative() {
        let c = ModelClock::new(0.001);
        assert_eq!(c.real(27.0), Duration::from_millis(27));
        assert_eq!(c.real(-1.0), Duration::ZERO);
        assert_eq!(c.real(f64::NAN), Duration::ZERO);
        assert_eq!(ModelClock::new(1.0).real(f64::INFINITY), Duration::ZERO);
    }

    #[test]
    fn model_clock_runs_faster_by_the_scale() {
        let slow = ModelClock::new(1.0).now_ms();
        let fast = ModelClock::new(0.001).now_ms();
        let ratio = fast as f64 / slow as f64;
        assert!((ratio - 1000.0).abs() < 1.0, "ratio {ratio}");
    }

    #[test]
    fn birth_is_in_the_recent_past() {
        let born = birth_wall_ms().expect("Linux /proc");
        let now = wall_ms();
        // The test binary started at most a few minutes ago (and a 10 ms tick may round it ahead).
        assert!(born <= now + 20, "born {born}, now {now}");
        assert!(now - born < 30 * 60 * 1000, "born {born}, now {now}");
        let c = ModelClock::new(0.001);
        assert_eq!(c.model_ms_at(1_500), 1_500_000);
    }

    // On tokio's paused clock, so a loaded machine cannot stretch it: the timer has millisecond
    // resolution, so a relative sleep per step would take 40 ms of tokio time here.
    #[tokio::test(start_paused = true)]
    async fn pacer_keeps_an_absolute_schedule() {
        let mut p = Pacer::new(Duration::from_micros(100));
        let start = Instant::now();
        for _ in 0..40 {
            p.tick().await;
        }
        // 40 × 100 µs = 4 ms of schedule, rounded up to the timer's next millisecond at most.
        assert!(
            start.elapsed() <= Duration::from_millis(5),
            "{:?}",
            start.elapsed()
        );
    }
}
