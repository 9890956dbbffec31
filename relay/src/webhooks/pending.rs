//! Cluster-wide events seen by a node that does not send them (it does not hold the leader
//! lease), kept until the leader has surely seen them too.
//!
//! Every node sees the same cluster-wide transitions (from its own clients and from what the
//! others report on the bus, totally ordered by Redis); only the leader sends them. A follower
//! keeps each one until the leader has sent `CONFIRM_BEATS` heartbeats after it: by then the
//! leader has received it (Redis delivers in order) and handled it (it handles bus messages
//! in order, well within a heartbeat). If the leader dies first, its departure's events (its
//! members leaving, its channels emptying) and whatever it may have missed are still here, and
//! the node that takes the lease sends them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::Event;

/// Leader heartbeats after which the leader has surely handled an event.
pub(super) const CONFIRM_BEATS: u64 = 2;
/// Most events kept while no leader confirms them (a leaderless cluster); the oldest go first.
pub(super) const MAX_PENDING: usize = 100_000;

#[derive(Default)]
pub(super) struct Pending {
    events: VecDeque<(u64, Arc<Event>)>,
    /// Leader heartbeats heard.
    beats: u64,
}

impl Pending {
    /// Keeps an event; returns how many old ones were forgotten to stay within the bound.
    pub fn push(&mut self, ev: Arc<Event>) -> usize {
        self.events.push_back((self.beats, ev));
        let over = self.events.len().saturating_sub(MAX_PENDING);
        self.events.drain(..over);
        over
    }

    /// A heartbeat of the leader: forgets what it has surely handled.
    pub fn beat(&mut self) {
        self.beats += 1;
        while self.events.front().is_some_and(|(b, _)| b + CONFIRM_BEATS <= self.beats) {
            self.events.pop_front();
        }
    }

    /// Everything kept, oldest first: this node now sends them.
    pub fn take(&mut self) -> Vec<Arc<Event>> {
        self.events.drain(..).map(|(_, e)| e).collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_protocol::webhook::WebhookEvent;
    use sonde_protocol::ChannelName;

    fn ev(name: &str) -> Arc<Event> {
        let c = ChannelName::parse(name).unwrap();
        Arc::new(Event::new(&c, &WebhookEvent::ChannelVacated { channel: c.as_str() }).unwrap())
    }

    #[test]
    fn confirmed_after_two_leader_beats() {
        let mut p = Pending::default();
        p.push(ev("a"));
        p.beat();
        p.push(ev("b"));
        assert_eq!(p.len(), 2);
        p.beat();
        assert_eq!(p.len(), 1, "a was followed by two beats");
        let left = p.take();
        assert_eq!(left[0].channel.as_str(), "b");
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn bounded() {
        let mut p = Pending::default();
        let mut forgotten = 0;
        for i in 0..MAX_PENDING + 10 {
            forgotten += p.push(ev(&format!("c{i}")));
        }
        assert_eq!(forgotten, 10);
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(p.take()[0].channel.as_str(), "c10");
    }
}
