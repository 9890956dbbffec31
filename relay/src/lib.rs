//! `sonde-relay`: a Pusher Channels v7 server and HTTP API with realtime metrics sessions.
//!
//! `server::run` takes an already-bound listener and a shutdown future, so tests bind
//! port 0 and drive the real server.

pub mod accept;
pub mod apps;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod edge;
pub mod health;
pub mod http;
pub mod hub;
pub mod insight;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod proxied;
pub mod proxy_header;
pub mod redact;
pub mod reply;
pub mod server;
pub mod sessions;
pub mod ticks;
pub mod tls;
pub mod tokens;
pub mod webhooks;
pub mod ws;
