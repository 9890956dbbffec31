//! Webhooks: Pusher's events (and Sonde's own) POSTed to an app's backends, signed, batched,
//! retried, never in the way of the fan-out.
//!
//! The hub, the inventory, the session controller and the websocket handler report what
//! happens; this module turns it into events, encoded once, and queues them on each target
//! that wants them: a bounded queue per connection to the target (a lane), the events of a
//! channel always on the same lane, drained by its own task (`sender`). Reporting an event
//! never waits for anything but a short lock.
//!
//! Cluster-wide events (occupancy, presence, subscription counts, agents online/offline) are
//! sent by one node of a cluster: the holder of the session leader lease. The others keep what
//! they see in `pending` until the leader has surely seen it, so the node that takes over
//! after the leader dies sends what the departure caused (see `pending`). Client events,
//! cache misses and session starts and stops are sent by the node where they happen (the
//! sessions run on the leader alone).

mod backoff;
mod event;
mod pending;
mod queue;
mod sender;
mod target;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sonde_protocol::sonde::host_channel;
use sonde_protocol::webhook::{EventType, WebhookEvent};
use sonde_protocol::{ChannelKind, ChannelName, SocketId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AppConfig;
pub use crate::config::{WebhookConfig, WebhookSettings};
use crate::hub::{Observer, Transition};
use crate::metrics::Metrics;
use crate::sessions::{Lifecycle, Role};
use event::Event;
use pending::Pending;
use prometheus_client::metrics::counter::Counter;
use sender::Delivery;
use target::Target;

/// Whether this node sends the cluster-wide events now.
struct Duty {
    role: Role,
    /// The relay is leaving its cluster: the next leader reports what its departure causes.
    leaving: bool,
    pending: Pending,
}

impl Duty {
    fn acts(&self, now: Instant) -> bool {
        !self.leaving && self.role.acts(now)
    }
}

/// One app's webhooks.
pub struct Webhooks {
    targets: Vec<Arc<Target>>,
    /// Every event type some target takes, as bits.
    wants: u16,
    delivery: Arc<Delivery>,
    duty: Mutex<Duty>,
    /// Cluster-wide events forgotten while no leader confirmed them.
    unconfirmed: Counter,
}

impl Webhooks {
    /// The app's webhooks, or `None` when it has no target. The config was checked by
    /// `Config::validate`.
    pub fn new(app: &AppConfig, settings: &WebhookSettings, metrics: &Metrics) -> Option<Arc<Self>> {
        if app.webhooks.is_empty() {
            return None;
        }
        let targets: Vec<Arc<Target>> = app
            .webhooks
            .iter()
            .filter_map(|c| match Target::new(c, settings, app.webhook_batch_ms > 0, |label| metrics.for_webhook(&app.id, label)) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    tracing::error!(app = %app.id, error = %e, "webhook target left out");
                    None
                }
            })
            .collect();
        let delivery = Delivery {
            key: app.key.as_str().into(),
            secret: app.secret.as_str().into(),
            batch: Duration::from_millis(app.webhook_batch_ms),
            max_batch: settings.max_batch_events,
            timeout: Duration::from_millis(settings.timeout_ms),
            backoff: backoff::Backoff {
                initial: Duration::from_millis(settings.initial_backoff_ms),
                max: Duration::from_millis(settings.max_backoff_ms),
                window: Duration::from_secs(settings.retry_window_s),
            },
        };
        Some(Arc::new(Self {
            wants: targets.iter().fold(0, |acc, t| acc | t.types()),
            targets,
            delivery: Arc::new(delivery),
            duty: Mutex::new(Duty { role: Role::Alone, leaving: false, pending: Pending::default() }),
            unconfirmed: metrics.webhook_unconfirmed(&app.id),
        }))
    }

    /// Events queued for every target.
    pub fn queued(&self) -> i64 {
        self.targets.iter().map(|t| t.metrics.queued.get()).sum()
    }

    /// Starts one sender per lane of every target, on the current runtime. They stop (after
    /// sending what is queued once) when `stop` is cancelled.
    pub fn start(&self, client: &reqwest::Client, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for t in &self.targets {
            for lane in 0..t.lanes.len() {
                tasks.push(tokio::spawn(sender::run(t.clone(), lane, self.delivery.clone(), client.clone(), stop.clone())));
            }
        }
        tasks
    }

    fn wants(&self, kind: EventType) -> bool {
        self.wants & kind.bit() != 0
    }

    /// Queues an event on every target that takes it.
    fn send(&self, ev: Arc<Event>) {
        for t in &self.targets {
            if t.accepts(&ev) {
                t.push(ev.clone());
            }
        }
    }

    /// A cluster-wide event: sent now by the node that leads, kept by the others.
    fn send_cluster(&self, ev: Event) {
        let ev = Arc::new(ev);
        let mut duty = self.duty.lock();
        if duty.acts(Instant::now()) {
            self.send(ev);
        } else {
            let forgotten = duty.pending.push(ev);
            self.unconfirmed.inc_by(forgotten as u64);
        }
    }

    /// The node's role in the cluster changed (or was confirmed). A node that now sends the
    /// cluster-wide events first sends what it kept, in order.
    pub fn set_role(&self, role: Role) {
        let mut duty = self.duty.lock();
        duty.role = role;
        if duty.acts(Instant::now()) && duty.pending.len() > 0 {
            for ev in duty.pending.take() {
                self.send(ev);
            }
        }
    }

    /// Forgets the cluster-wide events kept so far (see `Cluster::synced`).
    pub fn forget_pending(&self) {
        self.duty.lock().pending.take();
    }

    /// A heartbeat of the node holding the leader lease.
    pub fn leader_beat(&self) {
        self.duty.lock().pending.beat();
    }

    /// The relay leaves its cluster (shutting down): from now on the next leader reports what
    /// happens here, its departure included.
    pub fn leave_cluster(&self) {
        self.duty.lock().leaving = true;
    }

    /// An accepted client event. Sonde's own (`client-sonde-*`: agent samples, backfills and
    /// snapshots) are not sent: `sonde_*` events cover them.
    pub fn client_event(&self, channel: &ChannelName, event: &str, data: &str, socket: SocketId, user_id: Option<&str>) {
        if !self.wants(EventType::ClientEvent) || event.starts_with(sonde_protocol::sonde::AGENT_EVENT_PREFIX) {
            return;
        }
        let socket_id = socket.to_string();
        let ev = WebhookEvent::ClientEvent { channel: channel.as_str(), event, data, socket_id: &socket_id, user_id };
        if let Some(ev) = Event::new(channel, &ev) {
            self.send(Arc::new(ev));
        }
    }

    /// A session started or stopped here (this node runs the sessions).
    pub fn session(&self, l: &Lifecycle) {
        let kind = if l.stopped_ms.is_some() { EventType::SondeSessionStopped } else { EventType::SondeSessionStarted };
        let Ok(channel) = host_channel(&l.host) else { return };
        if !self.wants(kind) {
            return;
        }
        let (c, host, session_id, started_by) = (channel.as_str(), &*l.host, l.id.as_str(), l.started_by);
        let ev = match l.stopped_ms {
            None => WebhookEvent::SondeSessionStarted { channel: c, host, session_id, started_by },
            Some(stop) => WebhookEvent::SondeSessionStopped { channel: c, host, session_id, started_by, duration_ms: stop.saturating_sub(l.started_ms) },
        };
        if let Some(ev) = Event::new(&channel, &ev) {
            self.send(Arc::new(ev));
        }
    }

    /// An agent went online or offline, cluster-wide as this node sees it.
    pub fn agent(&self, host: &str, online: bool, snapshot: Option<&str>) {
        let kind = if online { EventType::SondeAgentOnline } else { EventType::SondeAgentOffline };
        let Ok(channel) = host_channel(host) else { return };
        if !self.wants(kind) {
            return;
        }
        let facts = snapshot.and_then(|s| serde_json::from_str::<SnapshotFacts>(s).ok()).unwrap_or_default();
        let (c, install_id, agent_version) = (channel.as_str(), facts.install_id.as_deref(), facts.facts.agent_version.as_deref());
        let ev = if online {
            WebhookEvent::SondeAgentOnline { channel: c, host, install_id, agent_version }
        } else {
            WebhookEvent::SondeAgentOffline { channel: c, host, install_id, agent_version }
        };
        if let Some(ev) = Event::new(&channel, &ev) {
            self.send_cluster(ev);
        }
    }
}

