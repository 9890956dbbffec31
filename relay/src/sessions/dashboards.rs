//! The dashboards following the inventory on this node, for sizing the update flushes made
//! between the once-a-second ones: an update goes to every dashboard at once, so such a flush
//! takes no more than the fullest of their outboxes has room for. Dashboards that read keep
//! their outboxes empty and get a backlog as fast as they read; one that does not read holds
//! back only these extra flushes (the once-a-second flush goes out regardless, and a reader
//! that falls too far behind is closed as any slow reader is).

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::hub::Conn;

#[derive(Default)]
pub struct Dashboards {
    conns: Mutex<Vec<Weak<Conn>>>,
}

impl Dashboards {
    /// A connection subscribed to the inventory. Each connection is kept once; closed ones
    /// are forgotten at the next `room`, so the list is bounded by the open connections.
    pub fn add(&self, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock();
        if !conns.iter().any(|c| c.as_ptr() == Arc::as_ptr(conn)) {
            conns.push(Arc::downgrade(conn));
        }
    }

    /// Bytes a flush of updates may queue: half of `limit` less what the fullest dashboard
    /// (still following, per `follows`) has queued. Half of `limit` when there is none.
    pub fn room(&self, limit: usize, follows: impl Fn(&Conn) -> bool) -> usize {
        let mut fullest = 0;
        self.conns.lock().retain(|w| {
            let Some(c) = w.upgrade() else { return false };
            if c.outbox.is_closing() || !follows(&c) {
                return false;
            }
            fullest = fullest.max(c.outbox.queued_bytes());
            true
        });
        (limit / 2).saturating_sub(fullest)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sonde_protocol::SocketId;

    #[test]
    fn room_is_what_the_fullest_dashboard_leaves() {
        let d = Dashboards::default();
        assert_eq!(d.room(1_000, |_| true), 500, "no dashboard");
        let (a, b) = (Conn::new(SocketId::new(1, 1), 1_000, 0), Conn::new(SocketId::new(1, 2), 1_000, 0));
        d.add(&a);
        d.add(&a);
        d.add(&b);
        assert_eq!(d.len(), 2, "each connection once");
        assert_eq!(d.room(1_000, |_| true), 500, "both empty");
        // Without a writer the frames stay queued.
        a.outbox.push(Bytes::from(vec![b'x'; 120]));
        b.outbox.push(Bytes::from(vec![b'x'; 300]));
        assert_eq!(d.room(1_000, |_| true), 200);
        b.outbox.push(Bytes::from(vec![b'x'; 300]));
        assert_eq!(d.room(1_000, |_| true), 0, "the fullest has half its bound queued");
        // One that stopped following, or closed, no longer holds the others back.
        assert_eq!(d.room(1_000, |c| c.socket_id != b.socket_id), 380);
        assert_eq!(d.len(), 1);
        drop(a);
        assert_eq!(d.room(1_000, |_| true), 500);
        assert_eq!(d.len(), 0);
    }
}
