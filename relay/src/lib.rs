//! `sonde-relay`: a Pusher Channels v7 server and HTTP API with realtime metrics sessions.

pub mod config;
pub mod hub;
