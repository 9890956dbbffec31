//! One webhook event on its way: encoded once when it happens, shared by every target that
//! takes it.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use sonde_protocol::webhook::{EventType, WebhookEvent};
use sonde_protocol::ChannelName;

/// Bytes an event costs in a queue besides its JSON (the struct, the `Arc`, the queue slot).
pub(super) const OVERHEAD: usize = 96;

pub struct Event {
    pub kind: EventType,
    pub channel: ChannelName,
    /// The event as one JSON object, as it goes into a request's `events`.
    pub json: Box<str>,
    /// When it happened: delivery latency is counted from here.
    pub at: Instant,
}

impl Event {
    /// `None` when the event cannot be encoded (a client event's data that is not JSON).
    pub fn new(channel: &ChannelName, event: &WebhookEvent<'_>) -> Option<Self> {
        Some(Self { kind: event.kind(), channel: channel.clone(), json: event.encode()?.into_boxed_str(), at: Instant::now() })
    }

    /// What the event costs a queue, in bytes.
    pub fn cost(&self) -> usize {
        self.json.len() + OVERHEAD
    }

    /// Which of a target's connections carries it: the same for every event of a channel.
    pub fn lane(&self, lanes: usize) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.channel.as_str().hash(&mut h);
        (h.finish() % lanes.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_always_takes_the_same_lane() {
        let a = ChannelName::parse("presence-a").unwrap();
        let e1 = Event::new(&a, &WebhookEvent::ChannelOccupied { channel: a.as_str() }).unwrap();
        let e2 = Event::new(&a, &WebhookEvent::MemberAdded { channel: a.as_str(), user_id: "1" }).unwrap();
        assert_eq!(e1.lane(4), e2.lane(4));
        assert!(e1.lane(4) < 4);
        assert_eq!(e1.cost(), e1.json.len() + OVERHEAD);
        let spread: std::collections::HashSet<usize> = (0..64)
            .map(|i| {
                let c = ChannelName::parse(&format!("c{i}")).unwrap();
                Event::new(&c, &WebhookEvent::ChannelOccupied { channel: c.as_str() }).unwrap().lane(4)
            })
            .collect();
        assert_eq!(spread.len(), 4, "channels spread over every lane");
    }
}
