//! The per-second sampler: on each second boundary it collects the host metrics and the custom
//! metrics into a tick and records it in the ring. It always runs, session or not; what leaves
//! the host is the core's decision.
//!
//! A tick holds only what its sample can carry: host metrics, the top list and the agent's own
//! metrics first, then custom metrics in the room left under the size limit. So the ring's
//! memory is bounded by the sample size, however many custom series there are.
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
use crate::encode::SAMPLE_BUDGET;
use crate::own::PerSecond;
use crate::size::tick_len;
use crate::tick::Tick;
use crate::Shutdown;

pub struct Sampler {
    pub collectors: Collectors,
    pub custom: Custom,
    pub own: PerSecond,
    pub ring: SharedRing,
    /// Announces the newest tick's sequence number.
    pub latest: watch::Sender<u64>,
    seq: u64,
    /// The tick being filled; its buffers come from the tick the ring evicted last.
    spare: Tick,
}

impl Sampler {
    pub fn new(collectors: Collectors, custom: Custom, own: PerSecond, ring: SharedRing, latest: watch::Sender<u64>) -> Self {
        Self { collectors, custom, own, ring, latest, seq: 0, spare: Tick::default() }
    }

    /// Samples the second that ends at `ts` (unix ms, a whole second).
    pub fn tick(&mut self, ts: u64) {
        self.seq += 1;
        let mut t = std::mem::take(&mut self.spare);
        t.clear();
        t.ts = ts;
        t.seq = self.seq;
        self.collectors.collect(&mut t);
        self.own.push(&mut t);
        let room = SAMPLE_BUDGET.saturating_sub(tick_len(&t) + self.own.omitted_room());
        let omitted = self.custom.fold_into(&mut t, room);
        self.own.push_omitted(&mut t, omitted);
        t.shrink();
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
    use crate::encode::{sample_data, wire_len};
    use crate::own::Sources;
    use crate::ring::Ring;
    use crate::Recorder;

    fn sampler(rec: &Recorder, ring: &SharedRing) -> (Sampler, watch::Receiver<u64>) {
        let (tx, rx) = watch::channel(0);
        let own = PerSecond::new(Sources { recorder: rec.clone(), statsd: None });
        (Sampler::new(Collectors::new(), Custom::new(rec.clone(), MinuteTotals::default()), own, ring.clone(), tx), rx)
    }

    #[test]
    fn ticks_fill_the_ring_with_host_and_custom_metrics() {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(3)));
        let rec = Recorder::new();
        let (mut s, rx) = sampler(&rec, &ring);
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
        assert_eq!(latest.get("agent.custom_omitted"), Some(0.0));
    }

    #[test]
    fn custom_metrics_get_only_the_room_the_host_leaves() {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(3)));
        let rec = Recorder::new();
        let (mut s, _rx) = sampler(&rec, &ring);
        let base = 4_000_000_000_000;
        s.tick(base);
        for i in 0..1000 {
            rec.counter(&format!("a.{i:04}"), &[], 1.0);
            rec.histogram(&format!("a.t{i:04}"), &["env:prod"], 12.5);
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let now = crate::clock::Clock::System.now_ms();
        s.tick(crate::clock::next_second(now));
        let ring = lock(&ring);
        let t = ring.latest().unwrap();
        for name in ["cpu.user_pct", "mem.used_bytes", "system.load1", "procs.total"] {
            assert!(t.get(name).is_some(), "{name} missing");
        }
        assert!(!t.top.is_empty(), "the top list stays");
        let custom = t.metrics.iter().filter(|(k, _)| k.starts_with("app.")).count();
        let omitted = t.get("agent.custom_omitted").unwrap();
        assert!(custom > 20 && omitted > 500.0, "{custom} custom metrics, {omitted} series omitted");
        assert_eq!(t.get("app.a.0000.count_ps"), Some(1.0), "the oldest series first");
        let data = sample_data(t);
        assert!(wire_len(&data) <= SAMPLE_BUDGET && wire_len(&data) > SAMPLE_BUDGET - 200, "{} bytes", wire_len(&data));
        let sample: sonde_protocol::sonde::Sample = serde_json::from_str(&data).unwrap();
        assert_eq!(sample.metrics.len(), t.metrics.len(), "nothing left to trim when encoding");
    }
}
