//! Seeing inside the relay: latency histograms (by app and a fixed set of causes, never by
//! channel or host), the flight recorder of slow and failed events, the relay's own live
//! state and usage counts. The HTTP endpoints that read them are in `http` (`debug`, `usage`).

mod first;
pub mod live;
mod meter;
pub mod recorder;
pub mod signal;
pub mod usage;
pub mod window;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use crate::config::RecorderConfig;
pub use first::FirstSamples;
pub use meter::AppMeter;
pub use recorder::{Event, Recorder};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabel {
    pub app: String,
    /// `direct` or `lanes`.
    pub pass: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppOnly {
    pub app: String,
}

/// 10 µs .. ~5 s.
fn short() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

/// 1 ms .. ~4 min: a session start waits for the agent's next sample.
fn long() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// 64 B .. 16 MiB.
fn bytes() -> Histogram {
    Histogram::new(exponential_buckets(64.0, 4.0, 10))
}

type Hist = Family<AppOnly, Histogram, fn() -> Histogram>;

/// The families of this module and the flight recorder, one per relay.
pub struct Insight {
    pub recorder: Arc<Recorder>,
    publish_write: Family<PassLabel, Histogram, fn() -> Histogram>,
    session_start: Hist,
    outbox_depth: Hist,
    slow_consumers: Family<AppOnly, Counter>,
    bus_latency: Hist,
    /// Times the link to Redis was lost (each followed by reconnecting).
    pub redis_reconnects: Counter,
    /// The relay page's publisher state.
    pub live: live::Live,
}

impl Default for Insight {
    fn default() -> Self {
        Self {
            recorder: Arc::default(),
            publish_write: Family::new_with_constructor(short),
            session_start: Family::new_with_constructor(long),
            outbox_depth: Family::new_with_constructor(bytes),
            slow_consumers: Family::default(),
            bus_latency: Family::new_with_constructor(short),
            redis_reconnects: Counter::default(),
            live: live::Live::default(),
        }
    }
}

impl Insight {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "publish_write_seconds",
            "From a publish accepted to the end of its pass over the subscribers (direct: the publisher's own; lanes: each lane's share)",
            self.publish_write.clone(),
        );
        registry.register(
            "session_start_seconds",
            "From a viewer subscribing to a host channel to the first live sample forwarded to it",
            self.session_start.clone(),
        );
        registry.register(
            "outbox_depth_bytes",
            "Bytes queued for a connection when its writer took them (it could not write them at once)",
            self.outbox_depth.clone(),
        );
        registry.register(
            "slow_consumer_resets",
            "Connections closed or reset because they read too slowly and their queue overflowed",
            self.slow_consumers.clone(),
        );
        registry.register(
            "cluster_bus_latency_seconds",
            "From a bus message sent by another node to its being applied here (node clocks must agree)",
            self.bus_latency.clone(),
        );
        registry.register("cluster_redis_reconnects", "Times the link to Redis was lost and reconnecting began", self.redis_reconnects.clone());
        registry.register(
            "relay_states_published",
            "States of this relay published on its own channel (only while an operator watches)",
            self.live.published.clone(),
        );
        registry.register("recorder_events", "Events the flight recorder kept, by kind", self.recorder.recorded.clone());
    }

    /// The handles an app's hub reports to (`conflated` is the app's existing counter).
    pub fn meter_for(&self, app: &str, conflated: Counter) -> Arc<AppMeter> {
        let pass = |pass| self.publish_write.get_or_create(&PassLabel { app: app.to_owned(), pass }).clone();
        let l = AppOnly { app: app.to_owned() };
        Arc::new(AppMeter {
            app: app.into(),
            direct: pass("direct"),
            lanes: pass("lanes"),
            depth: self.outbox_depth.get_or_create(&l).clone(),
            slow_consumers: self.slow_consumers.get_or_create(&l).clone(),
            conflated,
            recorder: self.recorder.clone(),
            window: window::Window::default(),
        })
    }

    pub fn session_start(&self, app: &str) -> Histogram {
        self.session_start.get_or_create(&AppOnly { app: app.to_owned() }).clone()
    }

    pub fn bus_latency(&self, app: &str) -> Histogram {
        self.bus_latency.get_or_create(&AppOnly { app: app.to_owned() }).clone()
    }
}
