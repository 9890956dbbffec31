//! `[sessions]`: the timing of realtime sessions.

use serde::Deserialize;

/// Timing of realtime sessions, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// How long a session outlives its last viewer.
    pub grace_ms: u64,
    /// How far ahead each lease runs.
    pub lease_ms: u64,
    /// How often leases are renewed (must be well below `lease_ms`).
    pub renew_ms: u64,
    /// The sampling interval agents are asked for.
    pub interval_ms: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { grace_ms: 10_000, lease_ms: 30_000, renew_ms: 10_000, interval_ms: 1000 }
    }
}
