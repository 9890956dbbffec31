//! Who runs the sessions, and the table the others answer from.
//!
//! In a cluster one node leads: it holds the leader lease (a Redis key with a term, see
//! `cluster::lease`) and is the only one that starts, renews and stops sessions. It announces
//! its table versioned by `(term, seq)`; every node keeps the newest version it has heard and
//! repeats it when a node (re)joins, so a node that takes over continues the same sessions
//! with the same ids. A table never replaces a newer one, so nothing a non-leader says
//! overrides the leader's table. A node cut off from Redis runs its own clients' sessions
//! alone (its directives cannot leave it anyway) and falls back to following once back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sonde_protocol::sonde::SessionId;

use super::{entry, Action, Clock, HostState, Session, SessionInfo, Sessions};

/// The leader's table goes out at most this often for renewals and viewer counts; starts and
/// stops go out at once.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the sessions of its own clients: no cluster, or cut off from Redis.
    Alone,
    /// Holds the cluster's leader lease of `term`, sure of it until `until`.
    Leader { term: u64, until: Instant },
    /// Another node leads; this one answers from its table.
    Follower,
}

impl Role {
    /// Whether this node may start, renew and stop sessions now. A leader unsure of its
    /// lease (no renewal for most of its time to live) holds still: another node may lead.
    pub fn acts(&self, now: Instant) -> bool {
        match self {
            Self::Alone => true,
            Self::Leader { until, .. } => now < *until,
            Self::Follower => false,
        }
    }

    /// Whether the sessions this node knows are its own (else they are the leader's table).
    pub fn runs(&self) -> bool {
        match self {
            Self::Alone | Self::Leader { .. } => true,
            Self::Follower => false,
        }
    }

    /// The term directives speak for; 0 for a node running alone.
    pub fn term(&self) -> u64 {
        match self {
            Self::Leader { term, .. } => *term,
            Self::Alone | Self::Follower => 0,
        }
    }
}

/// A version of the leader's session table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The term of the leader that wrote it; 0 for the sessions a node ran alone.
    pub term: u64,
    /// Its version within the term.
    pub seq: u64,
    pub sessions: Vec<SessionInfo>,
}

impl Table {
    fn version(&self) -> (u64, u64) {
        (self.term, self.seq)
    }
}

/// The leader's announcements: the version and whether the table changed since.
#[derive(Default)]
pub(super) struct Announced {
    seq: u64,
    dirty: bool,
    /// A session started or stopped: announce without waiting.
    urgent: bool,
    at: Option<Instant>,
}

impl Sessions {
    pub fn role(&self) -> Role {
        *self.role.lock()
    }

    /// Whether this node runs the sessions now (always without a cluster; the leader in one).
    pub fn is_leader(&self) -> bool {
        self.role().acts(Instant::now())
    }

    /// The highest leader term heard.
    pub fn term_seen(&self) -> u64 {
        self.term_seen.load(Ordering::Relaxed)
    }

    pub fn note_term(&self, term: u64) {
        self.term_seen.fetch_max(term, Ordering::Relaxed);
    }

    /// Whether a directive of `term` comes from a leader that has been replaced since.
    pub fn stale(&self, term: u64) -> bool {
        term < self.term_seen()
    }

    pub(super) fn changed(&self, urgent: bool) {
        let mut a = self.announced.lock();
        a.dirty = true;
        a.urgent |= urgent;
    }

    /// Leads the cluster for `term`, sure of the lease until `until`. Taking over, the node
    /// continues the sessions of the table it followed (same ids) and renews them all at once.
    pub fn lead(&self, term: u64, until: Instant, clock: Clock) -> Vec<Action> {
        {
            let mut role = self.role.lock();
            if let Role::Leader { term: t, until: u } = &mut *role {
                if *t == term {
                    *u = until;
                    return Vec::new();
                }
            }
            *role = Role::Leader { term, until };
        }
        self.note_term(term);
        *self.announced.lock() = Announced { seq: 0, dirty: true, urgent: true, at: None };
        self.take_over(term, clock)
    }

    /// Runs this node's own clients' sessions while cut off from the cluster, continuing the
    /// ones of the table it followed.
    pub fn alone(&self, clock: Clock) -> Vec<Action> {
        {
            let mut role = self.role.lock();
            if *role == Role::Alone {
                return Vec::new();
            }
            *role = Role::Alone;
        }
        self.take_over(0, clock)
    }

    /// Seeds the sessions of the followed table this node lacks, and renews every session.
    fn take_over(&self, term: u64, clock: Clock) -> Vec<Action> {
        let table = self.table.lock().clone();
        let mut hosts = self.hosts.lock();
        for rec in &table.sessions {
            self.seed(&mut hosts, rec, clock);
        }
        let mut actions = Vec::new();
        for (host, st) in hosts.iter_mut() {
            if let Some(s) = st.session.as_mut() {
                actions.push(Action::Publish { host: host.clone(), directive: self.renew(s, clock), term });
            }
        }
        actions
    }

