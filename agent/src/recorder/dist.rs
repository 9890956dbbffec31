//! The distribution of a histogram's values over some time: a DDSketch (mergeable, with a
//! bounded relative error on every percentile) next to the exact count, sum, min and max.

use std::sync::LazyLock;

use sketches_ddsketch::{Config, DDSketch};

/// Every percentile reported is within this fraction of the true value at its rank.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Bins per sketch: 1,024 bins at 1 % cover values across eight orders of magnitude; below
/// that the smallest values share the lowest bin. Bounds a sketch to 8 KiB.
const MAX_BINS: u32 = 1024;
/// Values closer to zero than this count as zero.
const MIN_VALUE: f64 = 1e-9;

static CONFIG: LazyLock<Config> = LazyLock::new(|| Config::new(RELATIVE_ACCURACY, MAX_BINS, MIN_VALUE));

/// Statistics of a distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Observations, weighted by 1/sample rate for StatsD input.
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Clone)]
pub struct Dist {
    sketch: DDSketch,
    /// Weighted: a value sent at sample rate 0.1 counts 10 times.
    count: f64,
    sum: f64,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dist").field("count", &self.count).field("sum", &self.sum).finish_non_exhaustive()
    }
}

/// Equal when they report the same statistics (what tests compare).
impl PartialEq for Dist {
    fn eq(&self, other: &Self) -> bool {
        self.summary() == other.summary()
    }
}

impl Default for Dist {
    fn default() -> Self {
        Self::new()
    }
}

impl Dist {
    pub fn new() -> Self {
        Self { sketch: DDSketch::new(*CONFIG), count: 0.0, sum: 0.0 }
    }

    /// Records `value` standing for `weight` observations. The sketch counts whole
    /// observations, so a fractional weight is rounded (at least one); count and sum stay exact.
    pub fn record(&mut self, value: f64, weight: f64) {
        self.count += weight;
        self.sum += value * weight;
        self.sketch.add_with_count(value, weight.round().max(1.0) as u64);
    }

    /// Folds `other` in; the result is what recording both streams into one would give.
    pub fn merge(&mut self, other: &Dist) {
        self.count += other.count;
        self.sum += other.sum;
        // Both sketches share CONFIG, the only way a merge can fail.
        let _ = self.sketch.merge(&other.sketch);
    }

    pub fn summary(&self) -> Summary {
        let (min, max) = (self.sketch.min().unwrap_or(0.0), self.sketch.max().unwrap_or(0.0));
        // A sketch answers within its accuracy, which may land just outside the exact extremes.
        let p = |q: f64| self.sketch.quantile(q).ok().flatten().map_or(0.0, |v| v.clamp(min, max));
        Summary { count: self.count, sum: self.sum, min, max, p50: p(0.50), p90: p(0.90), p99: p(0.99) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(got: f64, want: f64) -> bool {
        (got - want).abs() <= want.abs() * RELATIVE_ACCURACY
    }

    #[test]
    fn percentiles_of_known_values_are_within_the_accuracy() {
        let mut d = Dist::new();
        // 1,000 known values in a scrambled order: 1 ms to 1,000 ms.
        for i in 0..1000u64 {
            d.record(((i * 379) % 1000 + 1) as f64, 1.0);
        }
        let s = d.summary();
        assert_eq!((s.count, s.sum, s.min, s.max), (1000.0, 500_500.0, 1.0, 1000.0));
        assert!(within(s.p50, 500.0) && within(s.p90, 900.0) && within(s.p99, 990.0), "{s:?}");
    }

    #[test]
    fn wide_and_skewed_distributions() {
        let mut d = Dist::new();
        // 990 fast requests at 0.2 ms and 10 slow ones from 5 s to 50 s.
        for _ in 0..990 {
            d.record(0.2, 1.0);
        }
        for i in 1..=10 {
            d.record(f64::from(i) * 5000.0, 1.0);
        }
        let s = d.summary();
        assert!(within(s.p50, 0.2) && within(s.p90, 0.2), "{s:?}");
        assert!(within(s.p99, 0.2) || within(s.p99, 5000.0), "{s:?}");
        assert_eq!(s.max, 50_000.0);
    }

    #[test]
    fn merged_halves_equal_the_whole_and_weights_count() {
        let (mut a, mut b, mut whole) = (Dist::new(), Dist::new(), Dist::new());
        for v in 1..=500 {
            a.record(f64::from(v), 1.0);
            whole.record(f64::from(v), 1.0);
        }
        for v in 501..=1000 {
            b.record(f64::from(v), 1.0);
            whole.record(f64::from(v), 1.0);
        }
        a.merge(&b);
        assert_eq!(a.summary(), whole.summary());
        let mut w = Dist::new();
        w.record(10.0, 10.0);
        w.record(-4.0, 1.0);
        let s = w.summary();
        assert_eq!((s.count, s.sum, s.min, s.max), (11.0, 96.0, -4.0, 10.0));
        assert!(within(s.p50, 10.0), "{s:?}");
        assert_eq!(Dist::new().summary().p99, 0.0);
    }
}
