//! One channel: its subscribers, presence members and cached event, plus what other cluster
//! nodes reported about it (their subscriber counts and presence members).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sonde_protocol::frame::Member;
use sonde_protocol::{ChannelKind, ChannelName, ServerFrame, SocketId};

use super::lanes::{Lanes, Shares};
use super::{Conn, Delivery, HubOptions, Meter, NodeId, Observer, Pass, PassReport, PresenceUser, Publish, Pushed, Transition, Urgency};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("Existing subscription to channel {0}")]
    AlreadySubscribed(String),
    #[error("presence channel is full ({0} members)")]
    PresenceFull(usize),
    /// The channel was being removed; the caller looks it up again.
    #[error("channel retired")]
    Retired,
}

/// Counts of a channel for the HTTP API (cluster-wide when other nodes report theirs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    pub subscription_count: usize,
    /// Distinct users; presence channels only.
    pub user_count: Option<usize>,
}

/// What a local subscription change means for the rest of the cluster.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// This node's subscriber count of the channel after the change.
    pub local_count: usize,
    /// A user's first connection on this node joined (presence).
    pub joined: Option<PresenceUser>,
    /// A user's last connection on this node left (presence).
    pub left: Option<Arc<str>>,
}

struct Subscriber {
    conn: Arc<Conn>,
    user: Option<Arc<str>>,
}

struct MemberEntry {
    info: Option<Arc<str>>,
    connections: u32,
}

struct RemoteMember {
    info: Option<Arc<str>>,
    nodes: HashSet<NodeId>,
}

#[derive(Default)]
struct State {
    subscribers: HashMap<SocketId, Subscriber>,
    /// Presence on this node: user id → info and how many local connections it has. `order`
    /// is join order, which `subscription_succeeded` reports.
    members: HashMap<Arc<str>, MemberEntry>,
    order: Vec<Arc<str>>,
    /// Presence on other nodes.
    remote_members: HashMap<Arc<str>, RemoteMember>,
    remote_counts: HashMap<NodeId, usize>,
    cached: Option<(Bytes, Instant)>,
    retired: bool,
}

impl State {
    fn present(&self, user: &str) -> bool {
        self.members.contains_key(user) || self.remote_members.contains_key(user)
    }

    fn distinct_users(&self) -> usize {
        self.members.len() + self.remote_members.keys().filter(|u| !self.members.contains_key(*u)).count()
    }

    fn total(&self) -> usize {
        self.subscribers.len() + self.remote_counts.values().sum::<usize>()
    }

    fn broadcast(&self, frame: &Bytes) {
        for s in self.subscribers.values() {
            s.conn.outbox.push(frame.clone());
        }
    }
}

impl Channel {
    /// Whether another node has reported subscribers of this channel.
    pub(super) fn has_remote_subscribers(&self) -> bool {
        !self.state.read().remote_counts.is_empty()
    }

    /// Whether `socket` is subscribed here on this node.
    pub(super) fn has_subscriber(&self, socket: SocketId) -> bool {
        self.state.read().subscribers.contains_key(&socket)
    }
}

pub(super) struct Channel {
    name: ChannelName,
    kind: ChannelKind,
    state: RwLock<State>,
    /// The subscribers split by fan-out lane, built on the first large publish after a change.
    shares: Mutex<Option<Arc<Shares>>>,
    /// Publishes handed to lanes and not yet written: until they are, every publish goes the
    /// same way, so none overtakes another.
    in_flight: Arc<AtomicUsize>,
    /// The relay's fan-out lanes, which a large publish is handed to.
    lanes: Arc<Lanes>,
}

impl Channel {
    pub(super) fn new(name: ChannelName, lanes: Arc<Lanes>) -> Self {
        let kind = name.kind();
        Self { name, kind, state: RwLock::default(), shares: Mutex::new(None), in_flight: Arc::default(), lanes }
    }

    pub(super) fn name(&self) -> &ChannelName {
        &self.name
    }

    fn counts_enabled(&self, opts: &HubOptions) -> bool {
        opts.subscription_count && self.kind != ChannelKind::Presence && self.kind != ChannelKind::ServerToUser
    }