    /// Continues a session from a table, with its id, unless the host already has one.
    /// Returns whether it did.
    fn seed(&self, hosts: &mut std::collections::HashMap<std::sync::Arc<str>, HostState>, rec: &SessionInfo, clock: Clock) -> bool {
        let (_, st) = entry(hosts, &rec.host);
        if st.session.is_some() {
            return false;
        }
        st.session = Some(Session {
            id: SessionId(rec.id.clone()),
            started_ms: rec.started_ms,
            started_by: rec.started_by,
            explicit_until: rec.until_ms.map(|u| clock.now + Duration::from_millis(u.saturating_sub(clock.now_ms))),
            lease_until_ms: rec.lease_until_ms,
            renewed_at: clock.now,
        });
        if st.total_viewers() == 0 {
            st.idle_since.get_or_insert(clock.now);
        }
        true
    }

    /// Another node leads (or this one lost the lease, or rejoined after running alone): the
    /// sessions it ran become its table, with their version (0 when it ran them alone), until
    /// the leader's next one, and are dropped silently: the leader continues them.
    pub fn follow(&self, clock: Clock) {
        let was = std::mem::replace(&mut *self.role.lock(), Role::Follower);
        let version = match was {
            Role::Follower => return,
            Role::Leader { term, .. } => (term, self.announced.lock().seq),
            Role::Alone => (0, 0),
        };
        let sessions = self.own(clock);
        {
            let mut hosts = self.hosts.lock();
            for st in hosts.values_mut() {
                st.session = None;
            }
            hosts.retain(|_, st| !st.unused());
        }
        *self.table.lock() = Table { term: version.0, seq: version.1, sessions };
    }

    /// A table heard on the bus: the leader's, or one a node repeats in its sync. A follower
    /// keeps it if it is newer than its own. The leader never takes one over its own; from an
    /// older term (a node that was cut off) it adopts only sessions of hosts it has none for
    /// and whose lease still runs, so the agent already streaming one keeps its id.
    pub fn accept(&self, table: Table, clock: Clock) -> Vec<Action> {
        self.note_term(table.term);
        match self.role() {
            Role::Leader { term, .. } if table.term < term => self.adopt(&table, term, clock),
            Role::Leader { term, .. } if table.term > term => {
                // A newer leader exists: this node's lease is gone (its next renewal fails).
                self.follow(clock);
                self.store(table);
                Vec::new()
            }
            Role::Leader { .. } => Vec::new(),
            Role::Follower | Role::Alone => {
                self.store(table);
                Vec::new()
            }
        }
    }

    fn store(&self, table: Table) {
        let mut t = self.table.lock();
        if table.version() > t.version() {
            *t = table;
        }
    }

    fn adopt(&self, table: &Table, term: u64, clock: Clock) -> Vec<Action> {
        let mut hosts = self.hosts.lock();
        let mut actions = Vec::new();
        for rec in table.sessions.iter().filter(|r| r.lease_until_ms > clock.now_ms) {
            if self.seed(&mut hosts, rec, clock) {
                let s = hosts.get_mut(&*rec.host).and_then(|st| st.session.as_mut()).expect("just seeded");
                actions.push(Action::Publish { host: rec.host.clone(), directive: self.renew(s, clock), term });
            }
        }
        if !actions.is_empty() {
            self.changed(true);
        }
        actions
    }

    /// The table as this node knows it, for a node that (re)joins: the leader's own, current;
    /// anyone else's, the newest it heard.
    pub fn table(&self, clock: Clock) -> Table {
        match self.role() {
            Role::Leader { term, .. } => {
                let seq = {
                    let mut a = self.announced.lock();
                    if a.dirty {
                        a.seq += 1;
                        (a.dirty, a.urgent, a.at) = (false, false, Some(clock.now));
                    }
                    a.seq
                };
                Table { term, seq, sessions: self.own(clock) }
            }
            Role::Follower | Role::Alone => self.table.lock().clone(),
        }
    }

    /// The leader's table when it changed and is due: at once after a start or stop, else at
    /// most every `ANNOUNCE_EVERY`.
    pub fn take_changes(&self, clock: Clock) -> Option<Table> {
        let Role::Leader { term, .. } = self.role() else { return None };
        let seq = {
            let mut a = self.announced.lock();
            let due = a.urgent || a.at.is_none_or(|at| clock.now.saturating_duration_since(at) >= ANNOUNCE_EVERY);
            if !a.dirty || !due {
                return None;
            }
            a.seq += 1;
            (a.dirty, a.urgent, a.at) = (false, false, Some(clock.now));
            a.seq
        };
        Some(Table { term, seq, sessions: self.own(clock) })
    }
}
