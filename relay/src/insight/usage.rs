//! Usage counts: per app and per minute, kept for seven days in a bounded ring. What an
//! operator bills or plans with: peak connections, messages in and out, deliveries, agents
//! online, sessions started and their minutes.
//!
//! Each node counts its own minute and, when the minute is over, adds it to its ring and
//! tells the other nodes, which add it to theirs: every node's ring holds the cluster's
//! usage from the time it started. What a node counts alone (connections, messages,
//! deliveries) is summed over the nodes; what every node sees whole (agents online, the
//! session table) is taken from the node that saw most, so it is not counted once per node.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Minutes kept: seven days.
pub const MINUTES_KEPT: usize = 7 * 24 * 60;
/// A day, in milliseconds (today's totals start at midnight UTC).
pub const DAY_MS: u64 = 86_400_000;

/// A minute a peer may announce ahead of this node's clock (clocks drift a little).
const AHEAD_MINUTES: u64 = 2;

/// One minute of one app's usage. `minute` counts minutes since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: u64,
    /// Connections open at once, at the busiest second (summed over nodes).
    pub peak_connections: u64,
    /// Websocket messages received.
    pub messages_in: u64,
    /// Events published to channels (HTTP API events, client events, samples, directives).
    pub messages_out: u64,
    /// Copies of those events queued to subscribers.
    pub deliveries: u64,
    /// Agents online at the busiest second (the cluster's inventory: not summed).
    pub agents_online: u64,
    /// Sessions started (by the node running the session table: not summed).
    pub sessions_started: u64,
    /// Session time: running sessions × milliseconds (not summed).
    pub session_ms: u64,
}

impl Minute {
    /// Adds another node's minute: its own counts summed, the cluster-wide ones the larger.
    fn merge(&mut self, other: &Minute) {
        self.peak_connections = self.peak_connections.saturating_add(other.peak_connections);
        self.messages_in = self.messages_in.saturating_add(other.messages_in);
        self.messages_out = self.messages_out.saturating_add(other.messages_out);
        self.deliveries = self.deliveries.saturating_add(other.deliveries);
        self.agents_online = self.agents_online.max(other.agents_online);
        self.sessions_started = self.sessions_started.max(other.sessions_started);
        self.session_ms = self.session_ms.max(other.session_ms);
    }
}

/// What the relay's counters and tables say at one second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub unix_ms: u64,
    pub connections: u64,
    pub messages_in: u64,
    pub deliveries: u64,
    pub agents_online: u64,
    pub sessions: u64,
}

/// The minute being counted, with the monotonic counters as they were when it opened.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    counts: Minute,
    base_in: u64,
    base_deliveries: u64,
    base_published: u64,
    base_started: u64,
    last_ms: u64,
}

#[derive(Default)]
struct Inner {
    open: Option<Open>,
    /// Closed minutes, oldest first, at most `MINUTES_KEPT`.
    ring: VecDeque<Minute>,
}

/// One app's usage.
#[derive(Default)]
pub struct Usage {
    published: AtomicU64,
    started: AtomicU64,
    inner: Mutex<Inner>,
}

/// Totals over a span of minutes: sums, and peaks as the largest minute's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    pub minutes: u64,
    pub peak_connections: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub deliveries: u64,
    pub peak_agents_online: u64,
    pub sessions_started: u64,
    pub session_minutes: f64,
}

impl Totals {
    pub fn add(&mut self, m: &Minute) {
        self.minutes += 1;
        self.peak_connections = self.peak_connections.max(m.peak_connections);
        self.messages_in = self.messages_in.saturating_add(m.messages_in);
        self.messages_out = self.messages_out.saturating_add(m.messages_out);
        self.deliveries = self.deliveries.saturating_add(m.deliveries);
        self.peak_agents_online = self.peak_agents_online.max(m.agents_online);
        self.sessions_started = self.sessions_started.saturating_add(m.sessions_started);
        self.session_minutes += m.session_ms as f64 / 60_000.0;
    }

    /// Another app's totals over the same span (peaks add up: apps are counted apart).
    pub fn add_app(&mut self, t: &Totals) {
        self.minutes = self.minutes.max(t.minutes);
        self.peak_connections = self.peak_connections.saturating_add(t.peak_connections);
        self.messages_in = self.messages_in.saturating_add(t.messages_in);
        self.messages_out = self.messages_out.saturating_add(t.messages_out);
        self.deliveries = self.deliveries.saturating_add(t.deliveries);
        self.peak_agents_online = self.peak_agents_online.saturating_add(t.peak_agents_online);
        self.sessions_started = self.sessions_started.saturating_add(t.sessions_started);
        self.session_minutes += t.session_minutes;
    }
}

