//! The fan-out core: channels, subscribers, presence, users, per app.
//!
//! It knows nothing of axum, HTTP or websockets: connections are `Conn`s with an `Outbox`,
//! frames are encoded once into `Bytes` and shared by every subscriber. No lock is held
//! across an await (there are no awaits here), and nothing on the publish path waits for a
//! socket.

mod channel;
mod lanes;
mod meter;
mod outbox;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sonde_protocol::{ChannelName, CloseCode, ServerFrame, SocketId};

pub use channel::{Change, ChannelInfo, SubscribeError};
pub use lanes::Lanes;
pub use meter::{mark_ms, since_mark, Meter, Overflow, Pass, PassReport};
pub use outbox::{CloseRequest, DirectWrite, Outbox, Outgoing, Pushed, Written};
pub use users::SigninError;

use channel::Channel;
use users::Users;

/// One websocket connection as the core sees it.
pub struct Conn {
    pub socket_id: SocketId,
    pub outbox: Outbox,
    /// The fan-out lane that writes this connection's frames of large channels (`Lanes::assign`).
    lane: usize,
    /// Set once by sign-in.
    user: Mutex<Option<Arc<str>>>,
}

impl Conn {
    pub fn new(socket_id: SocketId, outbox_limit: usize, lane: usize) -> Arc<Self> {
        Arc::new(Self { socket_id, outbox: Outbox::new(outbox_limit), lane, user: Mutex::new(None) })
    }

    pub fn user(&self) -> Option<Arc<str>> {
        self.user.lock().clone()
    }
}

/// A channel as this node has it: name, subscriber count, presence members.
pub type LocalChannel = (ChannelName, usize, Vec<PresenceUser>);

/// Another relay node of the cluster, by its id.
pub type NodeId = Arc<str>;

/// A presence member as a subscriber declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUser {
    pub user_id: Arc<str>,
    /// Raw JSON text of `user_info`, already validated by the edge.
    pub user_info: Option<Arc<str>>,
}

/// Switches of the app that change what the core sends.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub subscription_count: bool,
    pub max_presence_members: usize,
    pub cache_ttl: Duration,
}

/// What a publish reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub conflated: usize,
    pub refused: usize,
}

