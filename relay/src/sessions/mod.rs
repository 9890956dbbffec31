//! Realtime sessions: one per (app, host). A session opens when a host channel gains its
//! first viewer (any subscriber that is not the host's agent) or by a server-side directive,
//! is renewed while it lives, and closes a grace period after the last viewer leaves and any
//! explicit duration has passed.
//!
//! The controller is plain state driven by explicit instants: it returns the directives to
//! send and never touches a socket, so it is tested without clocks or sockets. In a cluster
//! only the node holding the leader lease runs it; the others answer from the leader's
//! versioned table (see `role`).

pub mod dashboards;
pub mod inventory;
mod owed;
mod role;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sonde_protocol::sonde::{SessionDirective, SessionId, SessionState};
use sonde_protocol::webhook::Starter;
use sonde_protocol::SocketId;

use crate::hub::NodeId;
pub use owed::Stream;
pub use role::{Role, Table};

/// Timing of sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionTiming {
    /// How long a session outlives its last viewer.
    pub grace: Duration,
    /// How far ahead each lease runs; an agent that hears nothing stops when it passes.
    pub lease: Duration,
    /// How often a living session's lease is renewed.
    pub renew_every: Duration,
    /// Sampling interval the agent is asked for.
    pub interval_ms: u64,
}

impl Default for SessionTiming {
    fn default() -> Self {
        Self { grace: Duration::from_secs(10), lease: Duration::from_secs(30), renew_every: Duration::from_secs(10), interval_ms: 1000 }
    }
}

/// The timing `[sessions]` configures.
impl From<&crate::config::SessionsConfig> for SessionTiming {
    fn from(c: &crate::config::SessionsConfig) -> Self {
        Self {
            grace: Duration::from_millis(c.grace_ms),
            lease: Duration::from_millis(c.lease_ms),
            renew_every: Duration::from_millis(c.renew_ms),
            interval_ms: c.interval_ms,
        }
    }
}

/// Something the controller wants sent. `term` is the leader term the directive speaks for
/// (0 from a node running alone): other nodes drop directives of a term older than one they
/// have heard, so a deposed leader cannot start or stop anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// To everyone on the host channel (the agent and the viewers).
    Publish { host: Arc<str>, directive: SessionDirective, term: u64 },
    /// To one connection only (an agent that joined a running session).
    Send { host: Arc<str>, to: SocketId, directive: SessionDirective, term: u64 },
}

/// A session as the HTTP API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub host: Arc<str>,
    pub id: String,
    pub started_ms: u64,
    pub viewers: usize,
    pub lease_until_ms: u64,
    /// End of an explicit duration, if a server-side directive gave one.
    pub until_ms: Option<u64>,
    pub started_by: Starter,
}

/// A session started or stopped by this node (it runs the sessions), for webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub host: Arc<str>,
    pub id: String,
    pub started_by: Starter,
    pub started_ms: u64,
    /// When it stopped; `None` for a start.
    pub stopped_ms: Option<u64>,
}

/// Starts and stops not yet taken; beyond it the oldest are forgotten (nobody takes them:
/// the app has no session webhooks).
const MAX_LIFECYCLE: usize = 1024;

struct Session {
    id: SessionId,
    started_ms: u64,
    started_by: Starter,
    explicit_until: Option<Instant>,
    lease_until_ms: u64,
    renewed_at: Instant,
}

#[derive(Default)]
struct HostState {
    /// Viewers and agent connections on this node.
    viewers: usize,
    agents: Vec<SocketId>,
    /// What other cluster nodes report for this host.
    remote: HashMap<NodeId, (usize, Vec<SocketId>)>,
    /// When the last viewer left.
    idle_since: Option<Instant>,
    session: Option<Session>,
}

impl HostState {
    fn total_viewers(&self) -> usize {
        self.viewers + self.remote.values().map(|(v, _)| v).sum::<usize>()
    }

    fn unused(&self) -> bool {
        self.session.is_none() && self.viewers == 0 && self.agents.is_empty() && self.remote.is_empty()
    }
}

/// Wall-clock milliseconds matching an `Instant`, for leases the agent checks on its clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub now_ms: u64,
}

impl Clock {
    pub fn now() -> Self {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { now: Instant::now(), now_ms }
    }

    fn ms_at(&self, at: Instant) -> u64 {
        self.now_ms + at.saturating_duration_since(self.now).as_millis() as u64
    }
}

