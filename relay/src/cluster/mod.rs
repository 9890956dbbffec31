//! Several relays behind a load balancer, coordinated through Redis pub/sub.
//!
//! Every node publishes what others must know (publishes, subscriber counts, presence
//! members, signed-in users, viewers and agents per host, inventory, the session table) on
//! one bus channel and keeps a view of each other node from what it hears. Nodes send a
//! heartbeat every `heartbeat_ms`; a node silent for `node_timeout_ms` is dropped with
//! everything it reported. A node (re)joining says `Hello`: every node answers with its whole
//! state between `SyncStart` and `SyncDone`, and entries a node no longer reports are removed,
//! so the cluster converges after a node or Redis comes back. Sessions are run by one leader,
//! the node holding the leader lease in Redis (`lease`); the others follow its table.

pub mod bus;
mod latency;
mod lease;
mod node;
mod sync;
mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use node::Cluster;

use crate::hub::NodeId;
use crate::sessions::{SessionInfo, Table};
use bus::{Envelope, Msg, SessionRecord};

/// How the relay reaches Redis.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every Redis key and channel, so clusters and apps can share one Redis.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How often a node says it is alive.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// A node silent this long is dropped cluster-wide (its members, counts and sessions);
    /// also the time to live of the session leader's lease.
    #[serde(default = "default_timeout")]
    pub node_timeout_ms: u64,
    /// This node's id in the cluster (default: random at each start). For tests and for
    /// operators who want a restarted node to keep its identity (a StatefulSet's pod name, say):
    /// it must be unique in the cluster. Up to 64 of `A-Z a-z 0-9 - _ .`.
    #[serde(default, deserialize_with = "node_id")]
    pub node_id: Option<String>,
}

/// Longest node id.
const MAX_NODE_ID: usize = 64;

/// Checks a node id: it names Redis keys and travels in every bus message.
/// The Redis URL's password never reaches `Debug` output or logs.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("prefix", &self.prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("node_id", &self.node_id)
            .finish()
    }
}

pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty() && id.len() <= MAX_NODE_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("node_id must be 1 to {MAX_NODE_ID} of A-Z a-z 0-9 - _ . (got {id:?})"))
    }
}

fn node_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = Option::<String>::deserialize(d)?;
    if let Some(id) = &id {
        check_node_id(id).map_err(serde::de::Error::custom)?;
    }
    Ok(id)
}

fn default_prefix() -> String {
    "sonde".into()
}
fn default_heartbeat() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    5000
}

impl RedisConfig {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: default_prefix(), heartbeat_ms: default_heartbeat(), node_timeout_ms: default_timeout(), node_id: None }
    }
}

/// Messages queued for the bus before they are dropped (Redis slow or away).
const OUTBOX: usize = 65_536;

/// The sending half every app holds: never blocks, drops (and counts) when Redis is away.
#[derive(Clone)]
pub struct Link {
    node: NodeId,
    tx: mpsc::Sender<Vec<u8>>,
    up: Arc<AtomicBool>,
    dropped: Counter,
}

impl Link {
    fn new(node: NodeId, dropped: Counter) -> (Self, mpsc::Receiver<Vec<u8>>) {
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
