//! The dashboards following the inventory on this node, for sizing its update flushes: an
//! update goes to every dashboard at once, so a flush takes no more than the fullest of their
//! outboxes has room for below half its bound. Dashboards that read keep their outboxes near
//! empty and get a backlog as fast as they read. One that stops reading would hold everyone
//! back, so a dashboard whose outbox has stayed a quarter full for `STALLED` no longer counts:
//! the flushes go on, its outbox overflows and it is closed, as any slow reader is.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::hub::Conn;

/// How long an outbox may stay a quarter full before its dashboard stops holding back the
/// others' updates.
const STALLED: Duration = Duration::from_secs(2);

struct Dashboard {
    conn: Weak<Conn>,
    /// Since when its outbox has held a quarter of its bound or more.
    full_since: Option<Instant>,
}

#[derive(Default)]
pub struct Dashboards {
    list: Mutex<Vec<Dashboard>>,
}

impl Dashboards {
    /// A connection subscribed to the inventory. Each connection is kept once; closed ones
    /// are forgotten at the next `room`, so the list is bounded by the open connections.
    pub fn add(&self, conn: &Arc<Conn>) {
        let mut list = self.list.lock();
        if !list.iter().any(|d| d.conn.as_ptr() == Arc::as_ptr(conn)) {
            list.push(Dashboard { conn: Arc::downgrade(conn), full_since: None });
        }
    }

    /// Bytes a flush of updates may queue at `now`: half of `limit` less what the fullest
    /// dashboard still following (per `follows`) and not stalled has queued.
    pub fn room(&self, limit: usize, now: Instant, follows: impl Fn(&Conn) -> bool) -> usize {
        let mut fullest = 0;
        self.list.lock().retain_mut(|d| {
            let Some(c) = d.conn.upgrade() else { return false };
            if c.outbox.is_closing() || !follows(&c) {
                return false;
            }
            let queued = c.outbox.queued_bytes();
            d.full_since = if queued >= limit / 4 { Some(d.full_since.unwrap_or(now)) } else { None };
            if d.full_since.is_none_or(|t| now.saturating_duration_since(t) < STALLED) {
                fullest = fullest.max(queued);
            }
            true
        });
        (limit / 2).saturating_sub(fullest)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.list.lock().len()
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
        let t = Instant::now();
        assert_eq!(d.room(1_000, t, |_| true), 500, "no dashboard");
        let (a, b) = (Conn::new(SocketId::new(1, 1), 1_000, 0), Conn::new(SocketId::new(1, 2), 1_000, 0));
        d.add(&a);
        d.add(&a);
        d.add(&b);
        assert_eq!(d.len(), 2, "each connection once");
        assert_eq!(d.room(1_000, t, |_| true), 500, "both empty");
        // Without a writer the frames stay queued.
        a.outbox.push(Bytes::from(vec![b'x'; 120]));
        b.outbox.push(Bytes::from(vec![b'x'; 300]));
        assert_eq!(d.room(1_000, t, |_| true), 200);
        b.outbox.push(Bytes::from(vec![b'x'; 300]));
        assert_eq!(d.room(1_000, t, |_| true), 0, "the fullest has half its bound queued");
        // Still full two seconds on: it no longer holds the other back.
        assert_eq!(d.room(1_000, t + Duration::from_millis(1_500), |_| true), 0);
        assert_eq!(d.room(1_000, t + STALLED, |_| true), 380);
        // One that stopped following, or closed, is forgotten.
        assert_eq!(d.room(1_000, t, |c| c.socket_id != b.socket_id), 380);
        assert_eq!(d.len(), 1);
        drop(a);
        assert_eq!(d.room(1_000, t, |_| true), 500);
        assert_eq!(d.len(), 0);
    }
}
