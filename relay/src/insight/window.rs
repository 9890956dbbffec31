//! Publish→write latency of the last second, for the live relay page: powers-of-two buckets
//! counted with one relaxed atomic add per pass, taken (and emptied) once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket `i` holds passes under 2^i µs (the last one everything longer, ~36 min and up).
const BUCKETS: usize = 32;

pub struct Window {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Window {
    fn default() -> Self {
        Self { counts: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// Counts taken from one or more windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken([u64; BUCKETS]);

impl Default for Taken {
    fn default() -> Self {
        Self([0; BUCKETS])
    }
}

impl Window {
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // The number of bits of `us`: 0 µs → 0, 1 µs → 1, 2-3 µs → 2, …
        let i = ((u64::BITS - us.leading_zeros()) as usize).min(BUCKETS - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds this window's counts to `into` and empties it.
    pub fn take_into(&self, into: &mut Taken) {
        for (c, t) in self.counts.iter().zip(into.0.iter_mut()) {
            *t = t.saturating_add(c.swap(0, Ordering::Relaxed));
        }
    }
}

impl Taken {
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), in milliseconds; `None`
    /// when nothing was counted.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The rank of the quantile, at least the first.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.0.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return Some((1u64 << i) as f64 / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_bucket_and_emptied_when_taken() {
        let w = Window::default();
        for _ in 0..98 {
            w.observe(Duration::from_micros(100)); // under 128 µs
        }
        w.observe(Duration::from_millis(5)); // under 8.192 ms
        w.observe(Duration::from_secs(100_000)); // the last bucket
        let mut t = Taken::default();
        w.take_into(&mut t);
        assert_eq!(t.count(), 100);
        assert_eq!(t.quantile_ms(0.5), Some(0.128));
        assert_eq!(t.quantile_ms(0.99), Some(8.192));
        let mut again = Taken::default();
        w.take_into(&mut again);
        assert_eq!(again.quantile_ms(0.5), None, "taken means emptied");
    }
}
