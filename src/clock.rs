//! Wall-clock milliseconds derived from tokio's clock.
//!
//! Persisted times (start history, recovery stages) must be wall-clock so they survive a restart of tend,
//! while every wait must go through `tokio::time` so tests can pause and advance it. A [`Clock`] anchors
//! tokio's monotonic `Instant` to the wall clock once; after that, wall time moves only with tokio time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_ms: Millis,
}

impl Clock {
    /// Anchors tokio's clock to the system clock now.
    pub fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        Clock {
            base_instant: Instant::now(),
            base_ms,
        }
    }

    /// Anchors at an explicit wall time (tests).
    pub fn starting_at(base_ms: Millis) -> Self {
        Clock {
            base_instant: Instant::now(),
            base_ms,
        }
    }

    pub fn now_ms(&self) -> Millis {
        self.base_ms + self.base_instant.elapsed().as_millis() as Millis
    }

    /// The tokio instant at which the wall clock will read `ms` (now, if that is in the past).
    pub fn instant_at(&self, ms: Millis) -> Instant {
        let now_ms = self.now_ms();
        let now = Instant::now();
        if ms <= now_ms {
            now
        } else {
            now + Duration::from_millis((ms - now_ms) as u64)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps until `deadline`, or forever when there is none (for one arm of a `select!`).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock milliseconds as `2026-11-28 19:27:32 UTC`.
pub fn format_ms(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// tend's one duration formatter: a span in the syntax the config's durations are written in
/// (`config::parse_duration` reads it back: "1h30m", "1.5s", "250ms", "0s"), rounded down to whole
/// milliseconds. Used for messages, probe results and status output, so what tend prints can be pasted
/// into the file.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    match (millis / 1_000, millis % 1_000) {
        (0, 0) => {}
        (0, ms) => out.push_str(&format!("{ms}ms")),
        (s, 0) => out.push_str(&format!("{s}s")),
        (s, ms) => {
            let fraction = format!("{ms:03}");
            out.push_str(&format!("{s}.{}s", fraction.trim_end_matches('0')));
        }
    }
    out
}

/// A span of wall milliseconds for status output ("in 9m58s"): [`format_duration`] to the whole second
/// from one second up (a countdown's milliseconds are noise); a negative span is 0.
pub fn human_ms(ms: Millis) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let ms = if ms >= 1000 { ms - ms % 1000 } else { ms };
    format_duration(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_durations_are_exact_to_the_millisecond() {
        let ms = Duration::from_millis;
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(250_900)), "250ms");
        assert_eq!(format_duration(ms(1_500)), "1.5s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(86_400_000 + 5_000)), "1d5s");
    }

    #[test]
    fn human_rendering() {
        assert_eq!(human_ms(-5), "0s");
        assert_eq!(human_ms(0), "0s");
        assert_eq!(human_ms(999), "999ms");
        assert_eq!(human_ms(1_000), "1s");
        assert_eq!(human_ms(1_500), "1s");
        assert_eq!(human_ms(598_123), "9m58s");
        assert_eq!(human_ms(3_600_000), "1h");
        assert_eq!(human_ms(3_723_000), "1h2m3s");
        assert_eq!(human_ms(90_000_000), "1d1h");
    }

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_tokio_time() {
        let clock = Clock::starting_at(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(clock.now_ms(), 1_600_000);
        let at = clock.instant_at(1_601_000);
        assert_eq!(at - Instant::now(), Duration::from_secs(1));
    }
}
