//! Prometheus metrics. Labelled by app, never by channel (unbounded cardinality).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sonde_protocol::CloseCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub app: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub app: String,
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    pub app: String,
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub app: String,
    /// The target's `host:port` (from the config: bounded).
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub app: String,
    pub target: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub app: String,
    pub target: String,
    pub reason: &'static str,
}

/// 1 ms .. ~6 min: webhook deliveries, retries included.
fn delivery_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 15))
}

fn histogram() -> Histogram {
    // 10 µs .. ~5 s
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

/// Every metric family, registered once.
pub struct Metrics {
    pub registry: Registry,
    connections: Family<AppLabel, Gauge>,
    connections_total: Family<AppLabel, Counter>,
    subscriptions: Family<AppLabel, Gauge>,
    messages_in: Family<AppLabel, Counter>,
    messages_out: Family<AppLabel, Counter>,
    bytes_in: Family<AppLabel, Counter>,
    bytes_out: Family<AppLabel, Counter>,
    conflated: Family<AppLabel, Counter>,
    sessions: Family<AppLabel, Gauge>,
    agents_online: Family<AppLabel, Gauge>,
    errors: Family<CodeLabel, Counter>,
    limits: Family<LimitLabel, Counter>,
    /// 1 while the cluster adapter is connected to Redis.
    pub cluster_up: Gauge,
    /// Bus messages dropped because Redis was away or slow.
    pub cluster_dropped: Counter,
    /// Sockets open at the edge (websockets and HTTP), and the most allowed.
    pub edge_sockets: Gauge,
    pub edge_socket_cap: Gauge,
    edge_refused: Family<ReasonLabel, Counter>,
    /// Connection tasks that panicked (each cleaned up and logged).
    pub connection_panics: Counter,
    pub http_requests: Family<HttpLabel, Counter>,
    pub http_duration: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    pub publish_duration: Family<AppLabel, Histogram, fn() -> Histogram>,
    webhook_requests: Family<OutcomeLabel, Counter>,
    webhook_queue: Family<TargetLabel, Gauge>,
    webhook_retries: Family<TargetLabel, Counter>,
    webhook_dropped: Family<DropLabel, Counter>,
    webhook_delivered: Family<TargetLabel, Counter>,
    webhook_delivery: Family<TargetLabel, Histogram, fn() -> Histogram>,
    /// Latency histograms by cause and the flight recorder.
    pub insight: crate::insight::Insight,
    /// From the first TLS byte to a finished handshake.
    pub tls_handshake_seconds: Histogram,
    tls_handshake_failures: Family<ReasonLabel, Counter>,
    /// Certificate reloads that took effect, and renewals refused (the old one kept).
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    /// From accept to the websocket's 101 (a TLS handshake included).
    pub ws_handshake_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sonde");
        let m = Self {
            connections: Family::default(),
            connections_total: Family::default(),
            subscriptions: Family::default(),
            messages_in: Family::default(),
            messages_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            conflated: Family::default(),
            sessions: Family::default(),
            agents_online: Family::default(),
            errors: Family::default(),
            limits: Family::default(),
            cluster_up: Gauge::default(),
            cluster_dropped: Counter::default(),
            edge_sockets: Gauge::default(),
            edge_socket_cap: Gauge::default(),
            edge_refused: Family::default(),
            connection_panics: Counter::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(histogram),
            publish_duration: Family::new_with_constructor(histogram),
            webhook_requests: Family::default(),
            webhook_queue: Family::default(),
            webhook_retries: Family::default(),
            webhook_dropped: Family::default(),
            webhook_delivered: Family::default(),
            webhook_delivery: Family::new_with_constructor(delivery_histogram),
            insight: crate::insight::Insight::default(),
            tls_handshake_seconds: histogram(),
            tls_handshake_failures: Family::default(),
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            ws_handshake_seconds: histogram(),
            registry: Registry::default(),
        };
        registry.register("connections", "Open websocket connections", m.connections.clone());
        registry.register("connections_opened", "Websocket connections accepted", m.connections_total.clone());
        registry.register("subscriptions", "Channel subscriptions held by connections", m.subscriptions.clone());
        registry.register("messages_in", "Websocket messages received", m.messages_in.clone());
        registry.register("messages_out", "Websocket messages queued to subscribers", m.messages_out.clone());
        registry.register("bytes_in", "Websocket bytes received", m.bytes_in.clone());
        registry.register("bytes_out", "Websocket bytes queued to subscribers", m.bytes_out.clone());
        registry.register("conflated", "Sample frames replaced by a newer one for a slow subscriber", m.conflated.clone());
        registry.register("sessions", "Realtime sessions running", m.sessions.clone());
        registry.register("agents_online", "Agents connected to their host channel", m.agents_online.clone());
        registry.register("errors", "Errors sent to clients, by Pusher code (0: HTTP or close codes below 4000)", m.errors.clone());
        registry.register("limit_rejections", "Requests refused by an abuse limit, by limit", m.limits.clone());
        registry.register("cluster_adapter_up", "1 while the cluster adapter is connected to Redis", m.cluster_up.clone());
        registry.register("cluster_dropped", "Cluster bus messages dropped while Redis was away or slow", m.cluster_dropped.clone());
        registry.register("edge_sockets", "Sockets open at the edge (websockets and HTTP)", m.edge_sockets.clone());
        registry.register("edge_socket_cap", "Most sockets served at once (max_sockets or the descriptor limit)", m.edge_socket_cap.clone());
        registry.register("edge_refused", "Sockets and requests refused or cut at the edge, by reason", m.edge_refused.clone());
        registry.register("connection_panics", "Connection tasks that panicked and were cleaned up", m.connection_panics.clone());
        registry.register("http_requests", "HTTP API requests by endpoint and status", m.http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP API latency", m.http_duration.clone());
        registry.register("publish_fanout_seconds", "Time to queue one publish to every subscriber", m.publish_duration.clone());
        registry.register(
            "webhook_requests",
            "Webhook requests by target and outcome (ok, http_4xx, http_5xx, timeout, connect, tls, error)",
            m.webhook_requests.clone(),
        );
        registry.register("webhook_queue_events", "Webhook events queued for a target", m.webhook_queue.clone());
        registry.register("webhook_retries", "Webhook requests retried after a failure", m.webhook_retries.clone());
        registry.register(
            "webhook_dropped_events",
            "Webhook events dropped, by reason (queue_full, retry_window, shutdown, unconfirmed)",
            m.webhook_dropped.clone(),
        );
        registry.register("webhook_delivered_events", "Webhook events a target accepted (2xx)", m.webhook_delivered.clone());
        registry.register("webhook_delivery_seconds", "Time from an event to its delivery (2xx), retries included", m.webhook_delivery.clone());
        m.insight.register(&mut registry);
        registry.register("tls_handshake_seconds", "TLS handshake duration", m.tls_handshake_seconds.clone());
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason (timeout, eof, plaintext, protocol, no_shared_cipher, bad_certificate)",
            m.tls_handshake_failures.clone(),
        );
        registry.register("tls_certificate_reloads", "Certificate renewals loaded without a restart", m.tls_reloads.clone());
        registry.register("tls_certificate_reload_failures", "Certificate renewals refused (the current certificate kept)", m.tls_reload_failures.clone());
        registry.register("ws_handshake_seconds", "Time from accept to the websocket upgrade (TLS included)", m.ws_handshake_seconds.clone());
        Self { registry, ..m }
    }
}