/// Lock order: `role`, then `hosts`, then `table`, then `announced`; none is held while
/// taking an earlier one. `owed` is never held with another.
pub struct Sessions {
    timing: SessionTiming,
    hosts: Mutex<HashMap<Arc<str>, HostState>>,
    role: Mutex<Role>,
    /// The leader's table as last accepted: what a follower answers from, and what a node
    /// continues when it takes over.
    table: Mutex<Table>,
    /// The highest leader term heard.
    term_seen: AtomicU64,
    announced: Mutex<role::Announced>,
    /// Viewers here owed a backfill, by host, and how many in all.
    owed: Mutex<HashMap<Arc<str>, Vec<owed::Owed>>>,
    owing: AtomicUsize,
    /// Starts and stops since the last `take_lifecycle` (a leaf lock).
    lifecycle: Mutex<std::collections::VecDeque<Lifecycle>>,
}

fn new_id() -> SessionId {
    SessionId(format!("{:016x}", rand::random::<u64>()))
}

impl Sessions {
    pub fn new(timing: SessionTiming) -> Self {
        Self {
            timing,
            hosts: Mutex::default(),
            role: Mutex::new(Role::Alone),
            table: Mutex::default(),
            term_seen: AtomicU64::new(0),
            announced: Mutex::default(),
            owed: Mutex::default(),
            owing: AtomicUsize::new(0),
            lifecycle: Mutex::default(),
        }
    }

    /// Sessions started and stopped here since the last call, in order.
    pub fn take_lifecycle(&self) -> Vec<Lifecycle> {
        self.lifecycle.lock().drain(..).collect()
    }

    fn record(&self, host: &Arc<str>, s: &Session, stopped_ms: Option<u64>) {
        let mut l = self.lifecycle.lock();
        if l.len() >= MAX_LIFECYCLE {
            l.pop_front();
        }
        l.push_back(Lifecycle { host: host.clone(), id: s.id.0.clone(), started_by: s.started_by, started_ms: s.started_ms, stopped_ms });
    }

    /// Another node's viewers and agents of `host`. Returns what the leader must send.
    pub fn remote_host(&self, node: &NodeId, host: &str, viewers: usize, agents: Vec<SocketId>, clock: Clock) -> Vec<Action> {
        let role = self.role();
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        let before: Vec<SocketId> = st.remote.get(node).map(|(_, a)| a.clone()).unwrap_or_default();
        let new_agents: Vec<SocketId> = agents.iter().filter(|a| !before.contains(a)).copied().collect();
        if viewers == 0 && agents.is_empty() {
            st.remote.remove(node);
        } else {
            st.remote.insert(node.clone(), (viewers, agents));
        }
        self.changed(false);
        let mut actions = Vec::new();
        if !role.acts(clock.now) {
            return actions;
        }
        if st.total_viewers() > 0 {
            st.idle_since = None;
            if st.session.is_none() {
                actions.push(self.start(&key, st, role.term(), Starter::Viewer, clock));
            }
        } else {
            st.idle_since.get_or_insert(clock.now);
        }
        if let Some(s) = &st.session {
            for a in new_agents {
                actions.push(Action::Send { host: key.clone(), to: a, directive: self.directive(s, SessionState::Started), term: role.term() });
            }
        }
        actions
    }

    /// Forgets a node's viewers and agents.
    pub fn drop_node(&self, node: &NodeId, clock: Clock) {
        let mut hosts = self.hosts.lock();
        for st in hosts.values_mut() {
            if st.remote.remove(node).is_some() && st.total_viewers() == 0 {
                st.idle_since.get_or_insert(clock.now);
            }
        }
        hosts.retain(|_, st| !st.unused());
        self.changed(false);
    }

    /// This node's viewers and agents per host, to announce to the cluster.
    pub fn local_hosts(&self) -> Vec<(Arc<str>, usize, Vec<SocketId>)> {
        self.hosts.lock().iter().filter(|(_, st)| st.viewers > 0 || !st.agents.is_empty()).map(|(h, st)| (h.clone(), st.viewers, st.agents.clone())).collect()
    }

    pub fn local_host(&self, host: &str) -> (usize, Vec<SocketId>) {
        self.hosts.lock().get(host).map_or((0, Vec::new()), |st| (st.viewers, st.agents.clone()))
    }

