//! The relay's own state, once a second, on `private-sonde-relay` of every app where someone
//! (an operator) is subscribed to it — anywhere in the cluster — and never otherwise, the way
//! an agent streams only while a viewer watches. Each node publishes its own line.

use std::time::Instant;

use serde::Serialize;
use sonde_protocol::frame::json_string;
use sonde_protocol::{ChannelName, ServerFrame};

use crate::apps::Apps;
use crate::cluster::Cluster;
use crate::hub::Publish;
use crate::insight::live::Totals;
use crate::insight::usage::Totals as UsageTotals;
use crate::insight::window::Taken;
use crate::metrics::Metrics;
use crate::tokens::RELAY_CHANNEL;

/// The event the relay's state is published as.
pub use sonde_protocol::sonde::EVENT_RELAY;

/// One node's state as the relay page draws it.
#[derive(Debug, Clone, Serialize)]
pub struct RelayState {
    pub node: String,
    pub ts_ms: u64,
    pub connections: i64,
    pub subscriptions: i64,
    pub channels: usize,
    pub messages_in_ps: f64,
    pub deliveries_ps: f64,
    pub bytes_out_ps: f64,
    /// Fan-out passes that ended in the last second, and their publish→write quantiles.
    pub passes_ps: f64,
    pub write_p50_ms: Option<f64>,
    pub write_p99_ms: Option<f64>,
    pub sessions: usize,
    pub agents_online: usize,
    pub webhook_queue: i64,
    pub cluster_nodes: usize,
    /// Events the flight recorder holds (all apps).
    pub recorded: usize,
    /// Usage since midnight (UTC), every app's; the cluster's as far as this node has heard.
    pub today: UsageTotals,
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

/// What the relay's state is read from: its apps, its counters and the cluster, when there is one.
pub struct Sources<'a> {
    pub apps: &'a Apps,
    pub metrics: &'a Metrics,
    pub cluster: Option<&'a Cluster>,
}

/// Once a second: measures, and publishes where watched.
pub fn tick(state: &Sources) {
    let Ok(channel) = ChannelName::parse(RELAY_CHANNEL) else { return };
    // The window is emptied every second, watched or not, so a page that opens sees only the
    // second just gone.
    let mut window = Taken::default();
    state.apps.iter().for_each(|a| a.meter.take_window(&mut window));
    let now = Instant::now();
    let totals = Totals {
        messages_in: state.apps.iter().map(|a| a.metrics.messages_in.get()).sum(),
        deliveries: state.apps.iter().map(|a| a.metrics.messages_out.get()).sum(),
        bytes_out: state.apps.iter().map(|a| a.metrics.bytes_out.get()).sum(),
        at: Some(now),
    };
    let before = std::mem::replace(&mut *state.metrics.insight.live.last.lock(), totals);
    let watched: Vec<_> = state.apps.iter().filter(|a| a.hub.channel_info(&channel).subscription_count > 0).collect();
    if watched.is_empty() {
        return;
    }
    let secs = before.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
    let s = measure(state, &window, totals, before, secs);
    let data = json_string(&serde_json::to_string(&s).unwrap_or_default());
    let frame = ServerFrame::Event { event: EVENT_RELAY, channel: Some(RELAY_CHANNEL), data_json: &data, user_id: None }.encode();
    for app in watched {
        let d = app.publish(&channel, Publish::to_all(frame.clone()));
        app.metrics.messages_out.inc_by(d.delivered as u64);
        state.metrics.insight.live.published.inc();
    }
}

fn measure(state: &Sources, window: &Taken, totals: Totals, before: Totals, secs: f64) -> RelayState {
    let apps = || state.apps.iter();
    let (node, cluster_nodes) = match state.cluster {
        Some(c) => (c.node().to_string(), c.peers() + 1),
        None => ("local".to_owned(), 1),
    };
    RelayState {
        node,
        ts_ms: crate::sessions::Clock::now().now_ms,
        connections: apps().map(|a| a.metrics.connections.get()).sum(),
        subscriptions: apps().map(|a| a.metrics.subscriptions.get()).sum(),
        channels: apps().map(|a| a.hub.channel_count()).sum(),
        messages_in_ps: rate(totals.messages_in, before.messages_in, secs),
        deliveries_ps: rate(totals.deliveries, before.deliveries, secs),
        bytes_out_ps: rate(totals.bytes_out, before.bytes_out, secs),
        passes_ps: if secs > 0.0 { window.count() as f64 / secs } else { 0.0 },
        write_p50_ms: window.quantile_ms(0.5),
        write_p99_ms: window.quantile_ms(0.99),
        sessions: apps().map(|a| a.sessions.count()).sum(),
        agents_online: apps().map(|a| a.inventory.online_count()).sum(),
        webhook_queue: apps().filter_map(|a| a.webhooks.as_ref()).map(|w| w.queued()).sum(),
        cluster_nodes,
        recorded: state.metrics.insight.recorder.len(),
        today: super::usage::today(state.apps),
    }
}