/// The handles of one app, resolved once so the hot path never hashes labels.
#[derive(Clone)]
pub struct AppMetrics {
    app: String,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub subscriptions: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub conflated: Counter,
    pub sessions: Gauge,
    pub agents_online: Gauge,
    pub publish_duration: Histogram,
    errors: Family<CodeLabel, Counter>,
    limits: Family<LimitLabel, Counter>,
}

/// The webhook handles of one target of one app.
#[derive(Clone)]
pub struct WebhookMetrics {
    app: String,
    target: String,
    requests: Family<OutcomeLabel, Counter>,
    dropped: Family<DropLabel, Counter>,
    pub queued: Gauge,
    pub retries: Counter,
    pub delivered: Counter,
    pub delivery: Histogram,
    recorder: std::sync::Arc<crate::insight::Recorder>,
}

impl WebhookMetrics {
    pub fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabel { app: self.app.clone(), target: self.target.clone(), outcome }).inc();
    }

    /// A request that failed, into the flight recorder (`attempt` from 1).
    pub fn failed(&self, outcome: &'static str, events: usize, attempt: u32) {
        let event = crate::insight::Event::WebhookFailed { target: self.target.clone(), outcome, events, attempt };
        self.recorder.record(Some(&self.app), event);
    }

    pub fn dropped(&self, reason: &'static str, n: u64) {
        self.dropped.get_or_create(&DropLabel { app: self.app.clone(), target: self.target.clone(), reason }).inc_by(n);
    }
}

