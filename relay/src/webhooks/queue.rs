//! One lane of a target: a bounded queue of events, drained by one sender task. Pushing never
//! waits: beyond its byte budget the oldest events make room (and are counted).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::event::Event;

#[derive(Default)]
struct State {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
}

#[derive(Default)]
pub(super) struct Lane {
    state: Mutex<State>,
    /// Wakes the lane's sender; a wake-up given while it is busy is kept for its next wait.
    pub wake: Notify,
}

impl Lane {
    /// Queues `ev`, dropping the oldest events while the lane holds more than `budget` bytes
    /// (the new one is always kept). Returns how many were dropped.
    pub fn push(&self, ev: Arc<Event>, budget: usize) -> usize {
        let mut dropped = 0;
        {
            let mut st = self.state.lock();
            st.bytes += ev.cost();
            st.events.push_back(ev);
            while st.bytes > budget && st.events.len() > 1 {
                let Some(old) = st.events.pop_front() else { break };
                st.bytes -= old.cost();
                dropped += 1;
            }
        }
        self.wake.notify_one();
        dropped
    }

    /// Takes up to `max` events, oldest first, stopping before `max_bytes` of JSON (but always
    /// at least one).
    pub fn take(&self, max: usize, max_bytes: usize) -> Vec<Arc<Event>> {
        let mut st = self.state.lock();
        let (mut n, mut bytes) = (0, 0);
        for e in st.events.iter().take(max) {
            bytes += e.json.len();
            if n > 0 && bytes > max_bytes {
                break;
            }
            n += 1;
        }
        let out: Vec<Arc<Event>> = st.events.drain(..n).collect();
        st.bytes -= out.iter().map(|e| e.cost()).sum::<usize>();
        out
    }

    pub fn len(&self) -> usize {
        self.state.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_protocol::webhook::WebhookEvent;
    use sonde_protocol::ChannelName;

    fn ev(i: usize) -> Arc<Event> {
        let c = ChannelName::parse(&format!("c{i}")).unwrap();
        Arc::new(Event::new(&c, &WebhookEvent::ChannelOccupied { channel: c.as_str() }).unwrap())
    }

    #[test]
    fn bounded_by_bytes_dropping_the_oldest() {
        let lane = Lane::default();
        let one = ev(0).cost();
        let mut dropped = 0;
        for i in 0..100 {
            dropped += lane.push(ev(i), one * 10 + one / 2);
        }
        assert_eq!(lane.len(), 10);
        assert_eq!(dropped, 90);
        assert!(lane.bytes() <= one * 10 + one / 2);
        let first = lane.take(3, usize::MAX);
        assert_eq!(first[0].channel.as_str(), "c90", "the newest are kept, in order");
        assert_eq!(lane.len(), 7);
        assert_eq!(lane.take(100, first[0].json.len() * 2).len(), 2, "stops at the byte bound");
        assert_eq!(lane.take(100, 0).len(), 1, "at least one");
        assert_eq!(lane.take(100, usize::MAX).len(), 4);
        assert_eq!(lane.bytes(), 0);
        assert_eq!(lane.push(ev(1), 1), 0, "one event over the budget is still kept");
    }
}
