//! Wire types shared by every Sonde component.
//!
//! This crate does no I/O. It knows the Pusher Channels protocol v7 (frames, channel names,
//! close codes, signatures), RFC 6455 frame heads, and the Sonde events that ride on it.
//! Only this crate derives `Serialize` for wire frames.

pub mod channel;
pub mod close;
pub mod frame;
pub mod sign;
pub mod socket_id;
pub mod sonde;
pub mod webhook;
pub mod wsframe;

pub use channel::{ChannelError, ChannelKind, ChannelName};
pub use close::CloseCode;
pub use frame::{ClientFrame, FrameError, ServerFrame};
pub use socket_id::SocketId;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 7;
