//! Realtime sessions: one per (app, host). A session opens when a host channel gains its
//! first viewer (any subscriber that is not the host's agent) or by a server-side directive,
//! is renewed while it lives, and closes a grace period after the last viewer leaves and any
//! explicit duration has passed.
//!
//! The controller is plain state driven by explicit instants: it returns the directives to
//! send and never touches a socket, so it is tested without clocks or sockets.

pub mod inventory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use sonde_protocol::sonde::{SessionDirective, SessionId, SessionState};
use sonde_protocol::SocketId;

use crate::hub::NodeId;

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

/// Something the controller wants sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// To everyone on the host channel (the agent and the viewers).
    Publish { host: Arc<str>, directive: SessionDirective },
    /// To one connection only (an agent that joined a running session).
    Send { host: Arc<str>, to: SocketId, directive: SessionDirective },
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
}

struct Session {
    id: SessionId,
    started_ms: u64,
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

pub struct Sessions {
    timing: SessionTiming,
    hosts: Mutex<HashMap<Arc<str>, HostState>>,
    /// Whether this node runs the sessions (always, without a cluster; the leader in one).
    leader: AtomicBool,
    /// The leader's table, as a follower last heard it.
    table: Mutex<Vec<SessionInfo>>,
}

fn new_id() -> SessionId {
    SessionId(format!("{:016x}", rand::random::<u64>()))
}

impl Sessions {
    pub fn new(timing: SessionTiming) -> Self {
        Self { timing, hosts: Mutex::default(), leader: AtomicBool::new(true), table: Mutex::default() }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Takes over (seeding sessions from the last table heard, keeping their ids) or hands
    /// over (forgetting the sessions silently: the new leader continues them).
    pub fn set_leader(&self, leader: bool, clock: Clock) {
        if self.leader.swap(leader, Ordering::Relaxed) == leader {
            return;
        }
        let mut hosts = self.hosts.lock();
        if !leader {
            for st in hosts.values_mut() {
                st.session = None;
            }
            return;
        }
        for rec in self.table.lock().iter() {
            let (key, st) = entry(&mut hosts, &rec.host);
            let _ = key;
            if st.session.is_none() {
                st.session = Some(Session {
                    id: SessionId(rec.id.clone()),
                    started_ms: rec.started_ms,
                    explicit_until: rec.until_ms.map(|u| clock.now + Duration::from_millis(u.saturating_sub(clock.now_ms))),
                    lease_until_ms: rec.lease_until_ms,
                    renewed_at: clock.now,
                });
                if st.total_viewers() == 0 {
                    st.idle_since.get_or_insert(clock.now);
                }
            }
        }
    }

    /// A follower records the leader's table.
    pub fn set_table(&self, table: Vec<SessionInfo>) {
        *self.table.lock() = table;
    }

    /// Another node's viewers and agents of `host`. Returns what the leader must send.
    pub fn remote_host(&self, node: &NodeId, host: &str, viewers: usize, agents: Vec<SocketId>, clock: Clock) -> Vec<Action> {
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        let before: Vec<SocketId> = st.remote.get(node).map(|(_, a)| a.clone()).unwrap_or_default();
        let new_agents: Vec<SocketId> = agents.iter().filter(|a| !before.contains(a)).copied().collect();
        if viewers == 0 && agents.is_empty() {
            st.remote.remove(node);
        } else {
            st.remote.insert(node.clone(), (viewers, agents));
        }
        let mut actions = Vec::new();
        if !self.is_leader() {
            return actions;
        }
        if st.total_viewers() > 0 {
            st.idle_since = None;
            if st.session.is_none() {
                actions.push(self.start(&key, st, clock));
            }
        } else {
            st.idle_since.get_or_insert(clock.now);
        }
        if let Some(s) = &st.session {
            for a in new_agents {
                actions.push(Action::Send { host: key.clone(), to: a, directive: self.directive(s, SessionState::Started) });
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

    fn start(&self, host: &Arc<str>, st: &mut HostState, clock: Clock) -> Action {
        let s = Session {
            id: new_id(),
            started_ms: clock.now_ms,
            explicit_until: None,
            lease_until_ms: clock.now_ms + self.timing.lease.as_millis() as u64,
            renewed_at: clock.now,
        };
        let directive = self.directive(&s, SessionState::Started);
        st.session = Some(s);
        Action::Publish { host: host.clone(), directive }
    }

    /// A viewer subscribed: the first one starts a session; one joining a running session
    /// gets the history through a `backfill` directive addressed to it.
    pub fn viewer_joined(&self, host: &str, viewer: SocketId, clock: Clock) -> Vec<Action> {
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        st.viewers += 1;
        st.idle_since = None;
        let running = match &st.session {
            Some(s) => Some((s.id.clone(), s.lease_until_ms)),
            None if self.is_leader() => return vec![self.start(&key, st, clock)],
            None => self.table.lock().iter().find(|r| *r.host == *host).map(|r| (SessionId(r.id.clone()), r.lease_until_ms)),
        };
        running
            .map(|(id, lease_until)| {
                let directive = SessionDirective { state: SessionState::Backfill, id, interval_ms: self.timing.interval_ms, lease_until, for_socket: Some(viewer.to_string()) };
                vec![Action::Publish { host: key, directive }]
            })
            .unwrap_or_default()
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
    }

    /// An agent joined its host channel: it gets the running session's directive at once.
    pub fn agent_joined(&self, host: &str, socket: SocketId) -> Vec<Action> {
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        st.agents.push(socket);
        match &st.session {
            Some(s) => vec![Action::Send { host: key, to: socket, directive: self.directive(s, SessionState::Started) }],
            None if !self.is_leader() => {
                // A follower answers from the leader's table, so the agent starts at once.
                let table = self.table.lock();
                let rec = table.iter().find(|r| *r.host == *host);
                rec.map(|r| {
                    let directive = SessionDirective { state: SessionState::Started, id: SessionId(r.id.clone()), interval_ms: self.timing.interval_ms, lease_until: r.lease_until_ms, for_socket: None };
                    vec![Action::Send { host: key.clone(), to: socket, directive }]
                })
                .unwrap_or_default()
            }
            None => Vec::new(),
        }
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
    pub fn start_for(&self, host: &str, duration: Duration, clock: Clock) -> (SessionInfo, Vec<Action>) {
        let mut hosts = self.hosts.lock();
        let (key, st) = entry(&mut hosts, host);
        let mut actions = Vec::new();
        if st.session.is_none() {
            actions.push(self.start(&key, st, clock));
        }
        let until = clock.now + duration;
        let s = st.session.as_mut().expect("just started");
        s.explicit_until = Some(s.explicit_until.map_or(until, |u| u.max(until)));
        (self.info(&key, st, clock).expect("session exists"), actions)
    }

    /// Stops a session now; returns whether there was one.
    pub fn stop(&self, host: &str) -> Option<Action> {
        let mut hosts = self.hosts.lock();
        let st = hosts.get_mut(host)?;
        let s = st.session.take()?;
        let directive = self.directive(&s, SessionState::Stopped);
        let key: Arc<str> = Arc::from(host);
        if st.unused() {
            hosts.remove(host);
        }
        Some(Action::Publish { host: key, directive })
    }

    /// Renews leases and closes sessions whose grace has passed.
    pub fn tick(&self, clock: Clock) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.is_leader() {
            return actions;
        }
        let mut hosts = self.hosts.lock();
        for (host, st) in hosts.iter_mut() {
            let viewers = st.total_viewers();
            let Some(s) = st.session.as_mut() else { continue };
            let needed = viewers > 0 || s.explicit_until.is_some_and(|u| u > clock.now);
            if !needed {
                let idle_from = [st.idle_since, s.explicit_until].into_iter().flatten().max().unwrap_or(clock.now);
                if clock.now.saturating_duration_since(idle_from) >= self.timing.grace {
                    let s = st.session.take().expect("checked");
                    actions.push(Action::Publish { host: host.clone(), directive: self.directive(&s, SessionState::Stopped) });
                    continue;
                }
            }
            if clock.now.saturating_duration_since(s.renewed_at) >= self.timing.renew_every {
                s.renewed_at = clock.now;
                s.lease_until_ms = clock.now_ms + self.timing.lease.as_millis() as u64;
                let directive = SessionDirective { state: SessionState::Renewed, id: s.id.clone(), interval_ms: self.timing.interval_ms, lease_until: s.lease_until_ms, for_socket: None };
                actions.push(Action::Publish { host: host.clone(), directive });
            }
        }
        hosts.retain(|_, st| !st.unused());
        actions
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
        })
    }

    /// The sessions of the cluster: this node's own when it leads, else the leader's table.
    pub fn list(&self, clock: Clock) -> Vec<SessionInfo> {
        if !self.is_leader() {
            return self.table.lock().clone();
        }
        let hosts = self.hosts.lock();
        let mut v: Vec<SessionInfo> = hosts.iter().filter_map(|(h, st)| self.info(h, st, clock)).collect();
        v.sort_by(|a, b| a.host.cmp(&b.host));
        v
    }

    pub fn count(&self) -> usize {
        if !self.is_leader() {
            return self.table.lock().len();
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
mod tests;