impl Usage {
    /// An event published to a channel (a relaxed add: the publish path's only cost).
    pub fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sessions_started(&self, n: usize) {
        self.started.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Once a second: counts this second into the open minute. Returns the minute that has
    /// just closed, if one has (to be announced to the other nodes); it is in the ring.
    pub fn sample(&self, r: Reading) -> Option<Minute> {
        let minute = r.unix_ms / 60_000;
        let published = self.published.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        let mut inner = self.inner.lock();
        let mut closed = None;
        match inner.open {
            Some(open) if open.counts.minute == minute => {}
            Some(open) => {
                let done = close(&open, &r, published, started);
                insert(&mut inner.ring, done, minute);
                closed = Some(done);
                inner.open = Some(opened(minute, &r, published, started));
            }
            // The first second: the counters began at zero with the app, a moment ago.
            None => inner.open = Some(opened(minute, &Reading { unix_ms: r.unix_ms, ..Reading::default() }, 0, 0)),
        }
        let open = inner.open.as_mut().expect("opened above");
        // The time since the last second, at most a few seconds (a stalled tick counts no more).
        let elapsed = r.unix_ms.saturating_sub(open.last_ms).min(5_000);
        open.last_ms = r.unix_ms;
        let c = &mut open.counts;
        c.peak_connections = c.peak_connections.max(r.connections);
        c.agents_online = c.agents_online.max(r.agents_online);
        c.session_ms = c.session_ms.saturating_add(r.sessions.saturating_mul(elapsed));
        closed
    }

    /// A minute another node closed. Minutes out of the kept window (or far ahead of this
    /// node's clock) are ignored.
    pub fn merge_remote(&self, m: Minute, now_ms: u64) {
        insert(&mut self.inner.lock().ring, m, now_ms / 60_000);
    }

    /// Closed minutes in `[from, to]` (minutes since the epoch), oldest first, and the open
    /// one (this node's counts so far) when it is in the span.
    pub fn minutes(&self, from: u64, to: u64, r: Reading) -> (Vec<Minute>, Option<Minute>) {
        let published = self.published.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        let inner = self.inner.lock();
        let closed: Vec<Minute> = inner.ring.iter().filter(|m| (from..=to).contains(&m.minute)).copied().collect();
        let open = inner.open.filter(|o| (from..=to).contains(&o.counts.minute)).map(|o| close(&o, &r, published, started));
        (closed, open)
    }

    /// The oldest minute this node knows (it knows nothing from before it started).
    pub fn kept_since(&self) -> Option<u64> {
        let inner = self.inner.lock();
        inner.ring.front().map(|m| m.minute).or(inner.open.map(|o| o.counts.minute))
    }

    /// Totals of the minutes in `[from, to]`, the open one included.
    pub fn totals(&self, from: u64, to: u64, r: Reading) -> Totals {
        let (closed, open) = self.minutes(from, to, r);
        let mut t = Totals::default();
        closed.iter().chain(open.iter()).for_each(|m| t.add(m));
        t
    }
}

fn opened(minute: u64, r: &Reading, published: u64, started: u64) -> Open {
    Open {
        counts: Minute { minute, ..Minute::default() },
        base_in: r.messages_in,
        base_deliveries: r.deliveries,
        base_published: published,
        base_started: started,
        last_ms: r.unix_ms,
    }
}

/// The open minute's counts as of `r`.
fn close(open: &Open, r: &Reading, published: u64, started: u64) -> Minute {
    Minute {
        messages_in: r.messages_in.saturating_sub(open.base_in),
        deliveries: r.deliveries.saturating_sub(open.base_deliveries),
        messages_out: published.saturating_sub(open.base_published),
        sessions_started: started.saturating_sub(open.base_started),
        ..open.counts
    }
}

/// Adds `m` to the ring, merged with what is there for its minute, keeping the ring ordered
/// and within the `MINUTES_KEPT` minutes up to `now` (and the few a peer's clock may be
/// ahead).
fn insert(ring: &mut VecDeque<Minute>, m: Minute, now: u64) {
    let oldest = now.saturating_sub(MINUTES_KEPT as u64 - 1);
    if m.minute < oldest || m.minute > now.saturating_add(AHEAD_MINUTES) {
        return;
    }
    match ring.binary_search_by_key(&m.minute, |x| x.minute) {
        Ok(i) => ring[i].merge(&m),
        Err(i) => {
            // Grown by doubling up to the bound exactly, never past it (64 B a minute).
            let bound = MINUTES_KEPT + AHEAD_MINUTES as usize + 1;
            if ring.len() == ring.capacity() && ring.capacity() < bound {
                ring.reserve_exact((ring.capacity() * 2).clamp(16, bound) - ring.len());
            }
            ring.insert(i, m);
        }
    }
    while ring.front().is_some_and(|f| f.minute < oldest) || ring.len() > MINUTES_KEPT + AHEAD_MINUTES as usize {
        ring.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 29_000_000 * 60_000; // a minute boundary in 2025

    fn at(ms: u64) -> Reading {
        Reading { unix_ms: T0 + ms, ..Reading::default() }
    }

    #[test]
    fn a_minute_closes_with_its_counts_and_peaks() {
        let u = Usage::default();
        assert_eq!(u.sample(Reading { connections: 3, messages_in: 100, deliveries: 1_000, ..at(0) }), None);
        u.published();
        u.published();
        u.sessions_started(1);
        assert_eq!(u.sample(Reading { connections: 7, messages_in: 110, deliveries: 1_050, agents_online: 4, sessions: 2, ..at(1_000) }), None);
        assert_eq!(u.sample(Reading { connections: 5, messages_in: 112, deliveries: 1_060, agents_online: 3, sessions: 2, ..at(2_000) }), None);
        let closed = u.sample(Reading { connections: 1, messages_in: 120, deliveries: 1_100, sessions: 1, ..at(60_000) }).unwrap();
        assert_eq!(
            closed,
            Minute {
                minute: T0 / 60_000,
                peak_connections: 7,
                // From zero: the counters began with the app, before its first second.
                messages_in: 120,
                messages_out: 2,
                deliveries: 1_100,
                agents_online: 4,
                sessions_started: 1,
                session_ms: 4_000,
            }
        );
        // The next minute starts from the counters as they were at its first second.
        u.published();
        let (closed_minutes, open) = u.minutes(0, u64::MAX, Reading { messages_in: 125, deliveries: 1_100, ..at(61_000) });
        assert_eq!(closed_minutes, vec![closed]);
        let open = open.unwrap();
        assert_eq!((open.minute, open.messages_in, open.messages_out, open.peak_connections), (T0 / 60_000 + 1, 5, 1, 1));
    }

    #[test]
    fn other_nodes_add_their_own_counts_and_not_the_cluster_wide_ones() {
        let u = Usage::default();
        u.sample(Reading { connections: 2, agents_online: 10, sessions: 1, ..at(0) });
        u.sample(Reading { connections: 2, agents_online: 10, sessions: 1, deliveries: 30, ..at(1_000) });
        let mine = u.sample(Reading { deliveries: 30, ..at(60_000) }).unwrap();
        let theirs = Minute { minute: mine.minute, peak_connections: 5, deliveries: 70, agents_online: 10, session_ms: 1_000, ..Minute::default() };
        u.merge_remote(theirs, T0 + 61_000);
        let (closed, _) = u.minutes(0, u64::MAX, at(61_000));
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].peak_connections, closed[0].deliveries, closed[0].agents_online, closed[0].session_ms), (7, 100, 10, 1_000));
        // A peer's minute that arrives before this node closes its own is merged when it does.
        u.merge_remote(Minute { minute: mine.minute + 1, deliveries: 5, ..Minute::default() }, T0 + 61_000);
        let next = u.sample(Reading { deliveries: 37, ..at(120_000) }).unwrap();
        assert_eq!(next.deliveries, 7, "what is announced is this node's own count");
        let (closed, _) = u.minutes(0, u64::MAX, at(121_000));
        assert_eq!(closed.iter().map(|m| m.deliveries).collect::<Vec<_>>(), vec![100, 12]);
    }

    #[test]
    fn the_ring_keeps_seven_days_and_refuses_minutes_outside_them() {
        let u = Usage::default();
        let now_ms = T0 + 10 * 24 * 3_600_000;
        let now = now_ms / 60_000;
        // Ten days of peers' minutes, each one delivery.
        for m in (now - 10 * 24 * 60)..=now {
            u.merge_remote(Minute { minute: m, deliveries: 1, ..Minute::default() }, now_ms);
        }
        let (closed, _) = u.minutes(0, u64::MAX, Reading { unix_ms: now_ms, ..Reading::default() });
        assert_eq!(closed.len(), MINUTES_KEPT);
        assert_eq!(closed.first().unwrap().minute, now + 1 - MINUTES_KEPT as u64);
        assert!(closed.windows(2).all(|w| w[0].minute < w[1].minute));
        assert!(u.inner.lock().ring.capacity() <= MINUTES_KEPT + AHEAD_MINUTES as usize + 1, "grown to the bound, not past it");
        // Far ahead of this clock, or before the window: ignored.
        u.merge_remote(Minute { minute: now + 60, deliveries: 1, ..Minute::default() }, now_ms);
        u.merge_remote(Minute { minute: 5, deliveries: 1, ..Minute::default() }, now_ms);
        assert_eq!(u.minutes(0, u64::MAX, Reading { unix_ms: now_ms, ..Reading::default() }).0.len(), MINUTES_KEPT);
    }

    #[test]
    fn totals_sum_counts_and_keep_peaks() {
        let u = Usage::default();
        u.sample(Reading { connections: 4, agents_online: 2, ..at(0) });
        u.sample(Reading { connections: 1, messages_in: 10, ..at(60_000) });
        u.sample(Reading { connections: 9, messages_in: 30, ..at(61_000) });
        let t = u.totals(0, u64::MAX, Reading { connections: 9, messages_in: 31, ..at(62_000) });
        assert_eq!((t.minutes, t.peak_connections, t.messages_in, t.peak_agents_online), (2, 9, 31, 2));
    }
}