/// A change of a channel as this node sees the whole cluster: local subscriptions and what
/// other nodes reported (or stopped reporting) together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition<'a> {
    /// The channel gained its first subscriber anywhere.
    Occupied,
    /// The channel lost its last subscriber anywhere.
    Vacated,
    /// A user's first connection anywhere joined this presence channel.
    MemberAdded(&'a str),
    /// A user's last connection anywhere left this presence channel.
    MemberRemoved(&'a str),
    /// The channel's subscriber count (all nodes) changed to this.
    Count(usize),
    /// A subscriber of a cache channel found nothing cached (a local subscription).
    CacheMiss,
}

/// Told of every `Transition` as it happens, under the channel's lock, so that the changes
/// of one channel arrive in the order they happened. It must not block or call the hub.
pub trait Observer: Send + Sync {
    fn changed(&self, channel: &ChannelName, transition: Transition<'_>);
}

/// How a publish treats slow subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Must arrive, or the subscriber is closed.
    Always,
    /// A newer frame of the same channel may replace it while it waits (metric samples).
    Conflatable,
}

/// One publish on its way to a channel's subscribers, built once by whoever publishes and
/// handed along unchanged (app, hub, channel, lanes).
#[derive(Debug, Clone)]
pub struct Publish {
    /// The encoded frame, shared by every copy.
    pub frame: Bytes,
    /// The connection that does not get it (a client event's sender).
    pub except: Option<SocketId>,
    pub urgency: Urgency,
}

impl Publish {
    /// A frame every subscriber must get.
    pub fn to_all(frame: Bytes) -> Self {
        Self { frame, except: None, urgency: Urgency::Always }
    }
}

pub struct Hub {
    options: HubOptions,
    channels: RwLock<HashMap<ChannelName, Arc<Channel>>>,
    conns: RwLock<HashMap<SocketId, Arc<Conn>>>,
    users: Mutex<Users>,
    /// Set when someone (webhooks) wants the transitions; without it none is computed.
    observer: OnceLock<Arc<dyn Observer>>,
    /// Set when someone measures the core's timings; without it no clock is read for them.
    meter: OnceLock<Arc<dyn Meter>>,
    /// The relay's fan-out lanes (every app's hub shares them).
    lanes: Arc<Lanes>,
}

impl Hub {
    pub fn new(options: HubOptions, lanes: Arc<Lanes>) -> Self {
        let (channels, conns, users) = (RwLock::default(), RwLock::default(), Mutex::default());
        Self { options, channels, conns, users, observer: OnceLock::new(), meter: OnceLock::new(), lanes }
    }

    /// The fan-out lanes, which also give each new connection its lane.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Reports every channel transition to `observer` from now on (once; later calls are
    /// ignored).
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    /// Reports the core's timings to `meter` from now on (once; later calls are ignored).
    /// Connections registered before this are not measured.
    pub fn measure(&self, meter: Arc<dyn Meter>) {
        let _ = self.meter.set(meter);
    }

    fn observer(&self) -> Option<&dyn Observer> {
        self.observer.get().map(|o| &**o)
    }

    pub fn options(&self) -> &HubOptions {
        &self.options
    }

    /// Channels this node holds (occupied here or elsewhere, or caching an event).
    pub fn channel_count(&self) -> usize {
        self.channels.read().len()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.read().len()
    }

    pub fn register(&self, conn: Arc<Conn>) {
        if let Some(m) = self.meter.get() {
            conn.outbox.set_meter(m.clone(), conn.socket_id);
        }
        self.conns.write().insert(conn.socket_id, conn);
    }

    pub fn connection(&self, id: SocketId) -> Option<Arc<Conn>> {
        self.conns.read().get(&id).cloned()
    }

    /// Whether the connection `id`, on this node, is subscribed to `name`.
    pub fn is_subscribed(&self, name: &ChannelName, id: SocketId) -> bool {
        self.channel(name).is_some_and(|c| c.has_subscriber(id))
    }

    /// Removes a connection from every channel it was in and from the user registry.
    /// Returns the channel changes and the user whose last local connection this was.
    pub fn unregister(&self, conn: &Arc<Conn>, channels: impl IntoIterator<Item = ChannelName>) -> (Vec<(ChannelName, Change)>, Option<Arc<str>>) {
        let mut changes = Vec::new();
        for ch in channels {
            if let Some(c) = self.unsubscribe(conn, &ch) {
                changes.push((ch, c));
            }
        }
        let mut offline = None;
        if let Some(user) = conn.user() {
            let (out, last) = self.users.lock().signout(&user, conn.socket_id);
            self.send_watch_events(out);
            offline = last.then_some(user);
        }
        self.conns.write().remove(&conn.socket_id);
        (changes, offline)
    }

    fn channel(&self, name: &ChannelName) -> Option<Arc<Channel>> {
        self.channels.read().get(name).cloned()
    }

    fn channel_or_create(&self, name: &ChannelName) -> Arc<Channel> {
        if let Some(c) = self.channel(name) {
            return c;
        }
        self.channels.write().entry(name.clone()).or_insert_with(|| Arc::new(Channel::new(name.clone(), self.lanes.clone()))).clone()
    }

    fn drop_if_empty(&self, ch: &Arc<Channel>) {
        if ch.retire_if_empty(Instant::now()) {
            let mut map = self.channels.write();
            if map.get(ch.name()).is_some_and(|c| Arc::ptr_eq(c, ch)) {
                map.remove(ch.name());
            }
        }
    }

    /// Subscribes `conn`; queues `subscription_succeeded` (and the cached event or
    /// `cache_miss`) before any later event of the channel.
    pub fn subscribe(&self, conn: &Arc<Conn>, name: &ChannelName, presence: Option<PresenceUser>) -> Result<Change, SubscribeError> {
        loop {
            let ch = self.channel_or_create(name);
            match ch.subscribe(conn, presence.clone(), &self.options, self.observer()) {
                Err(SubscribeError::Retired) => continue,
                Err(e) => {
                    self.drop_if_empty(&ch);
                    return Err(e);
                }
                Ok(n) => return Ok(n),
            }
        }
    }

    /// Returns the change, or `None` when the connection was not subscribed.
    pub fn unsubscribe(&self, conn: &Arc<Conn>, name: &ChannelName) -> Option<Change> {
        let ch = self.channel(name)?;
        let change = ch.unsubscribe(conn.socket_id, &self.options, self.observer());
        self.drop_if_empty(&ch);
        change
    }

    /// Another node's first connection of `user` joined presence channel `name`.
    pub fn remote_join(&self, node: &NodeId, name: &ChannelName, user: Arc<str>, info: Option<Arc<str>>) {
        self.channel_or_create(name).remote_join(node, user, info, self.observer());
    }

    pub fn remote_leave(&self, node: &NodeId, name: &ChannelName, user: &str) {
        if let Some(ch) = self.channel(name) {
            ch.remote_leave(node, user, self.observer());
            self.drop_if_empty(&ch);
        }
    }

    /// Whether another node has subscribers of `name` (as its `remote_count`s said).
    pub fn has_remote_subscribers(&self, name: &ChannelName) -> bool {
        self.channel(name).is_some_and(|c| c.has_remote_subscribers())
    }

    pub fn remote_count(&self, node: &NodeId, name: &ChannelName, count: usize) {
        let ch = if count == 0 {
            match self.channel(name) {
                Some(c) => c,
                None => return,
            }
        } else {
            self.channel_or_create(name)
        };
        ch.remote_count(node, count, &self.options, self.observer());
        self.drop_if_empty(&ch);
    }

    pub fn remote_user(&self, node: &NodeId, user: Arc<str>, online: bool) {
        let out = self.users.lock().remote(node, user, online);
        self.send_watch_events(out);
    }

    /// Forgets everything a node reported (it left or stopped answering).
    pub fn drop_node(&self, node: &NodeId) {
        let all: Vec<Arc<Channel>> = self.channels.read().values().cloned().collect();
        for ch in all {
            ch.drop_node(node, &self.options, self.observer());
            self.drop_if_empty(&ch);
        }
        let out = self.users.lock().drop_node(node);
        self.send_watch_events(out);
    }

    /// This node's own state, to announce to the cluster: per channel its subscriber count and
    /// presence members, and the signed-in users.
    pub fn local_state(&self) -> (Vec<LocalChannel>, Vec<Arc<str>>) {
        let all: Vec<Arc<Channel>> = self.channels.read().values().cloned().collect();
        let channels = all
            .iter()
            .filter_map(|c| {
                let (n, members) = c.local_state();
                (n > 0).then(|| (c.name().clone(), n, members))
            })
            .collect();
        (channels, self.users.lock().local_users())
    }

    /// Fans a frame out to every subscriber of a channel but `except`. Cache channels keep it.
    pub fn publish(&self, name: &ChannelName, p: Publish) -> Delivery {
        if name.is_cache() {
            let ch = self.channel_or_create(name);
            let d = ch.publish(p, Some(Instant::now() + self.options.cache_ttl), self.meter.get());
            return d;
        }
        match self.channel(name) {
            Some(ch) => ch.publish(p, None, self.meter.get()),
            None => Delivery::default(),
        }
    }

    pub fn store_cache(&self, name: &ChannelName, frame: Bytes, until: Instant) {
        self.channel_or_create(name).store_cache(frame, until);
    }

    /// Live cached events, to hand to a node joining the cluster.
    pub fn cached(&self) -> Vec<(ChannelName, Bytes, Instant)> {
        let now = Instant::now();
        let all: Vec<Arc<Channel>> = self.channels.read().values().cloned().collect();
        all.iter().filter_map(|c| c.cached(now).map(|(f, u)| (c.name().clone(), f, u))).collect()
    }

    pub fn channel_info(&self, name: &ChannelName) -> ChannelInfo {
        self.channel(name).map(|c| c.info()).unwrap_or_default()
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn channels(&self, prefix: &str) -> Vec<(ChannelName, ChannelInfo)> {
        let list: Vec<Arc<Channel>> = self.channels.read().iter().filter(|(n, _)| n.as_str().starts_with(prefix)).map(|(_, c)| c.clone()).collect();
        list.into_iter().map(|c| (c.name().clone(), c.info())).filter(|(_, i)| i.subscription_count > 0).collect()
    }

    /// Distinct user ids of a presence channel.
    pub fn presence_users(&self, name: &ChannelName) -> Vec<Arc<str>> {
        self.channel(name).map(|c| c.user_ids()).unwrap_or_default()
    }

    /// Signs a connection in as `user_id`, subscribes it to its `#server-to-user-` channel and
    /// starts its watchlist.
    /// Returns the channel and whether this is the user's first connection on this node.
    /// `success` (the `signin_success` frame) goes out once the user is registered, so a client
    /// that acts on it finds the relay agreeing, and before anything of the user's channel.
    pub fn signin(&self, conn: &Arc<Conn>, user_id: Arc<str>, watchlist: Vec<Arc<str>>, success: Bytes) -> Result<(ChannelName, bool), SigninError> {
        let channel = ChannelName::server_to_user(&user_id).map_err(|_| SigninError::BadUserId)?;
        {
            let mut slot = conn.user.lock();
            if slot.is_some() {
                return Err(SigninError::AlreadySignedIn);
            }
            *slot = Some(user_id.clone());
        }
        let (out, first) = self.users.lock().signin(user_id, conn.socket_id, watchlist);
        conn.outbox.push(success);
        self.subscribe(conn, &channel, None).map_err(|_| SigninError::BadUserId)?;
        self.send_watch_events(out);
        Ok((channel, first))
    }

    fn send_watch_events(&self, events: Vec<users::WatchEvent>) {
        for ev in events {
            if let Some(c) = self.connection(ev.to) {
                let ids: Vec<&str> = ev.user_ids.iter().map(|u| &**u).collect();
                c.outbox.push(ServerFrame::Watchlist { user_ids: &ids, watch: ev.watch }.encode());
            }
        }
    }

    /// Closes every connection signed in as `user_id`; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        let sockets = self.users.lock().sockets_of(user_id);
        let mut n = 0;
        for s in sockets {
            if let Some(c) = self.connection(s) {
                c.outbox.close(CloseCode::Unauthorized, "connection terminated by the app");
                n += 1;
            }
        }
        n
    }

    /// Closes every connection with `code` (shutdown: 4200 so clients reconnect elsewhere).
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for c in self.conns.read().values() {
            c.outbox.close(code, reason);
        }
    }

    /// Drops cache entries whose TTL has passed on channels nobody is subscribed to.
    pub fn sweep(&self) {
        let now = Instant::now();
        let all: Vec<Arc<Channel>> = self.channels.read().values().cloned().collect();
        for ch in all {
            ch.expire_cache(now);
            self.drop_if_empty(&ch);
        }
    }
}

#[cfg(test)]
mod tests;
