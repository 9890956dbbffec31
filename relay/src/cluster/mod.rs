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

mod latency;
mod lease;
mod node;
mod sync;
mod views;

pub use crate::config::RedisConfig;
pub use node::Cluster;
