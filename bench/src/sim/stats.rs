//! What the simulated fleet did, counted without locks: totals, and per second of the run
//! the connection attempts, subscriptions and failures (the reconnect-rate curve).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Counters of one kind of event the agents send.
#[derive(Default)]
pub struct Sent {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
}

impl Sent {
    pub fn add(&self, bytes: usize) {
        self.events.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.events.load(Relaxed), self.bytes.load(Relaxed))
    }
}

/// One second of the timeline.
#[derive(Default)]
pub struct Second {
    pub attempts: AtomicU32,
    pub subscribed: AtomicU32,
    pub failed: AtomicU32,
}

pub struct Stats {
    pub started: Instant,
    /// Agents subscribed to their host channel right now.
    pub connected: AtomicI64,
    pub attempts: AtomicU64,
    pub subscriptions: AtomicU64,
    pub failures: AtomicU64,
    pub first_error: FirstError,
    pub snapshots: Sent,
    pub samples: Sent,
    pub backfill: Sent,
    pub sessions: AtomicU64,
    /// Seconds since `started`; bounded: later seconds are not recorded.
    timeline: Vec<Second>,
}

impl Stats {
    pub fn new(seconds: usize) -> Self {
        Self {
            started: Instant::now(),
            connected: AtomicI64::new(0),
            attempts: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_error: FirstError::default(),
            snapshots: Sent::default(),
            samples: Sent::default(),
            backfill: Sent::default(),
            sessions: AtomicU64::new(0),
            timeline: (0..seconds).map(|_| Second::default()).collect(),
        }
    }

    fn second(&self) -> Option<&Second> {
        self.timeline.get(self.started.elapsed().as_secs() as usize)
    }

    pub fn attempt(&self) {
        self.attempts.fetch_add(1, Relaxed);
        if let Some(s) = self.second() {
            s.attempts.fetch_add(1, Relaxed);
        }
    }

    pub fn subscribed(&self) {
        self.subscriptions.fetch_add(1, Relaxed);
        self.connected.fetch_add(1, Relaxed);
        if let Some(s) = self.second() {
            s.subscribed.fetch_add(1, Relaxed);
        }
    }

    pub fn failed(&self, why: &str) {
        self.failures.fetch_add(1, Relaxed);
        self.first_error.set(why);
        if let Some(s) = self.second() {
            s.failed.fetch_add(1, Relaxed);
        }
    }

    /// (attempts, subscriptions, failures) in each second from `from` for `len` seconds.
    pub fn curve(&self, from: Duration, len: usize) -> Vec<(u32, u32, u32)> {
        let first = from.as_secs() as usize;
        self.timeline.iter().skip(first).take(len).map(|s| (s.attempts.load(Relaxed), s.subscribed.load(Relaxed), s.failed.load(Relaxed))).collect()
    }
}

/// The first error, kept once (for the report).
#[derive(Default)]
pub struct FirstError(OnceLock<String>);

impl FirstError {
    pub fn set(&self, why: &str) {
        let _ = self.0.set(why.chars().take(200).collect());
    }

    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_curve_counts_per_second_and_stays_bounded() {
        let s = Stats::new(3);
        s.attempt();
        s.subscribed();
        tokio::time::advance(Duration::from_millis(1500)).await;
        s.attempt();
        s.failed("refused");
        tokio::time::advance(Duration::from_secs(5)).await;
        s.attempt();
        assert_eq!(s.curve(Duration::ZERO, 10), vec![(1, 1, 0), (1, 0, 1), (0, 0, 0)]);
        assert_eq!(s.attempts.load(Relaxed), 3);
        assert_eq!(s.first_error.get(), Some("refused"));
    }
}
