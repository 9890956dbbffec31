//! The flight recorder: full detail of the rare slow or failed event, in bounded rings, so
//! "why was that one slow?" has an answer without logging everything.
//!
//! The fast path pays one relaxed load and a comparison per pass; only an event over its
//! threshold takes a lock (its kind's ring) and allocates.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use crate::config::recorder::{RecorderConfig, MAX_SIZE};

/// What happened, with everything known about it at the time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A publish whose pass over its subscribers ended late.
    SlowPublish {
        channel: String,
        /// `direct` (the publisher's own pass) or `lanes` (one lane's share).
        pass: &'static str,
        subscribers: usize,
        bytes: usize,
        /// Frames going round together (a lane behind coalesces).
        frames: usize,
        lanes: usize,
        /// Deliveries waiting for any lane when it ended.
        lane_backlog: usize,
        /// From accepted to the end of the pass.
        write_us: u64,
    },
    SlowHttp {
        endpoint: &'static str,
        status: u16,
        duration_us: u64,
    },
    /// A connection closed (or reset) because its queue overflowed.
    SlowConsumer {
        socket: String,
        queued_bytes: usize,
        unread_ms: u64,
    },
    /// A connection's task panicked (where it happened is in the log, where the hook put it).
    ConnectionPanic {
        message: String,
    },
    SlowBus {
        from: String,
        message: &'static str,
        latency_us: u64,
    },
    WebhookFailed {
        target: String,
        outcome: &'static str,
        events: usize,
        attempt: u32,
    },
    SlowHandshake {
        tls: bool,
        peer: String,
        duration_us: u64,
    },
}

