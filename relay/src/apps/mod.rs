//! The apps (accounts) a relay serves, by key and by id.

pub mod listing;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::AppConfig;
use crate::hub::{Hub, HubOptions, Lanes};
use bytes::Bytes;
use sonde_protocol::frame::json_string;
use sonde_protocol::sonde::{host_channel, host_of, EVENT_BACKFILL, EVENT_SESSION};
use sonde_protocol::{ChannelName, ServerFrame, SocketId};

use crate::bus::Link;
use crate::bus::Msg;
use crate::hub::{Change, Delivery, Publish, Urgency};
use crate::limits::Limiters;
use crate::sessions::inventory::{page, pages, Inventory};
use crate::sessions::Clock;
use crate::sessions::{Action, SessionTiming, Sessions, Stream};
use crate::tokens::INVENTORY_CHANNEL;
use crate::webhooks::{WebhookSettings, Webhooks};

/// Frames are JSON text: this never loses anything.
fn utf8(frame: &Bytes) -> String {
    String::from_utf8_lossy(frame).into_owned()
}

/// Whether an encoded event frame is `event`: `protocol` writes the event name first.
fn is_event(frame: &[u8], event: &str) -> bool {
    frame.strip_prefix(b"{\"event\":\"".as_slice()).is_some_and(|rest| rest.starts_with(event.as_bytes()) && rest.get(event.len()) == Some(&b'"'))
}

use crate::metrics::{AppMetrics, Metrics};
use crate::tokens::Verifier;
/// The event dashboards receive inventory pages as.
pub use sonde_protocol::sonde::EVENT_INVENTORY;

/// One app: its configuration, its fan-out core and its metric handles.
pub struct App {
    pub config: AppConfig,
    pub hub: Hub,
    pub metrics: AppMetrics,
    pub tokens: Verifier,
    pub limiters: Limiters,
    pub sessions: Sessions,
    pub inventory: Inventory,
    /// The app's webhooks, when it has targets.
    pub webhooks: Option<Arc<Webhooks>>,
    /// The cluster bus, when the relay runs with Redis.
    cluster: OnceLock<Link>,
    /// Viewers waiting for their first sample, to time session starts.
    pub first_samples: crate::insight::FirstSamples,
    /// The hub's timings, for the live relay page.
    pub meter: Arc<crate::insight::AppMeter>,
    /// Usage per minute, for seven days.
    pub usage: crate::insight::usage::Usage,
    /// This node's dashboards, whose outboxes size the inventory's update flushes.
    pub dashboards: crate::sessions::dashboards::Dashboards,
}

/// The fan-out lanes are behind by so many deliveries: the API answers 503 (under a second of
/// work when the lanes coalesce, as they do when behind).
const BUSY_BACKLOG: usize = 1_000_000;

/// An event published through the HTTP API, checked by the edge and ready for fan-out.
pub struct ApiEvent {
    pub name: String,
    /// The event's data as a JSON string literal.
    pub data_json: String,
    pub channels: Vec<ChannelName>,
    /// The publisher's own connection, left out of the fan-out.
    pub except: Option<SocketId>,
}

/// The fan-out lanes are far behind: the API answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutBusy;

/// Fan-out lanes of their own for apps built outside a relay (tests, tools): one per core.
fn own_lanes() -> Arc<Lanes> {
    Lanes::start(None).expect("start the fan-out threads")
}

/// What every app of one relay shares: its metrics, session timing, webhook settings and
/// fan-out lanes.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub metrics: &'a Metrics,
    pub timing: SessionTiming,
    pub hooks: &'a WebhookSettings,
    pub lanes: &'a Arc<Lanes>,
}

impl App {
    pub fn new(config: AppConfig, metrics: &Metrics) -> Self {
        Self::with_timing(config, metrics, SessionTiming::default())
    }

    pub fn with_timing(config: AppConfig, metrics: &Metrics, timing: SessionTiming) -> Self {
        Self::build(config, Shared { metrics, timing, hooks: &WebhookSettings::default(), lanes: &own_lanes() })
    }