    pub fn timing(&self) -> SessionTiming {
        self.timing
    }

    fn directive(&self, s: &Session, state: SessionState) -> SessionDirective {
        SessionDirective { state, id: s.id.clone(), interval_ms: self.timing.interval_ms, lease_until: s.lease_until_ms, for_socket: None }
    }

    fn start(&self, host: &Arc<str>, st: &mut HostState, term: u64, by: Starter, clock: Clock) -> Action {
        let s = Session {
            id: new_id(),
            started_ms: clock.now_ms,
            started_by: by,
            explicit_until: None,
            lease_until_ms: clock.now_ms + self.timing.lease.as_millis() as u64,
            renewed_at: clock.now,
        };
        let directive = self.directive(&s, SessionState::Started);
        self.record(host, &s, None);
        st.session = Some(s);
        self.changed(true);
        Action::Publish { host: host.clone(), directive, term }
    }

    /// The running session of `host` as this node knows it: its own when it runs the
    /// sessions, else the leader's table. (id, lease, term)
    fn running(&self, role: Role, host: &str, st: &HostState) -> Option<(SessionId, u64, u64)> {
        if role.runs() {
            return st.session.as_ref().map(|s| (s.id.clone(), s.lease_until_ms, role.term()));
        }
        let table = self.table.lock();
        table.sessions.iter().find(|r| *r.host == *host).map(|r| (SessionId(r.id.clone()), r.lease_until_ms, table.term))
    }

    /// A viewer subscribed: the first one starts a session; one joining a running session
    /// gets the history through a `backfill` directive addressed to it, now if the agent is
    /// connected somewhere, else once it streams again (see `owed`).
    pub fn viewer_joined(&self, host: &str, viewer: SocketId, clock: Clock) -> Vec<Action> {
        let role = self.role();
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        st.viewers += 1;
        st.idle_since = None;
        self.changed(false);
        if st.session.is_none() && role.acts(clock.now) {
            return vec![self.start(&key, st, role.term(), Starter::Viewer, clock)];
        }
        let Some((id, lease_until, term)) = self.running(role, host, st) else { return Vec::new() };
        let agent_known = !st.agents.is_empty() || st.remote.values().any(|(_, agents)| !agents.is_empty());
        drop(hosts);
        self.owe(&key, viewer, agent_known.then_some(clock.now), clock.now);
        if !agent_known {
            return Vec::new();
        }
        let directive =
            SessionDirective { state: SessionState::Backfill, id, interval_ms: self.timing.interval_ms, lease_until, for_socket: Some(viewer.to_string()) };
        vec![Action::Publish { host: key, directive, term }]
    }

    pub fn viewer_left(&self, host: &str, clock: Clock) {
        let mut hosts = self.hosts.lock();
        if let Some(st) = hosts.get_mut(host) {
            st.viewers = st.viewers.saturating_sub(1);
            if st.total_viewers() == 0 {
                st.idle_since = Some(clock.now);
            }
            if st.unused() {
                hosts.remove(host);
            }
        }
        self.changed(false);
    }

    /// An agent joined its host channel: it gets the running session's directive at once,
    /// from the leader's table when this node does not run the sessions.
    pub fn agent_joined(&self, host: &str, socket: SocketId) -> Vec<Action> {
        let role = self.role();
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        st.agents.push(socket);
        let Some((id, lease_until, term)) = self.running(role, host, st) else { return Vec::new() };
        let directive = SessionDirective { state: SessionState::Started, id, interval_ms: self.timing.interval_ms, lease_until, for_socket: None };
        vec![Action::Send { host: key, to: socket, directive, term }]
    }

    pub fn agent_left(&self, host: &str, socket: SocketId) {
        let mut hosts = self.hosts.lock();
        if let Some(st) = hosts.get_mut(host) {
            st.agents.retain(|a| *a != socket);
            if st.unused() {
                hosts.remove(host);
            }
        }
    }

    /// A server-side directive: starts a session (or extends the running one) for `duration`.
    /// Only the node running the sessions calls it (see `is_leader`).
    pub fn start_for(&self, host: &str, duration: Duration, clock: Clock) -> (SessionInfo, Vec<Action>) {
        let term = self.role().term();
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        let mut actions = Vec::new();
        if st.session.is_none() {
            actions.push(self.start(&key, st, term, Starter::Api, clock));
        }
        let until = clock.now + duration;
        let s = st.session.as_mut().expect("just started");
        s.explicit_until = Some(s.explicit_until.map_or(until, |u| u.max(until)));
        // Followers wait for the new end in the table: announce it at once.
        self.changed(true);
        (self.info(&key, st, clock).expect("session exists"), actions)
    }

