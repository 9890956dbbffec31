//! What each other node reported, and applying its messages to the local apps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sonde_protocol::{ChannelName, SocketId};

use crate::apps::{App, Apps};
use crate::bus::Msg;
use crate::hub::{NodeId, Publish, Urgency};
use crate::sessions::{Clock, SessionInfo, Table};

/// Entries a node reported, by app.
#[derive(Default, Clone)]
struct Reported {
    counts: HashSet<(String, String)>,
    members: HashSet<(String, String, String)>,
    users: HashSet<(String, String)>,
    hosts: HashSet<(String, String)>,
    agents: HashSet<(String, String)>,
}

struct NodeView {
    last_seen: Instant,
    reported: Reported,
    /// Between `SyncStart` and `SyncDone`: what the node reports afresh.
    staging: Option<Reported>,
}

pub(super) struct Views {
    apps: Arc<Apps>,
    nodes: HashMap<NodeId, NodeView>,
}

fn channel(name: &str) -> Option<ChannelName> {
    ChannelName::parse_server(name).ok()
}

fn socket(s: &str) -> Option<SocketId> {
    s.parse().ok()
}

impl Views {
    pub(super) fn new(apps: Arc<Apps>) -> Self {
        Self { apps, nodes: HashMap::new() }
    }

    /// Other nodes heard from and not yet dropped.
    pub(super) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn view(&mut self, node: &NodeId) -> &mut NodeView {
        self.nodes.entry(node.clone()).or_insert_with(|| NodeView { last_seen: Instant::now(), reported: Reported::default(), staging: None })
    }

    fn track(&mut self, node: &NodeId, f: impl Fn(&mut Reported)) {
        let v = self.view(node);
        f(&mut v.reported);
        if let Some(s) = v.staging.as_mut() {
            f(s);
        }
    }

    /// Applies one message from `node`. Returns true for a `SyncDone` addressed to `me`.
    pub(super) fn apply(&mut self, node: &NodeId, app_id: &str, msg: Msg, me: &NodeId) -> bool {
        self.view(node).last_seen = Instant::now();
        let app = self.apps.by_id(app_id).cloned();
        let clock = Clock::now();
        match msg {
            Msg::Heartbeat | Msg::Hello => {}
            Msg::Bye => self.drop_node(node),
            Msg::SyncStart { .. } => self.view(node).staging = Some(Reported::default()),
            Msg::SyncDone { to } => {
                self.finish_sync(node);
                return *to == **me;
            }
            msg => {
                let Some(app) = app else { return false };
                self.apply_app(node, &app, msg, clock);
            }
        }
        false
    }

    /// Channel-level messages: publishes, counts, presence, users; the rest go on.
    fn apply_app(&mut self, node: &NodeId, app: &Arc<App>, msg: Msg, clock: Clock) {
        let id = app.id().to_owned();
        match msg {
            Msg::Publish { channel: ch, frame, except, sample } => publish(app, &ch, frame, except.as_deref(), sample),
            Msg::Count { channel: ch, count } => {
                if let Some(c) = channel(&ch) {
                    app.hub.remote_count(node, &c, count);
                    let key = (id, ch);
                    self.track(node, |r| {
                        if count == 0 {
                            r.counts.remove(&key);
                        } else {
                            r.counts.insert(key.clone());
                        }
                    });
                }
            }
            Msg::Join { channel: ch, user, info } => {
                if let Some(c) = channel(&ch) {
                    app.hub.remote_join(node, &c, user.as_str().into(), info.map(Arc::from));
                    let key = (id, ch, user);
                    self.track(node, |r| {
                        r.members.insert(key.clone());
                    });
                }
            }
            Msg::Leave { channel: ch, user } => {
                if let Some(c) = channel(&ch) {
                    app.hub.remote_leave(node, &c, &user);
                    let key = (id, ch, user);
                    self.track(node, |r| {
                        r.members.remove(&key);
                    });
                }
            }
            Msg::User { user, online } => {
                app.hub.remote_user(node, user.as_str().into(), online);
                let key = (id, user);
                self.track(node, |r| {
                    if online {
                        r.users.insert(key.clone());
                    } else {
                        r.users.remove(&key);
                    }
                });
            }
            Msg::Terminate { user } => {
                app.hub.terminate_user(&user);
            }
            Msg::Deliver { socket: s, channel, frame } => deliver(app, &s, channel.as_deref(), frame),
            msg => self.apply_sessions(node, app, msg, clock),
        }
    }

