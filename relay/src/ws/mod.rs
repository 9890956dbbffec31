//! The websocket edge: upgrade, framing, one task per connection.

pub mod accept;
pub mod codec;
pub mod conn;
pub mod handler;
pub mod handshake;
mod payloads;
pub mod tcp;
pub mod upgrade;
pub mod wire;

use std::sync::Arc;

use crate::apps::Apps;
use crate::edge::Door;

/// The websocket edge's part of the relay's state: the door, the apps a key may name, the
/// connections' timeouts, and whether the listener speaks TLS (for the recorder's labels).
#[derive(Clone)]
pub struct Endpoint {
    pub door: Door,
    pub apps: Arc<Apps>,
    pub timing: conn::Timing,
    pub tls: bool,
}