    /// Stops a session now; returns whether there was one.
    pub fn stop(&self, host: &str) -> Option<Action> {
        let term = self.role().term();
        let mut hosts = self.hosts.lock();
        let st = hosts.get_mut(host)?;
        let s = st.session.take()?;
        let directive = self.directive(&s, SessionState::Stopped);
        let key: Arc<str> = Arc::from(host);
        self.record(&key, &s, Some(Clock::now().now_ms));
        if st.unused() {
            hosts.remove(host);
        }
        self.changed(true);
        Some(Action::Publish { host: key, directive, term })
    }

    /// Renews leases and closes sessions whose grace has passed.
    pub fn tick(&self, clock: Clock) -> Vec<Action> {
        self.forget_owed(clock.now);
        let mut actions = Vec::new();
        let role = self.role();
        if !role.acts(clock.now) {
            return actions;
        }
        let term = role.term();
        let mut hosts = self.hosts.lock();
        for (host, st) in hosts.iter_mut() {
            let viewers = st.total_viewers();
            let Some(s) = st.session.as_mut() else { continue };
            let needed = viewers > 0 || s.explicit_until.is_some_and(|u| u > clock.now);
            if !needed {
                let idle_from = [st.idle_since, s.explicit_until].into_iter().flatten().max().unwrap_or(clock.now);
                if clock.now.saturating_duration_since(idle_from) >= self.timing.grace {
                    let s = st.session.take().expect("checked");
                    self.record(host, &s, Some(clock.now_ms));
                    actions.push(Action::Publish { host: host.clone(), directive: self.directive(&s, SessionState::Stopped), term });
                    self.changed(true);
                    continue;
                }
            }
            if clock.now.saturating_duration_since(s.renewed_at) >= self.timing.renew_every {
                actions.push(Action::Publish { host: host.clone(), directive: self.renew(s, clock), term });
                self.changed(false);
            }
        }
        hosts.retain(|_, st| !st.unused());
        actions
    }

    /// Moves a session's lease forward from now.
    fn renew(&self, s: &mut Session, clock: Clock) -> SessionDirective {
        s.renewed_at = clock.now;
        s.lease_until_ms = clock.now_ms + self.timing.lease.as_millis() as u64;
        self.directive(s, SessionState::Renewed)
    }

    fn info(&self, host: &Arc<str>, st: &HostState, clock: Clock) -> Option<SessionInfo> {
        let s = st.session.as_ref()?;
        Some(SessionInfo {
            host: host.clone(),
            id: s.id.0.clone(),
            started_ms: s.started_ms,
            viewers: st.total_viewers(),
            lease_until_ms: s.lease_until_ms,
            until_ms: s.explicit_until.map(|u| clock.ms_at(u)),
            started_by: s.started_by,
        })
    }

    /// The sessions of the cluster: this node's own when it runs them, else the leader's table.
    pub fn list(&self, clock: Clock) -> Vec<SessionInfo> {
        if !self.role().runs() {
            return self.table.lock().sessions.clone();
        }
        self.own(clock)
    }

    /// The sessions this node runs, by host.
    fn own(&self, clock: Clock) -> Vec<SessionInfo> {
        let hosts = self.hosts.lock();
        let mut v: Vec<SessionInfo> = hosts.iter().filter_map(|(h, st)| self.info(h, st, clock)).collect();
        v.sort_by(|a, b| a.host.cmp(&b.host));
        v
    }

    pub fn count(&self) -> usize {
        if !self.role().runs() {
            return self.table.lock().sessions.len();
        }
        self.hosts.lock().values().filter(|s| s.session.is_some()).count()
    }
}

fn entry<'a>(hosts: &'a mut HashMap<Arc<str>, HostState>, host: &str) -> (Arc<str>, &'a mut HostState) {
    let key = match hosts.get_key_value(host) {
        Some((k, _)) => k.clone(),
        None => Arc::from(host),
    };
    let st = hosts.entry(key.clone()).or_default();
    (key, st)
}

#[cfg(test)]
mod role_tests;
#[cfg(test)]
mod tests;