    /// Session and inventory messages: viewers and agents per host, directives, the table.
    fn apply_sessions(&mut self, node: &NodeId, app: &Arc<App>, msg: Msg, clock: Clock) {
        let id = app.id().to_owned();
        match msg {
            Msg::Host { host, viewers, agents } => {
                let agents: Vec<SocketId> = agents.iter().filter_map(|a| socket(a)).collect();
                let gone = viewers == 0 && agents.is_empty();
                app.apply(app.sessions.remote_host(node, &host, viewers, agents, clock));
                let key = (id, host);
                self.track(node, |r| {
                    if gone {
                        r.hosts.remove(&key);
                    } else {
                        r.hosts.insert(key.clone());
                    }
                });
            }
            Msg::Agent { host, connections, snapshot } => {
                app.inventory.remote(node, &host, connections, snapshot.as_deref(), clock.now_ms);
                let key = (id, host);
                self.track(node, |r| {
                    if connections == 0 {
                        r.agents.remove(&key);
                    } else {
                        r.agents.insert(key.clone());
                    }
                });
            }
            Msg::SessionStart { host, duration_s } => {
                if app.sessions.is_leader() {
                    let (_, actions) = app.sessions.start_for(&host, Duration::from_secs(duration_s), clock);
                    app.apply(actions);
                }
            }
            Msg::SessionStop { host } => {
                if app.sessions.is_leader() {
                    app.apply(app.sessions.stop(&host).into_iter().collect());
                }
            }
            Msg::Sessions { term, seq, sessions } => {
                let table = Table { term, seq, sessions: sessions.iter().map(SessionInfo::from).collect() };
                app.apply(app.sessions.accept(table, clock));
            }
            Msg::Directive { term, host, to, frame } => apply_directive(app, term, &host, to.as_deref(), frame),
            Msg::Cache { channel: ch, frame, ttl_ms } => {
                if let Some(c) = channel(&ch) {
                    app.hub.store_cache(&c, Bytes::from(frame), Instant::now() + Duration::from_millis(ttl_ms));
                }
            }
            Msg::Usage { usage } => app.usage.merge_remote(usage, clock.now_ms),
            Msg::Publish { .. } | Msg::Count { .. } | Msg::Join { .. } | Msg::Leave { .. } | Msg::User { .. } | Msg::Terminate { .. } | Msg::Deliver { .. } => {
            }
            Msg::Heartbeat | Msg::Hello | Msg::Bye | Msg::SyncStart { .. } | Msg::SyncDone { .. } => {}
        }
    }

    /// Removes what a node reported before a resync and did not report again.
    fn finish_sync(&mut self, node: &NodeId) {
        let Some(v) = self.nodes.get_mut(node) else { return };
        let Some(fresh) = v.staging.take() else { return };
        let old = std::mem::replace(&mut v.reported, fresh.clone());
        let stale = Reported {
            counts: old.counts.difference(&fresh.counts).cloned().collect(),
            members: old.members.difference(&fresh.members).cloned().collect(),
            users: old.users.difference(&fresh.users).cloned().collect(),
            hosts: old.hosts.difference(&fresh.hosts).cloned().collect(),
            agents: old.agents.difference(&fresh.agents).cloned().collect(),
        };
        self.remove(node, &stale);
    }

