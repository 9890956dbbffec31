//! Delivery counts and latency histograms, shared by thousands of receiving tasks.
//!
//! Tasks are spread over shards (a task keeps its shard), so the worker threads rarely meet
//! on one lock; a snapshot merges the shards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies above a minute are clamped: such a message is late for any purpose.
const MAX_NS: u64 = 60_000_000_000;
const SHARDS: usize = 16;

/// Nanoseconds since the Unix epoch: publishers and receivers compare this clock, and they
/// run on one machine.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

struct Shard {
    hist: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
}

/// Counts bench payloads and their end-to-end latency. Sequence numbers below `first_seq`
/// belong to an earlier step of the run and are ignored.
pub struct Recorder {
    shards: Vec<Shard>,
    first_seq: AtomicU64,
    errors: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        let shards = (0..SHARDS).map(|_| Shard { hist: Mutex::new(new_histogram()), delivered: AtomicU64::new(0) }).collect();
        Self { shards, first_seq: AtomicU64::new(0), errors: AtomicU64::new(0) }
    }
}

impl Recorder {
    pub fn record(&self, task: usize, sent_at_ns: u64, seq: u64) {
        if seq == 0 || seq < self.first_seq.load(Ordering::Relaxed) {
            return;
        }
        let latency = now_ns().saturating_sub(sent_at_ns).clamp(1, MAX_NS);
        let shard = &self.shards[task % SHARDS];
        shard.delivered.fetch_add(1, Ordering::Relaxed);
        shard.hist.lock().expect("recorder lock").saturating_record(latency);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> u64 {
        self.shards.iter().map(|s| s.delivered.load(Ordering::Relaxed)).sum()
    }

    /// Starts a new step: clears counts and ignores sequence numbers below `first_seq`.
    pub fn reset(&self, first_seq: u64) {
        self.first_seq.store(first_seq, Ordering::Relaxed);
        for s in &self.shards {
            s.hist.lock().expect("recorder lock").reset();
            s.delivered.store(0, Ordering::Relaxed);
        }
    }

    pub fn latency(&self) -> Latency {
        let mut all = new_histogram();
        for s in &self.shards {
            all.add(&*s.hist.lock().expect("recorder lock")).expect("same bounds");
        }
        Latency::of(&all)
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_current_step() {
        let r = Recorder::default();
        let now = now_ns();
        for task in 0..100 {
            r.record(task, now - 2_000_000, 5);
        }
        assert_eq!(r.delivered(), 100);
        let l = r.latency();
        assert_eq!(l.count, 100);
        assert!(l.p50_ms >= 2.0 && l.p50_ms < 50.0, "{l:?}");
        r.reset(10);
        r.record(0, now, 9);
        assert_eq!(r.delivered(), 0);
        r.record(0, now, 10);
        assert_eq!(r.delivered(), 1);
        // A clock that went backwards still counts, as 1 ns.
        r.record(1, u64::MAX, 11);
        assert_eq!(r.latency().count, 2);
    }
}
