//! `[redis]`: how the relay reaches Redis, for a cluster of relays.

use serde::Deserialize;

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

fn check_node_id(id: &str) -> Result<(), String> {
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
