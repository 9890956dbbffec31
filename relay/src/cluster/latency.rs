//! How long bus messages take from the node that sent them to being applied here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::insight::{Event, Recorder};
use crate::metrics::Metrics;

/// Latency beyond this is a clock out of step, not a message: not counted.
const MAX_BELIEVED: Duration = Duration::from_secs(3600);

pub struct BusLatency {
    /// By app id, resolved once; node-level messages (app "") have their own.
    by_app: HashMap<String, Histogram>,
    recorder: Arc<Recorder>,
    pub reconnects: Counter,
}

impl BusLatency {
    pub fn new<'a>(metrics: &Metrics, apps: impl Iterator<Item = &'a str>) -> Self {
        let mut by_app: HashMap<String, Histogram> = apps.map(|a| (a.to_owned(), metrics.insight.bus_latency(a))).collect();
        by_app.insert(String::new(), metrics.insight.bus_latency(""));
        Self { by_app, recorder: metrics.insight.recorder.clone(), reconnects: metrics.insight.redis_reconnects.clone() }
    }

    /// A message sent at `sent_ms` (0: by a node that does not say) was just applied.
    pub fn applied(&self, from: &str, app: &str, kind: &'static str, sent_ms: u64) {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        if sent_ms == 0 {
            return;
        }
        let took = Duration::from_millis(now_ms.saturating_sub(sent_ms));
        if took > MAX_BELIEVED {
            return;
        }
        // An app this node does not serve is ignored by `views`, and here.
        let Some(h) = self.by_app.get(app) else { return };
        h.observe(took.as_secs_f64());
        if self.recorder.bus_is_slow(took) {
            let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            let app = (!app.is_empty()).then_some(app);
            self.recorder.record(app, Event::SlowBus { from: from.chars().take(64).collect(), message: kind, latency_us });
        }
    }
}
