//! The sending half of the bus every app holds, and the session table as bus records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{Envelope, Msg, SessionRecord};
use crate::hub::NodeId;
use crate::sessions::{SessionInfo, Table};

/// Messages queued for the bus before they are dropped (Redis slow or away).
const OUTBOX: usize = 65_536;

/// The sending half every app holds: never blocks, drops (and counts) when Redis is away.
#[derive(Clone)]
pub struct Link {
    node: NodeId,
    tx: mpsc::Sender<Vec<u8>>,
    pub(crate) up: Arc<AtomicBool>,
    dropped: Counter,
}

impl Link {
    pub(crate) fn new(node: NodeId, dropped: Counter) -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        (Self { node, tx, up: Arc::new(AtomicBool::new(false)), dropped }, rx)
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn send(&self, app: &str, msg: Msg) {
        if !self.is_up() {
            // Never the message itself: it may carry payloads and user data.
            tracing::debug!("cluster: Redis is away; a bus message was dropped");
            self.dropped.inc();
            return;
        }
        let bytes = Envelope::new(&self.node, app, msg).encode();
        if self.tx.try_send(bytes).is_err() {
            self.dropped.inc();
        }
    }
}

impl From<&SessionInfo> for SessionRecord {
    fn from(i: &SessionInfo) -> Self {
        Self {
            host: i.host.to_string(),
            id: i.id.clone(),
            started_ms: i.started_ms,
            lease_until_ms: i.lease_until_ms,
            until_ms: i.until_ms,
            viewers: i.viewers,
            started_by: i.started_by,
        }
    }
}

impl From<&SessionRecord> for SessionInfo {
    fn from(r: &SessionRecord) -> Self {
        Self {
            host: r.host.as_str().into(),
            id: r.id.clone(),
            started_ms: r.started_ms,
            viewers: r.viewers,
            lease_until_ms: r.lease_until_ms,
            until_ms: r.until_ms,
            started_by: r.started_by,
        }
    }
}

impl From<&Table> for Msg {
    fn from(t: &Table) -> Self {
        Msg::Sessions { term: t.term, seq: t.seq, sessions: t.sessions.iter().map(SessionRecord::from).collect() }
    }
}
