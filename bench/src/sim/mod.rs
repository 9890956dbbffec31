//! Simulated Sonde agents: what the real `sonde-agent` writes to the relay (its token, host
//! channel, minute snapshots, backfill and a sample a second during a session), without its
//! collectors, so one process can stand in for a fleet.

pub mod agent;
pub mod host;
pub mod session;
pub mod stats;
pub mod token;