    /// One app of a relay, fanning out through the relay's lanes.
    pub fn build(config: AppConfig, shared: Shared<'_>) -> Self {
        let Shared { metrics, timing, hooks, lanes } = shared;
        let options = HubOptions {
            subscription_count: config.subscription_count,
            max_presence_members: config.limits.max_presence_members,
            cache_ttl: Duration::from_secs(config.limits.cache_ttl_s),
        };
        let hub = Hub::new(options, lanes.clone());
        let app_metrics = metrics.for_app(&config.id);
        let meter = metrics.insight.meter_for(&config.id, app_metrics.conflated.clone());
        hub.measure(meter.clone());
        let first_samples = crate::insight::FirstSamples::new(metrics.insight.session_start(&config.id));
        // Keys were checked by `Config::validate`.
        let tokens = config.verifier().expect("validated config");
        let limiters = Limiters::new(&config.limits);
        let inventory = Inventory::default();
        let webhooks = Webhooks::new(&config, hooks, metrics);
        if let Some(w) = &webhooks {
            hub.observe(w.clone());
            let w = w.clone();
            inventory.observe(Box::new(move |host, online, snapshot| w.agent(host, online, snapshot)));
        }
        Self {
            config,
            hub,
            metrics: app_metrics,
            tokens,
            limiters,
            sessions: Sessions::new(timing),
            inventory,
            webhooks,
            cluster: OnceLock::new(),
            first_samples,
            meter,
            usage: Default::default(),
            dashboards: Default::default(),
        }
    }

