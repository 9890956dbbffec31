//! Retry delays: exponential with jitter, within a retry window.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Retries stop once the next one would start this long after the first attempt.
    pub window: Duration,
}

impl Backoff {
    /// The delay before retry `n` (1 for the first): `initial × 2^(n-1)` capped at `max`, then
    /// a uniform draw in its upper half (`unit` in [0, 1)), so targets that failed together
    /// are not all retried at the same instant and the delay still grows.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let doubled = self.initial.saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        let d = doubled.min(self.max);
        d.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// The delay before retry `n`, or `None` when it would start past the window
    /// (`elapsed` since the first attempt).
    pub fn next(&self, n: u32, elapsed: Duration, unit: f64) -> Option<Duration> {
        let d = self.delay(n, unit);
        (elapsed.saturating_add(d) <= self.window).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), window: Duration::from_secs(300) }
    }

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let b = b();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        for n in 1..12 {
            for unit in [0.0, 0.3, 0.99] {
                let lo = b.delay(n, 0.0);
                assert!(b.delay(n, unit) >= lo && b.delay(n, unit) <= lo * 2, "n={n}");
            }
            assert!(b.delay(n + 1, 0.0) >= b.delay(n, 0.0), "never shrinks");
        }
        assert_eq!(b.delay(7, 1.0), Duration::from_secs(60), "capped");
        assert_eq!(b.delay(200, 1.0), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn stops_at_the_window() {
        let b = b();
        assert_eq!(b.next(1, Duration::ZERO, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(b.next(9, Duration::from_secs(250), 1.0), None, "250 s + 60 s is past 300 s");
        assert_eq!(b.next(9, Duration::from_secs(240), 1.0), Some(Duration::from_secs(60)));
        assert_eq!(b.next(1, Duration::MAX, 0.0), None);
    }
}