    pub(super) fn subscribe(
        &self,
        conn: &Arc<Conn>,
        presence: Option<PresenceUser>,
        opts: &HubOptions,
        obs: Option<&dyn Observer>,
    ) -> Result<Change, SubscribeError> {
        let mut st = self.state.write();
        if st.retired {
            return Err(SubscribeError::Retired);
        }
        if st.subscribers.contains_key(&conn.socket_id) {
            return Err(SubscribeError::AlreadySubscribed(self.name.to_string()));
        }
        let ch = self.name.as_str();
        let user = presence.as_ref().map(|p| p.user_id.clone());
        let mut change = Change::default();
        let total_before = st.total();
        if let Some(p) = presence {
            if let Some(m) = st.members.get_mut(&p.user_id) {
                m.connections += 1;
            } else {
                let present = st.present(&p.user_id);
                if !present && st.distinct_users() >= opts.max_presence_members {
                    return Err(SubscribeError::PresenceFull(opts.max_presence_members));
                }
                st.members.insert(p.user_id.clone(), MemberEntry { info: p.user_info.clone(), connections: 1 });
                st.order.push(p.user_id.clone());
                if total_before == 0 {
                    self.tell(obs, Transition::Occupied);
                }
                if !present {
                    let frame = ServerFrame::MemberAdded { channel: ch, member: Member { user_id: &p.user_id, user_info: p.user_info.as_deref() } }.encode();
                    st.broadcast(&frame);
                    self.tell(obs, Transition::MemberAdded(&p.user_id));
                }
                change.joined = Some(p);
            }
            let remote = st.remote_members.iter().filter(|(u, _)| !st.members.contains_key(*u));
            let members: Vec<Member<'_>> = st
                .order
                .iter()
                .map(|u| Member { user_id: u, user_info: st.members[u].info.as_deref() })
                .chain(remote.map(|(u, r)| Member { user_id: u, user_info: r.info.as_deref() }))
                .collect();
            conn.outbox.push(ServerFrame::PresenceSucceeded { channel: ch, members: &members }.encode());
        } else {
            conn.outbox.push(ServerFrame::SubscriptionSucceeded { channel: ch }.encode());
        }
        if total_before == 0 && change.joined.is_none() {
            self.tell(obs, Transition::Occupied);
        }
        if self.name.is_cache() {
            match &st.cached {
                Some((frame, until)) if *until > Instant::now() => {
                    conn.outbox.push(frame.clone());
                }
                _ => {
                    conn.outbox.push(ServerFrame::CacheMiss { channel: ch }.encode());
                    self.tell(obs, Transition::CacheMiss);
                }
            }
        }
        st.subscribers.insert(conn.socket_id, Subscriber { conn: conn.clone(), user });
        *self.shares.lock() = None;
        change.local_count = st.subscribers.len();
        if self.counts_enabled(opts) {
            st.broadcast(&ServerFrame::SubscriptionCount { channel: ch, count: st.total() }.encode());
        }
        self.tell(obs, Transition::Count(st.total()));
        Ok(change)
    }

    /// Tells the observer, if any, while the state lock is held (so in order per channel).
    fn tell(&self, obs: Option<&dyn Observer>, t: Transition<'_>) {
        if let Some(o) = obs {
            o.changed(&self.name, t);
        }
    }

