//! Helpers that read like a small language: `TestRelay::spawn()`, `relay.client()`,
//! `client.expect("event")`, `relay.api().post(...)`.
//!
//! The relay runs in-process on a real listener bound to 127.0.0.1:0 and is reached only
//! through real websockets and real HTTP.

pub mod agent;
pub mod client;
pub mod cluster;
pub mod raw;
pub mod relay;
pub mod tls;
pub mod tokens;
pub mod wait;

pub use client::{Client, Frame};
pub use relay::{Api, TestRelay};
pub use wait::eventually;

/// How long any single expectation waits before failing the test.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
