//! The per-second sampler: on each second boundary it collects the host metrics and the custom
//! metrics into a tick and records it in the ring. It always runs, session or not; what leaves
//! the host is the core's decision.
//!
//! It runs on its own thread: reading /proc and statvfs are blocking calls, and keeping them off
//! the async runtime means a slow filesystem can never delay the relay connection.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{next_second, Clock};
use crate::collect::Collectors;
use crate::core::{lock, SharedRing};
use crate::custom::Custom;
use crate::tick::Tick;
use crate::Shutdown;

pub struct Sampler {
    pub collectors: Collectors,
    pub custom: Custom,
    pub ring: SharedRing,
    /// Announces the newest tick's sequence number.
    pub latest: watch::Sender<u64>,
    seq: u64,
    /// The tick being filled; its buffers come from the tick the ring evicted last.
    spare: Tick,
}

impl Sampler {
    pub fn new(collectors: Collectors, custom: Custom, ring: SharedRing, latest: watch::Sender<u64>) -> Self {
        Self { collectors, custom, ring, latest, seq: 0, spare: Tick::default() }
    }

    /// Samples the second that ends at `ts` (unix ms, a whole second).
    pub fn tick(&mut self, ts: u64) {
        self.seq += 1;
        let mut t = std::mem::take(&mut self.spare);
        t.clear();
        t.ts = ts;
        t.seq = self.seq;
        self.collectors.collect(&mut t);
        self.custom.fold_into(&mut t);
        self.spare = lock(&self.ring).record(t);
        self.latest.send_replace(self.seq);
    }

    /// Runs on a thread of its own until shutdown (noticed within a second).
    pub fn spawn(mut self, shutdown: Shutdown) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("sonde-sampler".into()).spawn(move || {
            let clock = Clock::System;
            loop {
                let now = clock.now_ms();
                let next = next_second(now);
                std::thread::sleep(Duration::from_millis(next - now));
                if shutdown.is_fired() {
                    return;
                }
                self.tick(next);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::custom::MinuteTotals;
    use crate::ring::Ring;
    use crate::Recorder;

    #[test]
    fn ticks_fill_the_ring_with_host_and_custom_metrics() {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(3)));
        let (tx, rx) = watch::channel(0);
        let rec = Recorder::new();
        let mut s = Sampler::new(Collectors::new(), Custom::new(rec.clone(), MinuteTotals::default()), ring.clone(), tx);
        for i in 1..=5u64 {
            rec.counter("orders", &[], 2.0);
            s.tick(4_000_000_000_000 + i * 1000);
        }
        assert_eq!(*rx.borrow(), 5);
        let ring = lock(&ring);
        let seqs: Vec<u64> = ring.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let latest = ring.latest().unwrap();
        assert_eq!(latest.ts, 4_000_000_005_000);
        assert!(latest.get("mem.total_bytes").is_some());
        assert!(latest.get("cpu.user_pct").is_some(), "rates appear from the second tick on");
        assert_eq!(latest.get("app.orders.count_ps"), Some(2.0));
    }
}
