//! One webhook target of an app: its filter, its lanes and its metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::Url;

use super::event::Event;
use super::queue::Lane;
use crate::config::{WebhookConfig, WebhookSettings};
use crate::metrics::WebhookMetrics;

/// A target that drops events for a full queue says so at most this often (seconds).
const WARN_EVERY_S: u64 = 60;

pub(super) struct Target {
    pub url: Url,
    /// The URL as logs may show it (no password).
    pub shown: String,
    pub headers: HeaderMap,
    /// Event types taken, as bits.
    types: u16,
    prefix: Option<String>,
    pub lanes: Vec<Lane>,
    /// Bytes each lane may hold.
    budget: usize,
    pub metrics: WebhookMetrics,
    /// When (unix seconds) the last "queue full" warning was logged.
    warned_at: AtomicU64,
}

impl Target {
    /// `config` was checked by `Config::validate`. With batching (`batched`), one lane: a
    /// window's events go in one request.
    pub fn new(config: &WebhookConfig, settings: &WebhookSettings, batched: bool, metrics: impl FnOnce(&str) -> WebhookMetrics) -> Result<Self, String> {
        let parsed = config.parse()?;
        let lanes = if batched { 1 } else { settings.connections_per_target };
        Ok(Self {
            shown: crate::redact::url(&config.url),
            url: parsed.url,
            headers: parsed.headers,
            types: config.types(),
            prefix: config.channel_prefix.clone().filter(|p| !p.is_empty()),
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
            budget: (settings.max_queue_bytes / lanes).max(1),
            metrics: metrics(&parsed.label),
            warned_at: AtomicU64::new(0),
        })
    }

    /// The event types this target takes, as bits.
    pub fn types(&self) -> u16 {
        self.types
    }

    pub fn accepts(&self, ev: &Event) -> bool {
        self.types & ev.kind.bit() != 0 && self.prefix.as_deref().is_none_or(|p| ev.channel.as_str().starts_with(p))
    }

    /// Queues an event on its channel's lane; never waits. A full lane drops its oldest.
    pub fn push(&self, ev: Arc<Event>) {
        let lane = ev.lane(self.lanes.len());
        self.metrics.queued.inc();
        let dropped = self.lanes[lane].push(ev, self.budget);
        if dropped > 0 {
            self.metrics.queued.dec_by(dropped as i64);
            self.metrics.dropped("queue_full", dropped as u64);
            self.warn_full();
        }
    }

    fn warn_full(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_S && self.warned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(url = %self.shown, "webhook: the target's queue is full; dropping its oldest events (see sonde_webhook_dropped_events_total)");
        }
    }
}