    /// Returns `None` when the connection was not subscribed.
    pub(super) fn unsubscribe(&self, socket: SocketId, opts: &HubOptions, obs: Option<&dyn Observer>) -> Option<Change> {
        let mut st = self.state.write();
        let sub = st.subscribers.remove(&socket)?;
        *self.shares.lock() = None;
        let mut change = Change::default();
        if let Some(user) = sub.user {
            let gone = match st.members.get_mut(&user) {
                Some(m) if m.connections > 1 => {
                    m.connections -= 1;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if gone {
                st.members.remove(&user);
                st.order.retain(|u| *u != user);
                if !st.present(&user) {
                    st.broadcast(&ServerFrame::MemberRemoved { channel: self.name.as_str(), user_id: &user }.encode());
                    self.tell(obs, Transition::MemberRemoved(&user));
                }
                change.left = Some(user);
            }
        }
        change.local_count = st.subscribers.len();
        if self.counts_enabled(opts) && !st.subscribers.is_empty() {
            st.broadcast(&ServerFrame::SubscriptionCount { channel: self.name.as_str(), count: st.total() }.encode());
        }
        let total = st.total();
        self.tell(obs, Transition::Count(total));
        if total == 0 {
            self.tell(obs, Transition::Vacated);
        }
        Some(change)
    }

    /// Another node's first connection of `user` joined this presence channel.
    pub(super) fn remote_join(&self, node: &NodeId, user: Arc<str>, info: Option<Arc<str>>, obs: Option<&dyn Observer>) {
        let mut st = self.state.write();
        let present = st.present(&user);
        let entry = st.remote_members.entry(user.clone()).or_insert_with(|| RemoteMember { info: info.clone(), nodes: HashSet::new() });
        entry.nodes.insert(node.clone());
        if !present {
            let frame = ServerFrame::MemberAdded { channel: self.name.as_str(), member: Member { user_id: &user, user_info: info.as_deref() } }.encode();
            st.broadcast(&frame);
            self.tell(obs, Transition::MemberAdded(&user));
        }
    }

    /// Another node's last connection of `user` left (or the node is gone).
    pub(super) fn remote_leave(&self, node: &NodeId, user: &str, obs: Option<&dyn Observer>) {
        let mut st = self.state.write();
        let Some(entry) = st.remote_members.get_mut(user) else { return };
        entry.nodes.remove(node);
        if entry.nodes.is_empty() {
            st.remote_members.remove(user);
            if !st.present(user) {
                st.broadcast(&ServerFrame::MemberRemoved { channel: self.name.as_str(), user_id: user }.encode());
                self.tell(obs, Transition::MemberRemoved(user));
            }
        }
    }

    /// Another node's subscriber count of this channel.
    pub(super) fn remote_count(&self, node: &NodeId, count: usize, opts: &HubOptions, obs: Option<&dyn Observer>) {
        let mut st = self.state.write();
        let before = st.total();
        if count == 0 {
            st.remote_counts.remove(node);
        } else {
            st.remote_counts.insert(node.clone(), count);
        }
        let total = st.total();
        if self.counts_enabled(opts) && total != before && !st.subscribers.is_empty() {
            st.broadcast(&ServerFrame::SubscriptionCount { channel: self.name.as_str(), count: total }.encode());
        }
        if total != before {
            if before == 0 {
                self.tell(obs, Transition::Occupied);
            }
            self.tell(obs, Transition::Count(total));
            if total == 0 {
                self.tell(obs, Transition::Vacated);
            }
        }
    }

    /// Forgets everything a node reported: its members first, then its subscribers, so a
    /// channel's last member is removed before the channel is vacated.
    pub(super) fn drop_node(&self, node: &NodeId, opts: &HubOptions, obs: Option<&dyn Observer>) {
        let users: Vec<Arc<str>> = self.state.read().remote_members.iter().filter(|(_, m)| m.nodes.contains(node)).map(|(u, _)| u.clone()).collect();
        for u in users {
            self.remote_leave(node, &u, obs);
        }
        self.remote_count(node, 0, opts, obs);
    }

    /// What this node has locally, to announce to the cluster: count and presence members.
    pub(super) fn local_state(&self) -> (usize, Vec<PresenceUser>) {
        let st = self.state.read();
        let members = st.order.iter().map(|u| PresenceUser { user_id: u.clone(), user_info: st.members[u].info.clone() }).collect();
        (st.subscribers.len(), members)
    }

    pub(super) fn publish(&self, p: Publish, cache_until: Option<Instant>, meter: Option<&Arc<dyn Meter>>) -> Delivery {
        let mut d = Delivery::default();
        if let Some(until) = cache_until {
            let mut st = self.state.write();
            st.cached = Some((p.frame.clone(), until));
            self.fan_out(&st, &p, &mut d, meter);
        } else {
            let st = self.state.read();
            self.fan_out(&st, &p, &mut d, meter);
        }
        d
    }

    /// Up to `DIRECT_FANOUT_MAX` subscribers, the publisher writes to their sockets itself;
    /// beyond, the lanes do (see `lanes`), on every core and without waking each connection.
    /// With a meter, the clock is read once when the publish comes in and once when the
    /// publisher's own pass ends (the lanes time theirs).
    fn fan_out(&self, st: &State, p: &Publish, d: &mut Delivery, meter: Option<&Arc<dyn Meter>>) {
        let reached = st.subscribers.len() - usize::from(p.except.is_some_and(|e| st.subscribers.contains_key(&e)));
        let accepted = meter.filter(|_| reached > 0).map(|_| Instant::now());
        if st.subscribers.len() > DIRECT_FANOUT_MAX || self.in_flight.load(Ordering::Acquire) > 0 {
            let share = self.shares.lock().get_or_insert_with(|| Arc::new(Shares::new(&self.lanes, st.subscribers.values().map(|s| &s.conn)))).clone();
            let timed = meter.zip(accepted).map(|(m, at)| (m.clone(), at));
            self.lanes.dispatch(&share, &self.name, p, &self.in_flight, timed);
            d.delivered += reached;
            return;
        }
        self.write_each(st, p, d);
        if let (Some(m), Some(accepted)) = (meter, accepted) {
            let elapsed = accepted.elapsed();
            m.pass(&PassReport {
                pass: Pass::Direct,
                channel: &self.name,
                subscribers: reached,
                bytes: p.frame.len(),
                frames: 1,
                backlog: self.lanes.backlog(),
                lanes: self.lanes.count(),
                accepted,
                elapsed,
            });
            if d.conflated > 0 {
                m.conflated(d.conflated);
            }
        }
    }

    /// The publisher's own pass: each subscriber's copy written or queued in turn.
    fn write_each(&self, st: &State, p: &Publish, d: &mut Delivery) {
        for (id, s) in &st.subscribers {
            if Some(*id) == p.except {
                continue;
            }
            let pushed = match p.urgency {
                Urgency::Always => s.conn.outbox.push(p.frame.clone()),
                Urgency::Conflatable => s.conn.outbox.push_sample(&self.name, p.frame.clone()),
            };
            match pushed {
                Pushed::Queued => d.delivered += 1,
                Pushed::Conflated => d.conflated += 1,
                Pushed::Refused => d.refused += 1,
            }
        }
    }

    pub(super) fn info(&self) -> ChannelInfo {
        let st = self.state.read();
        ChannelInfo { subscription_count: st.total(), user_count: (self.kind == ChannelKind::Presence).then(|| st.distinct_users()) }
    }

    pub(super) fn user_ids(&self) -> Vec<Arc<str>> {
        let st = self.state.read();
        let mut ids = st.order.clone();
        ids.extend(st.remote_members.keys().filter(|u| !st.members.contains_key(*u)).cloned());
        ids
    }

    /// Keeps a cache channel's last event without delivering it (a node joining the cluster).
    pub(super) fn store_cache(&self, frame: Bytes, until: Instant) {
        self.state.write().cached = Some((frame, until));
    }

    /// The live cached event and when it expires.
    pub(super) fn cached(&self, now: Instant) -> Option<(Bytes, Instant)> {
        self.state.read().cached.clone().filter(|(_, until)| *until > now)
    }

    pub(super) fn expire_cache(&self, now: Instant) {
        let mut st = self.state.write();
        if st.cached.as_ref().is_some_and(|(_, until)| *until <= now) {
            st.cached = None;
        }
    }

    /// Marks an empty channel (no subscriber here or elsewhere, nothing cached) as retired;
    /// returns whether it is.
    pub(super) fn retire_if_empty(&self, now: Instant) -> bool {
        let mut st = self.state.write();
        let cache_live = st.cached.as_ref().is_some_and(|(_, until)| *until > now);
        if st.subscribers.is_empty() && !cache_live && st.remote_counts.is_empty() && st.remote_members.is_empty() {
            st.retired = true;
        }
        st.retired
    }
}

/// Up to this many subscribers, a publisher writes to their sockets itself.
const DIRECT_FANOUT_MAX: usize = 16;
