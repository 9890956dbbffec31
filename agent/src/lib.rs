//! The Sonde agent: samples the host every second into a five-minute ring, and streams to the
//! relay only while a session is open.

pub mod clock;
pub mod collect;
pub mod ring;
pub mod tick;