impl Metrics {
    /// Webhook events dropped for a reason that concerns an app's webhooks as a whole
    /// (`target` ""): cluster-wide events a follower forgot while no leader confirmed them.
    pub fn webhook_unconfirmed(&self, app: &str) -> Counter {
        self.webhook_dropped.get_or_create(&DropLabel { app: app.to_owned(), target: String::new(), reason: "unconfirmed" }).clone()
    }

    /// The handles of one webhook target (`target` = its `host:port`).
    pub fn for_webhook(&self, app: &str, target: &str) -> WebhookMetrics {
        let l = TargetLabel { app: app.to_owned(), target: target.to_owned() };
        WebhookMetrics {
            app: app.to_owned(),
            target: target.to_owned(),
            requests: self.webhook_requests.clone(),
            dropped: self.webhook_dropped.clone(),
            queued: self.webhook_queue.get_or_create(&l).clone(),
            retries: self.webhook_retries.get_or_create(&l).clone(),
            delivered: self.webhook_delivered.get_or_create(&l).clone(),
            delivery: self.webhook_delivery.get_or_create(&l).clone(),
            recorder: self.insight.recorder.clone(),
        }
    }

    pub fn for_app(&self, app: &str) -> AppMetrics {
        let l = AppLabel { app: app.to_owned() };
        AppMetrics {
            app: app.to_owned(),
            connections: self.connections.get_or_create(&l).clone(),
            connections_total: self.connections_total.get_or_create(&l).clone(),
            subscriptions: self.subscriptions.get_or_create(&l).clone(),
            messages_in: self.messages_in.get_or_create(&l).clone(),
            messages_out: self.messages_out.get_or_create(&l).clone(),
            bytes_in: self.bytes_in.get_or_create(&l).clone(),
            bytes_out: self.bytes_out.get_or_create(&l).clone(),
            conflated: self.conflated.get_or_create(&l).clone(),
            sessions: self.sessions.get_or_create(&l).clone(),
            agents_online: self.agents_online.get_or_create(&l).clone(),
            publish_duration: self.publish_duration.get_or_create(&l).clone(),
            errors: self.errors.clone(),
            limits: self.limits.clone(),
        }
    }

    /// Counts a socket or request refused or cut at the edge.
    pub fn edge_refused(&self, reason: &'static str) {
        self.edge_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a failed TLS handshake (`reason` from a fixed set).
    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

impl AppMetrics {
    pub fn error(&self, code: Option<CloseCode>) {
        let code = code.map_or(0, CloseCode::code);
        self.errors.get_or_create(&CodeLabel { app: self.app.clone(), code }).inc();
    }

    /// Counts a rejection by the named abuse limit.
    pub fn limit(&self, limit: &'static str) {
        self.limits.get_or_create(&LimitLabel { app: self.app.clone(), limit }).inc();
    }

    pub fn error_code(&self, code: u16) {
        self.errors.get_or_create(&CodeLabel { app: self.app.clone(), code }).inc();
    }
}
