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