    /// Members go before counts, so a channel's last member is removed before it is vacated.
    fn remove(&self, node: &NodeId, r: &Reported) {
        let clock = Clock::now();
        for (app, ch, user) in &r.members {
            if let (Some(a), Some(c)) = (self.apps.by_id(app), channel(ch)) {
                a.hub.remote_leave(node, &c, user);
            }
        }
        for (app, ch) in &r.counts {
            if let (Some(a), Some(c)) = (self.apps.by_id(app), channel(ch)) {
                a.hub.remote_count(node, &c, 0);
            }
        }
        for (app, user) in &r.users {
            if let Some(a) = self.apps.by_id(app) {
                a.hub.remote_user(node, user.as_str().into(), false);
            }
        }
        for (app, host) in &r.hosts {
            if let Some(a) = self.apps.by_id(app) {
                a.apply(a.sessions.remote_host(node, host, 0, Vec::new(), clock));
            }
        }
        for (app, host) in &r.agents {
            if let Some(a) = self.apps.by_id(app) {
                a.inventory.remote(node, host, 0, None, clock.now_ms);
            }
        }
    }

    /// Forgets a node and everything it reported.
    pub(super) fn drop_node(&mut self, node: &NodeId) {
        if self.nodes.remove(node).is_none() {
            return;
        }
        let clock = Clock::now();
        for app in self.apps.iter() {
            app.hub.drop_node(node);
            app.sessions.drop_node(node, clock);
            app.inventory.drop_node(node, clock.now_ms);
        }
    }

    /// After our own link to Redis came back, nobody could have been heard meanwhile: start
    /// every node's silence count afresh.
    pub(super) fn heard_all_now(&mut self) {
        let now = Instant::now();
        for v in self.nodes.values_mut() {
            v.last_seen = now;
        }
    }

    /// Nodes silent for longer than `timeout`.
    pub(super) fn silent(&self, timeout: Duration) -> Vec<NodeId> {
        let now = Instant::now();
        self.nodes.iter().filter(|(_, v)| now.duration_since(v.last_seen) > timeout).map(|(n, _)| n.clone()).collect()
    }
}

/// A directive from the node running the sessions, for this node's subscribers of the host
/// channel (or one of its connections); dropped when a newer leader has been heard since.
fn apply_directive(app: &App, term: u64, host: &str, to: Option<&str>, frame: String) {
    if app.sessions.stale(term) {
        tracing::debug!(term, host, "cluster: directive of a replaced leader dropped");
        return;
    }
    app.sessions.note_term(term);
    let Ok(channel) = sonde_protocol::sonde::host_channel(host) else { return };
    match to {
        None => {
            let d = app.hub.publish(&channel, Publish::to_all(Bytes::from(frame)));
            app.metrics.messages_out.inc_by(d.delivered as u64);
        }
        Some(s) => {
            if let Some(conn) = socket(s).and_then(|s| app.hub.connection(s)) {
                conn.outbox.push(Bytes::from(frame));
                app.metrics.messages_out.inc();
            }
        }
    }
}

/// Another node's publish, to this node's subscribers of the channel.
fn publish(app: &App, ch: &str, frame: String, except: Option<&str>, sample: bool) {
    let Some(ch) = channel(ch) else { return };
    let urgency = if sample { Urgency::Conflatable } else { Urgency::Always };
    let p = Publish { frame: Bytes::from(frame), except: except.and_then(socket), urgency };
    app.stream_seen(&ch, &p);
    let d = app.hub.publish(&ch, p);
    app.metrics.messages_out.inc_by(d.delivered as u64);
}

/// A frame for one socket of this node (a backfill for a late viewer): only to a subscriber
/// of the channel the sender named, so an agent cannot reach other sockets of the app through
/// another node.
fn deliver(app: &App, s: &str, channel: Option<&str>, frame: String) {
    let channel = channel.and_then(|c| ChannelName::parse(c).ok());
    let to = socket(s).filter(|id| channel.as_ref().is_some_and(|c| app.hub.is_subscribed(c, *id)));
    if let Some((to, conn)) = to.and_then(|id| Some((id, app.hub.connection(id)?))) {
        let frame = Bytes::from(frame);
        app.backfill_reached(to, &frame);
        conn.outbox.push(frame);
    }
}
