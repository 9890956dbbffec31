//! One channel: its subscribers, presence members and cached event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;
use sonde_protocol::frame::Member;
use sonde_protocol::{ChannelKind, ChannelName, ServerFrame, SocketId};

use super::{Conn, Delivery, HubOptions, PresenceUser, Pushed, Urgency};

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

/// Counts of a channel for the HTTP API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    pub subscription_count: usize,
    /// Distinct users; presence channels only.
    pub user_count: Option<usize>,
}

struct Subscriber {
    conn: Arc<Conn>,
    user: Option<Arc<str>>,
}

struct MemberEntry {
    info: Option<Arc<str>>,
    connections: u32,
}

#[derive(Default)]
struct State {
    subscribers: HashMap<SocketId, Subscriber>,
    /// Presence: user id → info and how many of its connections are subscribed. The order of
    /// `order` is join order, which `subscription_succeeded` reports.
    members: HashMap<Arc<str>, MemberEntry>,
    order: Vec<Arc<str>>,
    cached: Option<(Bytes, Instant)>,
    retired: bool,
}

pub(super) struct Channel {
    name: ChannelName,
    kind: ChannelKind,
    state: RwLock<State>,
}

impl Channel {
    pub(super) fn new(name: ChannelName) -> Self {
        let kind = name.kind();
        Self { name, kind, state: RwLock::default() }
    }

    pub(super) fn name(&self) -> &ChannelName {
        &self.name
    }

    pub(super) fn subscribe(&self, conn: &Arc<Conn>, presence: Option<PresenceUser>, opts: &HubOptions) -> Result<usize, SubscribeError> {
        let mut st = self.state.write();
        if st.retired {
            return Err(SubscribeError::Retired);
        }
        if st.subscribers.contains_key(&conn.socket_id) {
            return Err(SubscribeError::AlreadySubscribed(self.name.to_string()));
        }
        let ch = self.name.as_str();
        let user = presence.as_ref().map(|p| p.user_id.clone());
        if let Some(p) = presence {
            let first = match st.members.get_mut(&p.user_id) {
                Some(m) => {
                    m.connections += 1;
                    false
                }
                None => {
                    if st.members.len() >= opts.max_presence_members {
                        return Err(SubscribeError::PresenceFull(opts.max_presence_members));
                    }
                    st.members.insert(p.user_id.clone(), MemberEntry { info: p.user_info.clone(), connections: 1 });
                    st.order.push(p.user_id.clone());
                    true
                }
            };
            if first {
                let frame = ServerFrame::MemberAdded { channel: ch, member: Member { user_id: &p.user_id, user_info: p.user_info.as_deref() } }.encode();
                for s in st.subscribers.values() {
                    s.conn.outbox.push(frame.clone());
                }
            }
            let members: Vec<Member<'_>> = st.order.iter().map(|u| Member { user_id: u, user_info: st.members[u].info.as_deref() }).collect();
            conn.outbox.push(ServerFrame::PresenceSucceeded { channel: ch, members: &members }.encode());
        } else {
            conn.outbox.push(ServerFrame::SubscriptionSucceeded { channel: ch }.encode());
        }
        if self.name.is_cache() {
            match &st.cached {
                Some((frame, until)) if *until > Instant::now() => conn.outbox.push(frame.clone()),
                _ => conn.outbox.push(ServerFrame::CacheMiss { channel: ch }.encode()),
            };
        }
        st.subscribers.insert(conn.socket_id, Subscriber { conn: conn.clone(), user });
        let n = st.subscribers.len();
        if opts.subscription_count && self.kind != ChannelKind::Presence && self.kind != ChannelKind::ServerToUser {
            broadcast_count(&st, ch, n);
        }
        Ok(n)
    }

    pub(super) fn unsubscribe(&self, socket: SocketId, opts: &HubOptions) -> bool {
        let mut st = self.state.write();
        let Some(sub) = st.subscribers.remove(&socket) else { return false };
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
                let frame = ServerFrame::MemberRemoved { channel: self.name.as_str(), user_id: &user }.encode();
                for s in st.subscribers.values() {
                    s.conn.outbox.push(frame.clone());
                }
            }
        }
        let n = st.subscribers.len();
        if opts.subscription_count && n > 0 && self.kind != ChannelKind::Presence && self.kind != ChannelKind::ServerToUser {
            broadcast_count(&st, self.name.as_str(), n);
        }
        true
    }

    pub(super) fn publish(&self, frame: Bytes, except: Option<SocketId>, urgency: Urgency, cache_until: Option<Instant>) -> Delivery {
        let mut d = Delivery::default();
        if let Some(until) = cache_until {
            let mut st = self.state.write();
            st.cached = Some((frame.clone(), until));
            fan_out(&st, &self.name, &frame, except, urgency, &mut d);
        } else {
            let st = self.state.read();
            fan_out(&st, &self.name, &frame, except, urgency, &mut d);
        }
        d
    }

    pub(super) fn info(&self) -> ChannelInfo {
        let st = self.state.read();
        ChannelInfo {
            subscription_count: st.subscribers.len(),
            user_count: (self.kind == ChannelKind::Presence).then_some(st.members.len()),
        }
    }

    pub(super) fn user_ids(&self) -> Vec<Arc<str>> {
        self.state.read().order.clone()
    }

    pub(super) fn expire_cache(&self, now: Instant) {
        let mut st = self.state.write();
        if st.cached.as_ref().is_some_and(|(_, until)| *until <= now) {
            st.cached = None;
        }
    }

    /// Marks an empty channel (no subscriber, nothing cached) as retired; returns whether it is.
    pub(super) fn retire_if_empty(&self, now: Instant) -> bool {
        let mut st = self.state.write();
        let cache_live = st.cached.as_ref().is_some_and(|(_, until)| *until > now);
        if st.subscribers.is_empty() && !cache_live {
            st.retired = true;
        }
        st.retired
    }
}

fn fan_out(st: &State, name: &ChannelName, frame: &Bytes, except: Option<SocketId>, urgency: Urgency, d: &mut Delivery) {
    for (id, s) in &st.subscribers {
        if Some(*id) == except {
            continue;
        }
        let pushed = match urgency {
            Urgency::Always => s.conn.outbox.push(frame.clone()),
            Urgency::Conflatable => s.conn.outbox.push_sample(name, frame.clone()),
        };
        match pushed {
            Pushed::Queued => d.delivered += 1,
            Pushed::Conflated => d.conflated += 1,
            Pushed::Refused => d.refused += 1,
        }
    }
}

fn broadcast_count(st: &State, channel: &str, n: usize) {
    let frame = ServerFrame::SubscriptionCount { channel, count: n }.encode();
    for s in st.subscribers.values() {
        s.conn.outbox.push(frame.clone());
    }
}
