//! Wall-clock time in unix milliseconds, swappable so time-driven logic can run under
//! `tokio::time::pause` in tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that starts at `base_ms` and advances with tokio's (pausable) time.
    Virtual { base_ms: u64, start: Instant },
}

impl Clock {
    /// A virtual clock starting now at `base_ms`.
    pub fn virtual_at(base_ms: u64) -> Self {
        Self::Virtual { base_ms, start: Instant::now() }
    }

    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            Self::Virtual { base_ms, start } => base_ms + start.elapsed().as_millis() as u64,
        }
    }

    /// The tokio instant at which this clock reads `unix_ms` (now, if that is in the past; at
    /// most a year ahead, so an absurd deadline from the wire cannot overflow).
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
        Instant::now() + Duration::from_millis(unix_ms.saturating_sub(self.now_ms()).min(YEAR_MS))
    }

    /// Sleeps until the clock reads `unix_ms`.
    pub async fn sleep_until_ms(&self, unix_ms: u64) {
        tokio::time::sleep_until(self.instant_at(unix_ms)).await;
    }
}

/// The first whole second strictly after `ms`, in milliseconds.
pub fn next_second(ms: u64) -> u64 {
    (ms / 1000 + 1) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_second_boundaries() {
        assert_eq!(next_second(0), 1000);
        assert_eq!(next_second(999), 1000);
        assert_eq!(next_second(1000), 2000);
        assert_eq!(next_second(1_700_000_000_123), 1_700_000_001_000);
    }

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_follows_paused_time() {
        let clock = Clock::virtual_at(5_500);
        clock.sleep_until_ms(7_000).await;
        assert_eq!(clock.now_ms(), 7_000);
    }
}
