//! Session start as a viewer sees it: from its subscription to a host channel to the first
//! live sample of that host forwarded to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::metrics::histogram::Histogram;
use sonde_protocol::sonde::host_of;
use sonde_protocol::{ChannelName, SocketId};

/// Viewers waited for at once at most; past it a new one is not timed (nothing else changes).
const MAX_WAITING: usize = 10_000;

/// Viewers of one host and when each subscribed.
type Waiting = HashMap<Arc<str>, Vec<(SocketId, Instant)>>;

/// The viewers of this node still waiting for their first sample, by host.
pub struct FirstSamples {
    waiting: Mutex<Waiting>,
    /// How many wait, read without the lock on every sample (almost always 0).
    count: AtomicUsize,
    histogram: Histogram,
}

impl FirstSamples {
    pub fn new(histogram: Histogram) -> Self {
        Self { waiting: Mutex::default(), count: AtomicUsize::new(0), histogram }
    }

    pub fn viewer_joined(&self, host: &str, socket: SocketId, at: Instant) {
        if self.count.load(Ordering::Relaxed) >= MAX_WAITING {
            return;
        }
        let mut w = self.waiting.lock();
        w.entry(host.into()).or_default().push((socket, at));
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A viewer that leaves before its first sample is not timed.
    pub fn viewer_left(&self, host: &str, socket: SocketId) {
        let mut w = self.waiting.lock();
        let Some(list) = w.get_mut(host) else { return };
        let before = list.len();
        list.retain(|(s, _)| *s != socket);
        self.count.fetch_sub(before - list.len(), Ordering::Relaxed);
        if list.is_empty() {
            w.remove(host);
        }
    }

    /// A sample of `channel` is being forwarded to its subscribers here.
    pub fn sample_seen(&self, channel: &ChannelName, now: Instant) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(host) = host_of(channel.as_str()) else { return };
        let Some(list) = self.waiting.lock().remove(host) else { return };
        self.count.fetch_sub(list.len(), Ordering::Relaxed);
        for (_, joined) in list {
            self.histogram.observe(now.saturating_duration_since(joined).as_secs_f64());
        }
    }

    pub fn waiting(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_each_waiting_viewer_once() {
        let h = Histogram::new([0.5, 1.5, 3.0]);
        let f = FirstSamples::new(h.clone());
        let t0 = Instant::now();
        let ch = ChannelName::parse("private-sonde-host.web-1").unwrap();
        f.viewer_joined("web-1", SocketId::new(1, 1), t0);
        f.viewer_joined("web-1", SocketId::new(1, 2), t0);
        f.viewer_joined("db-1", SocketId::new(1, 3), t0);
        f.viewer_left("web-1", SocketId::new(1, 2));
        assert_eq!(f.waiting(), 2);
        f.sample_seen(&ch, t0 + Duration::from_secs(1));
        f.sample_seen(&ch, t0 + Duration::from_secs(2));
        assert_eq!(f.waiting(), 1, "db-1 still waits");
        let mut out = String::new();
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("s", "s", h);
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("s_count 1\n"), "one viewer timed once: {out}");
        assert!(out.contains("s_bucket{le=\"1.5\"} 1\n") && out.contains("s_bucket{le=\"0.5\"} 0\n"), "{out}");
    }
}
