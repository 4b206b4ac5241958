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

/// `1h2m3s`-style rendering of a span, for status output ("in 9m58s").
pub fn human_ms(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let days = secs / 86_400;
    secs %= 86_400;
    let hours = secs / 3600;
    secs %= 3600;
    let mins = secs / 60;
    secs %= 60;
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if mins > 0 && days == 0 {
        out.push_str(&format!("{mins}m"));
    }
    if (secs > 0 || out.is_empty()) && days == 0 && hours == 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_rendering() {
        assert_eq!(human_ms(0), "0ms");
        assert_eq!(human_ms(999), "999ms");
        assert_eq!(human_ms(1_000), "1s");
        assert_eq!(human_ms(598_000), "9m58s");
        assert_eq!(human_ms(3_600_000), "1h");
        assert_eq!(human_ms(3_720_000), "1h2m");
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
