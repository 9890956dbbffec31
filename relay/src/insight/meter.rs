//! One app's `hub::Meter`: the core's timings into histograms, and the rare slow one into
//! the flight recorder with its detail.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::recorder::{Event, Recorder};
use crate::hub::{Meter, Overflow, Pass, PassReport};

pub struct AppMeter {
    pub(super) app: Arc<str>,
    pub(super) direct: Histogram,
    pub(super) lanes: Histogram,
    pub(super) depth: Histogram,
    pub(super) slow_consumers: Counter,
    pub(super) conflated: Counter,
    pub(super) recorder: Arc<Recorder>,
    /// The last second's passes, for the live relay page.
    pub(super) window: super::window::Window,
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl AppMeter {
    /// Adds the passes since the last call to `into`.
    pub fn take_window(&self, into: &mut super::window::Taken) {
        self.window.take_into(into);
    }
}

impl Meter for AppMeter {
    fn pass(&self, r: &PassReport<'_>) {
        let h = match r.pass {
            Pass::Direct => &self.direct,
            Pass::Lanes => &self.lanes,
        };
        h.observe(r.elapsed.as_secs_f64());
        self.window.observe(r.elapsed);
        if self.recorder.publish_is_slow(r.elapsed) {
            self.recorder.record(
                Some(&self.app),
                Event::SlowPublish {
                    channel: r.channel.to_string(),
                    pass: r.pass.label(),
                    subscribers: r.subscribers,
                    bytes: r.bytes,
                    frames: r.frames,
                    lanes: r.lanes,
                    lane_backlog: r.backlog,
                    write_us: micros(r.elapsed),
                },
            );
        }
    }

    fn conflated(&self, n: usize) {
        self.conflated.inc_by(n as u64);
    }

    fn depth(&self, bytes: usize) {
        // Bytes as a float: exact far beyond any outbox bound.
        self.depth.observe(bytes as f64);
    }

    fn overflow(&self, o: &Overflow) {
        self.slow_consumers.inc();
        let unread_ms = u64::try_from(o.unread.as_millis()).unwrap_or(u64::MAX);
        self.recorder.record(Some(&self.app), Event::SlowConsumer { socket: o.socket.to_string(), queued_bytes: o.queued_bytes, unread_ms });
    }
}