/// Kinds, each with a ring of its own.
const KINDS: usize = 7;

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SlowPublish { .. } => "slow_publish",
            Self::SlowHttp { .. } => "slow_http",
            Self::SlowConsumer { .. } => "slow_consumer",
            Self::ConnectionPanic { .. } => "connection_panic",
            Self::SlowBus { .. } => "slow_bus",
            Self::WebhookFailed { .. } => "webhook_failed",
            Self::SlowHandshake { .. } => "slow_handshake",
        }
    }

    fn slot(&self) -> usize {
        match self {
            Self::SlowPublish { .. } => 0,
            Self::SlowHttp { .. } => 1,
            Self::SlowConsumer { .. } => 2,
            Self::ConnectionPanic { .. } => 3,
            Self::SlowBus { .. } => 4,
            Self::WebhookFailed { .. } => 5,
            Self::SlowHandshake { .. } => 6,
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Order of recording, across kinds.
    pub seq: u64,
    /// Wall-clock time, Unix milliseconds.
    pub at_ms: u64,
    /// The app it concerns; none for relay-wide events (a handshake before the app is known).
    pub app: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

pub struct Recorder {
    /// Events kept, by kind (a Prometheus counter, so an alert can see them).
    pub recorded: Family<KindLabel, Counter>,
    rings: [Mutex<VecDeque<Entry>>; KINDS],
    enabled: AtomicBool,
    size: AtomicUsize,
    slow_publish_us: AtomicU64,
    slow_http_us: AtomicU64,
    slow_bus_us: AtomicU64,
    slow_handshake_us: AtomicU64,
    seq: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        let r = Self {
            recorded: Family::default(),
            rings: Default::default(),
            enabled: AtomicBool::new(false),
            size: AtomicUsize::new(0),
            slow_publish_us: AtomicU64::new(0),
            slow_http_us: AtomicU64::new(0),
            slow_bus_us: AtomicU64::new(0),
            slow_handshake_us: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        };
        r.configure(&RecorderConfig::default());
        r
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Recorder {
    /// Applies a (validated) `[recorder]` section; the rings shrink at their next event.
    pub fn configure(&self, c: &RecorderConfig) {
        self.enabled.store(c.enabled, Ordering::Relaxed);
        self.size.store(c.size.clamp(1, MAX_SIZE), Ordering::Relaxed);
        self.slow_publish_us.store(c.slow_publish_ms.saturating_mul(1000), Ordering::Relaxed);
        self.slow_http_us.store(c.slow_http_ms.saturating_mul(1000), Ordering::Relaxed);
        self.slow_bus_us.store(c.slow_bus_ms.saturating_mul(1000), Ordering::Relaxed);
        self.slow_handshake_us.store(c.slow_handshake_ms.saturating_mul(1000), Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn over(&self, threshold: &AtomicU64, took: Duration) -> bool {
        self.enabled() && micros(took) >= threshold.load(Ordering::Relaxed)
    }

    pub fn publish_is_slow(&self, took: Duration) -> bool {
        self.over(&self.slow_publish_us, took)
    }

    pub fn http_is_slow(&self, took: Duration) -> bool {
        self.over(&self.slow_http_us, took)
    }

    pub fn bus_is_slow(&self, took: Duration) -> bool {
        self.over(&self.slow_bus_us, took)
    }

    pub fn handshake_is_slow(&self, took: Duration) -> bool {
        self.over(&self.slow_handshake_us, took)
    }

    /// Keeps an event (when recording is on), dropping the oldest of its kind when full.
    pub fn record(&self, app: Option<&str>, event: Event) {
        if !self.enabled() {
            return;
        }
        self.recorded.get_or_create(&KindLabel { kind: event.kind() }).inc();
        let size = self.size.load(Ordering::Relaxed);
        let entry = Entry { seq: self.seq.fetch_add(1, Ordering::Relaxed), at_ms: unix_ms(), app: app.map(str::to_owned), event };
        let mut ring = self.rings[entry.event.slot()].lock();
        while ring.len() >= size {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Events held, every kind.
    pub fn len(&self) -> usize {
        self.rings.iter().map(|r| r.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest `limit` events (of one app, or all), oldest first.
    pub fn latest(&self, app: Option<&str>, limit: usize) -> Vec<Entry> {
        let mut all: Vec<Entry> = Vec::new();
        for ring in &self.rings {
            all.extend(ring.lock().iter().filter(|e| app.is_none() || e.app.as_deref() == app).cloned());
        }
        all.sort_by_key(|e| e.seq);
        let skip = all.len().saturating_sub(limit);
        all.split_off(skip)
    }

    /// A slow websocket or TLS handshake, for the accept path to call when it knows the time.
    pub fn slow_handshake(&self, tls: bool, peer: std::net::IpAddr, took: Duration) {
        if self.handshake_is_slow(took) {
            self.record(None, Event::SlowHandshake { tls, peer: peer.to_string(), duration_us: micros(took) });
        }
    }

    pub fn slow_http(&self, app: &str, endpoint: &'static str, status: u16, took: Duration) {
        if self.http_is_slow(took) {
            let app = (app != "unknown").then_some(app);
            self.record(app, Event::SlowHttp { endpoint, status, duration_us: micros(took) });
        }
    }
}

/// Longest panic message kept.
const PANIC_MESSAGE_MAX: usize = 300;

/// A connection task's panic, with its message (cut short).
pub fn record_panic(recorder: &Recorder, payload: &(dyn std::any::Any + Send)) {
    let text = payload.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
    let mut message: String = text.chars().take(PANIC_MESSAGE_MAX).collect();
    if message.len() < text.len() {
        message.push('…');
    }
    recorder.record(None, Event::ConnectionPanic { message });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(size: usize) -> Recorder {
        let r = Recorder::default();
        r.configure(&RecorderConfig { size, ..RecorderConfig::default() });
        r
    }

    #[test]
    fn each_kind_keeps_its_newest_and_apps_see_only_theirs() {
        let r = recorder(2);
        for i in 0..5u16 {
            r.record(Some("1"), Event::SlowHttp { endpoint: "events", status: 200 + i, duration_us: 1 });
        }
        r.record(Some("2"), Event::ConnectionPanic { message: String::new() });
        let one = r.latest(Some("1"), 100);
        assert_eq!(one.iter().map(|e| &e.event).collect::<Vec<_>>().len(), 2, "bounded per kind");
        assert!(matches!(one[1].event, Event::SlowHttp { status: 204, .. }), "newest kept: {one:?}");
        assert_eq!(r.latest(Some("2"), 100).len(), 1, "the flood of one kind left the other");
        assert_eq!(r.latest(None, 100).len(), 3);
        assert_eq!(r.latest(None, 1)[0].app.as_deref(), Some("2"), "the newest across kinds");
    }

    #[test]
    fn thresholds_and_switch() {
        let r = recorder(10);
        assert!(!r.publish_is_slow(Duration::from_millis(249)));
        assert!(r.publish_is_slow(Duration::from_millis(250)));
        r.slow_http("1", "events", 200, Duration::from_millis(10));
        assert!(r.latest(None, 10).is_empty(), "a fast request is not recorded");
        r.configure(&RecorderConfig { enabled: false, ..RecorderConfig::default() });
        assert!(!r.publish_is_slow(Duration::from_secs(100)));
        r.record(None, Event::ConnectionPanic { message: String::new() });
        assert!(r.latest(None, 10).is_empty(), "off records nothing");
    }

    #[test]
    fn entries_serialise_flat_with_their_kind() {
        let r = recorder(10);
        r.record(Some("1"), Event::SlowConsumer { socket: "1.2".into(), queued_bytes: 9, unread_ms: 3 });
        let json = serde_json::to_value(r.latest(None, 1)).unwrap();
        assert_eq!(json[0]["kind"], "slow_consumer");
        assert_eq!(json[0]["queued_bytes"], 9);
        assert_eq!(json[0]["app"], "1");
    }
}
