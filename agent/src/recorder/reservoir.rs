//! A bounded sample of a histogram's values for one time bucket, with exact count, sum, min
//! and max. Percentiles come from the sample: exact up to the capacity, then a uniform random
//! sample of everything seen (Vitter's algorithm R).

/// Statistics of one histogram bucket.
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

#[derive(Debug, Clone)]
pub struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    rng: u64,
}

impl Reservoir {
    pub fn new() -> Self {
        Self { values: Vec::new(), seen: 0, count: 0.0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, rng: 0x9E37_79B9_7F4A_7C15 }
    }

    pub fn record(&mut self, value: f64, weight: f64, cap: usize) {
        self.seen += 1;
        self.count += weight;
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if self.values.len() < cap {
            self.values.push(value);
        } else {
            let j = self.next_random() % self.seen;
            if (j as usize) < cap {
                self.values[j as usize] = value;
            }
        }
    }

    /// Folds `other` (a later bucket of the same series) into this one.
    pub fn merge(&mut self, other: Reservoir, cap: usize) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for v in other.values {
            self.seen += 1;
            if self.values.len() < cap {
                self.values.push(v);
            }
        }
    }

    pub fn summary(mut self) -> Summary {
        self.values.sort_unstable_by(f64::total_cmp);
        let p = |q: f64| percentile(&self.values, q);
        Summary { count: self.count, sum: self.sum, min: self.min, max: self.max, p50: p(0.50), p90: p(0.90), p99: p(0.99) }
    }

    /// xorshift64: the reservoir needs cheap, not cryptographic, randomness.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

impl Default for Reservoir {
    fn default() -> Self {
        Self::new()
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_percentiles_below_capacity() {
        let mut r = Reservoir::new();
        for v in (1..=100).rev() {
            r.record(f64::from(v), 1.0, 1000);
        }
        let s = r.summary();
        assert_eq!((s.count, s.sum, s.min, s.max), (100.0, 5050.0, 1.0, 100.0));
        assert_eq!((s.p50, s.p90, s.p99), (50.0, 90.0, 99.0));
    }

    #[test]
    fn bounded_sample_keeps_exact_extremes_and_close_percentiles() {
        let mut r = Reservoir::new();
        for v in 0..100_000 {
            r.record(f64::from(v % 1000), 1.0, 128);
        }
        assert_eq!(r.values.len(), 128);
        let s = r.summary();
        assert_eq!((s.count, s.min, s.max), (100_000.0, 0.0, 999.0));
        assert!((350.0..650.0).contains(&s.p50), "p50 {}", s.p50);
    }

    #[test]
    fn weights_and_merge() {
        let mut a = Reservoir::new();
        a.record(10.0, 10.0, 8);
        let mut b = Reservoir::new();
        b.record(30.0, 1.0, 8);
        a.merge(b, 8);
        let s = a.summary();
        assert_eq!((s.count, s.sum, s.min, s.max, s.p50), (11.0, 130.0, 10.0, 30.0, 10.0));
        assert_eq!(Reservoir::new().summary().p99, 0.0);
    }
}