/// What an agent event needs from the agent's latest snapshot.
#[derive(Default, serde::Deserialize)]
struct SnapshotFacts {
    #[serde(default)]
    install_id: Option<String>,
    #[serde(default)]
    facts: Facts,
}

#[derive(Default, serde::Deserialize)]
struct Facts {
    #[serde(default)]
    agent_version: Option<String>,
}

/// The hub's channel transitions. `#server-to-user-` channels are the relay's own.
impl Observer for Webhooks {
    fn changed(&self, channel: &ChannelName, transition: Transition<'_>) {
        let kind = match transition {
            Transition::Occupied => EventType::ChannelOccupied,
            Transition::Vacated => EventType::ChannelVacated,
            Transition::MemberAdded(_) => EventType::MemberAdded,
            Transition::MemberRemoved(_) => EventType::MemberRemoved,
            Transition::Count(_) => EventType::SubscriptionCount,
            Transition::CacheMiss => EventType::CacheMiss,
        };
        if !self.wants(kind) || channel.kind() == ChannelKind::ServerToUser {
            return;
        }
        let c = channel.as_str();
        let ev = match transition {
            Transition::Occupied => WebhookEvent::ChannelOccupied { channel: c },
            Transition::Vacated => WebhookEvent::ChannelVacated { channel: c },
            Transition::MemberAdded(user_id) => WebhookEvent::MemberAdded { channel: c, user_id },
            Transition::MemberRemoved(user_id) => WebhookEvent::MemberRemoved { channel: c, user_id },
            Transition::Count(n) => WebhookEvent::SubscriptionCount { channel: c, subscription_count: n },
            Transition::CacheMiss => WebhookEvent::CacheMiss { channel: c },
        };
        let Some(ev) = Event::new(channel, &ev) else { return };
        match transition {
            // A local subscription's own outcome: this node alone sees it.
            Transition::CacheMiss => self.send(Arc::new(ev)),
            Transition::Occupied | Transition::Vacated | Transition::MemberAdded(_) | Transition::MemberRemoved(_) | Transition::Count(_) => {
                self.send_cluster(ev)
            }
        }
    }
}