    /// Sends what the session controller asked for, here and on the other nodes (with the
    /// leader term it speaks for, so a deposed leader's directives are dropped there), then
    /// announces the leader's table if it changed. Directives are control frames: they are
    /// never conflated or dropped (a connection that cannot take one is closed instead).
    pub fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            let (host, to, directive, term) = match &action {
                Action::Publish { host, directive, term } => (host, None, directive, *term),
                Action::Send { host, to, directive, term } => (host, Some(*to), directive, *term),
            };
            let Ok(channel) = host_channel(host) else { continue };
            let data = json_string(&serde_json::to_string(directive).expect("directive serialises"));
            let frame = ServerFrame::Event { event: EVENT_SESSION, channel: Some(channel.as_str()), data_json: &data, user_id: None }.encode();
            let remote = |to: Option<SocketId>| Msg::Directive { term, host: host.to_string(), to: to.map(|s| s.to_string()), frame: utf8(&frame) };
            match to.map(|s| (s, self.hub.connection(s))) {
                None => {
                    self.announce(remote(None));
                    let d = self.hub.publish(&channel, Publish::to_all(frame.clone()));
                    self.metrics.messages_out.inc_by(d.delivered as u64);
                }
                Some((_, Some(conn))) => {
                    conn.outbox.push(frame.clone());
                    self.metrics.messages_out.inc();
                }
                Some((socket, None)) => self.announce(remote(Some(socket))),
            }
        }
        self.metrics.sessions.set(self.sessions.count() as i64);
        self.announce_table();
        let lifecycle = self.sessions.take_lifecycle();
        self.usage.sessions_started(lifecycle.iter().filter(|l| l.stopped_ms.is_none()).count());
        if let Some(w) = &self.webhooks {
            // Every change of role comes through here (the cluster applies what `lead`,
            // `follow` and `alone` return).
            w.set_role(self.sessions.role());
            lifecycle.iter().for_each(|l| w.session(l));
        }
    }

    /// Fans HTTP publishes out, in order. Queueing never waits for a socket: small channels
    /// are written to at once, large ones handed to the fan-out lanes, so the API answers
    /// before a large fan-out is done. Refused while the lanes are far behind.
    pub fn publish_events<'a>(&self, events: impl IntoIterator<Item = &'a ApiEvent>) -> Result<(), FanoutBusy> {
        if self.hub.lanes().backlog() > BUSY_BACKLOG {
            return Err(FanoutBusy);
        }
        events.into_iter().for_each(|ev| self.fan_out(ev));
        Ok(())
    }

    /// Queues every subscriber's copy of an event (never waiting for a socket).
    fn fan_out(&self, ev: &ApiEvent) {
        let started = std::time::Instant::now();
        for ch in &ev.channels {
            let frame = ServerFrame::Event { event: &ev.name, channel: Some(ch.as_str()), data_json: &ev.data_json, user_id: None }.encode();
            let len = frame.len() as u64;
            let d = self.publish(ch, Publish { frame, except: ev.except, urgency: Urgency::Always });
            self.metrics.messages_out.inc_by(d.delivered as u64);
            self.metrics.bytes_out.inc_by(len * d.delivered as u64);
        }
        self.metrics.publish_duration.observe(started.elapsed().as_secs_f64());
    }

    /// What this app's counters and tables say now, for its usage minutes.
    pub fn usage_reading(&self, unix_ms: u64) -> crate::insight::usage::Reading {
        let gauge = |v: i64| u64::try_from(v).unwrap_or(0);
        crate::insight::usage::Reading {
            unix_ms,
            connections: gauge(self.metrics.connections.get()),
            messages_in: self.metrics.messages_in.get(),
            deliveries: self.metrics.messages_out.get(),
            agents_online: gauge(self.metrics.agents_online.get()),
            sessions: gauge(self.metrics.sessions.get()),
        }
    }

    pub fn set_cluster(&self, link: Link) {
        let _ = self.cluster.set(link);
    }

    pub fn cluster(&self) -> Option<&Link> {
        self.cluster.get()
    }

    /// Tells the other nodes, when there is a cluster.
    pub fn announce(&self, msg: Msg) {
        self.to_cluster(|send| send(msg));
    }

    /// The one place that knows whether there is a cluster: `build` runs (and its messages
    /// are made) only when there is one, handed what sends a message to the other nodes.
    fn to_cluster(&self, build: impl FnOnce(&mut dyn FnMut(Msg))) {
        if let Some(link) = self.cluster.get() {
            build(&mut |msg| link.send(&self.config.id, msg));
        }
    }

    /// Fans a frame out here and on every other node.
    pub fn publish(&self, channel: &ChannelName, p: Publish) -> Delivery {
        self.usage.published();
        self.stream_seen(channel, &p);
        self.to_cluster(|send| {
            if self.wanted_elsewhere(channel) {
                send(Msg::Publish {
                    channel: channel.to_string(),
                    frame: utf8(&p.frame),
                    except: p.except.map(|s| s.to_string()),
                    sample: p.urgency == Urgency::Conflatable,
                });
            }
        });
        self.hub.publish(channel, p)
    }

    /// Whether a publish on `channel` must go to the other nodes. A host channel's events (a
    /// sample a second while streamed, a snapshot a minute) are wanted only where someone
    /// watches that host, which is rarely on another node: they cross the bus only while
    /// another node has reported subscribers (half of a fleet's bus messages otherwise). A
    /// viewer there cannot miss the start of a stream: its node reports the subscription
    /// through Redis before it reports the viewer that makes the session start, and one Redis
    /// delivers in the order it was told.
    fn wanted_elsewhere(&self, channel: &ChannelName) -> bool {
        host_of(channel.as_str()).is_none() || self.hub.has_remote_subscribers(channel)
    }

    /// One frame for one connection, on this node or another, if it is subscribed to
    /// `channel` (false when it is here and is not).
    pub fn deliver(&self, channel: &ChannelName, to: SocketId, frame: Bytes) -> bool {
        match self.hub.connection(to) {
            Some(_) if !self.hub.is_subscribed(channel, to) => return false,
            Some(conn) => {
                self.backfill_reached(to, &frame);
                conn.outbox.push(frame);
                self.metrics.messages_out.inc();
            }
            None => self.announce(Msg::Deliver { socket: to.to_string(), channel: Some(channel.to_string()), frame: utf8(&frame) }),
        }
        true
    }

    /// A frame on its way to this node's subscribers of a channel: a host's samples or
    /// backfill settle the backfills owed to viewers that joined while its agent was away.
    pub fn stream_seen(&self, channel: &ChannelName, p: &Publish) {
        if p.urgency == Urgency::Conflatable {
            self.first_samples.sample_seen(channel, std::time::Instant::now());
        }
        if !self.sessions.owes() {
            return;
        }
        let Some(host) = host_of(channel.as_str()) else { return };
        let seen = match p.urgency {
            Urgency::Conflatable => Stream::Sample,
            Urgency::Always if is_event(&p.frame, EVENT_BACKFILL) => Stream::Backfill,
            Urgency::Always => return,
        };
        self.apply(self.sessions.stream_seen(host, seen, Clock::now(), |s| self.hub.connection(s).is_some()));
    }

    /// A frame on its way to one of this node's connections.
    pub fn backfill_reached(&self, to: SocketId, frame: &Bytes) {
        if self.sessions.owes() && is_event(frame, EVENT_BACKFILL) {
            self.sessions.backfilled(to);
        }
    }

    /// Closes a user's connections here and on every other node.
    pub fn terminate_user(&self, user: &str) {
        self.hub.terminate_user(user);
        self.announce(Msg::Terminate { user: user.to_owned() });
    }

    pub fn announce_change(&self, channel: &ChannelName, change: &Change) {
        // A member leaves before the count drops and joins after it rises, so every node sees
        // a channel's last member removed before it is vacated, and occupied before its first
        // member is added (the order webhooks report them in).
        self.to_cluster(|send| {
            let name = channel.to_string();
            if let Some(u) = &change.left {
                send(Msg::Leave { channel: name.clone(), user: u.to_string() });
            }
            send(Msg::Count { channel: name.clone(), count: change.local_count });
            if let Some(p) = &change.joined {
                send(Msg::Join { channel: name, user: p.user_id.to_string(), info: p.user_info.as_deref().map(str::to_owned) });
            }
        });
    }

    pub fn announce_user(&self, user: &str, online: bool) {
        self.announce(Msg::User { user: user.to_owned(), online });
    }

    /// This node's viewers and agents of a host, for the session leader.
    pub fn announce_host(&self, host: &str) {
        self.to_cluster(|send| {
            let (viewers, agents) = self.sessions.local_host(host);
            send(Msg::Host { host: host.to_owned(), viewers, agents: agents.iter().map(ToString::to_string).collect() });
        });
    }

    /// An agent connected here: its connection count and latest snapshot, for the inventory.
    pub fn announce_agent(&self, host: &str) {
        self.to_cluster(|send| {
            let (connections, snapshot) = self.inventory.local(host);
            send(Msg::Agent { host: host.to_owned(), connections, snapshot: snapshot.map(|s| s.to_string()) });
        });
    }

    /// The leader's session table, when it changed and is due (see `Sessions::take_changes`).
    pub fn announce_table(&self) {
        self.to_cluster(|send| {
            if let Some(table) = self.sessions.take_changes(Clock::now()) {
                send(Msg::from(&table));
            }
        });
    }

    /// Inventory pages as frames of the inventory channel.
    pub fn inventory_frames(entries: &[String], full: bool) -> Vec<Bytes> {
        pages(entries, full)
            .iter()
            .map(|page| {
                let data = json_string(page);
                ServerFrame::Event { event: EVENT_INVENTORY, channel: Some(INVENTORY_CHANNEL), data_json: &data, user_id: None }.encode()
            })
            .collect()
    }

    /// One page of the inventory as a frame of the inventory channel.
    pub fn inventory_page(entries: &[String], full: bool, last: bool) -> Bytes {
        let data = json_string(&page(entries, full, last));
        ServerFrame::Event { event: EVENT_INVENTORY, channel: Some(INVENTORY_CHANNEL), data_json: &data, user_id: None }.encode()
    }

    /// Publishes the inventory changes since the last flush to every dashboard.
    /// Called once a second, and at every tick while changes are waiting. A flush queues only
    /// what the fullest dashboard's outbox has room for below half its bound (a listing adds
    /// a page only below an eighth, its first a quarter at most: three quarters in all), so
    /// dashboards that read drain a backlog at the rate they read; one that stopped reading
    /// stops counting after a while and is closed when its outbox overflows
    /// (`sessions::dashboards`).
    pub fn flush_inventory(&self) {
        let Ok(channel) = ChannelName::parse(INVENTORY_CHANNEL) else { return };
        let limit = self.config.limits.max_outbox_bytes;
        let room = self.dashboards.room(limit, std::time::Instant::now(), |c| self.hub.is_subscribed(&channel, c.socket_id));
        if room == 0 {
            return;
        }
        let changes = self.inventory.take_changes(room);
        if changes.is_empty() {
            return;
        }
        for frame in Self::inventory_frames(&changes, false) {
            let d = self.hub.publish(&channel, Publish::to_all(frame));
            self.metrics.messages_out.inc_by(d.delivered as u64);
        }
    }

    /// Agents online, for the gauge (once a second).
    pub fn count_agents(&self) {
        self.metrics.agents_online.set(self.inventory.online_count() as i64);
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }
}

#[derive(Default)]
pub struct Apps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl Apps {
    pub fn new(configs: &[AppConfig], metrics: &Metrics) -> Self {
        Self::with_timing(configs, metrics, SessionTiming::default())
    }

    pub fn with_timing(configs: &[AppConfig], metrics: &Metrics, timing: SessionTiming) -> Self {
        Self::build(configs, Shared { metrics, timing, hooks: &WebhookSettings::default(), lanes: &own_lanes() })
    }

    /// A relay's apps; every app's hub fans out through the relay's `lanes`.
    pub fn build(configs: &[AppConfig], shared: Shared<'_>) -> Self {
        let mut apps = Self::default();
        for c in configs {
            let app = Arc::new(App::build(c.clone(), shared));
            apps.by_key.insert(c.key.clone(), app.clone());
            apps.by_id.insert(c.id.clone(), app);
        }
        apps
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.by_id.values()
    }
}