/// The HTTP client every target shares: HTTP/1.1, https verified against the system's roots
/// plus `ca_file` (never unverified), no redirects followed (a redirect is a failure,
/// retried), a few idle connections per target. Header names go out as Pusher writes them
/// (`X-Pusher-Signature`): PHP's `getallheaders()` keeps the case it receives, and the PHP SDK
/// looks them up by that spelling.
pub fn client(settings: &WebhookSettings) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_title_case_headers()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(settings.connections_per_target)
        .connect_timeout(Duration::from_millis(settings.timeout_ms))
        .user_agent(concat!("sonde-relay/", env!("CARGO_PKG_VERSION"), " (webhooks)"));
    // `Config::validate` read the file already; it can only fail here if it changed since.
    match settings.ca_file.as_deref().map(crate::config::webhooks::ca_certificates) {
        Some(Ok(certs)) => builder = certs.into_iter().fold(builder, |b, c| b.add_root_certificate(c)),
        Some(Err(e)) => tracing::error!(error = %e, "webhooks: https targets of the private CA will fail"),
        None => {}
    }
    match builder.build() {
        Ok(client) => client,
        Err(e) => {
            // Only the TLS backend can refuse; plain http targets must still be served.
            tracing::error!(error = %e, "webhooks: the https client could not be set up; only http targets will work");
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).http1_title_case_headers().build().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_https;
