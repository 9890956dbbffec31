//! `[edge]` and `trusted_proxies`: the limits of the internet-facing edge.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// Limits of the internet-facing edge, for the whole relay. Zero means unlimited where noted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Sockets served at once (websockets and HTTP), counted as soon as they are accepted.
    /// 0: derived from the process's descriptor limit, less `reserved_descriptors`.
    pub max_sockets: usize,
    /// Descriptors kept back from clients for the relay's own use (Redis, files, listeners).
    pub reserved_descriptors: usize,
    /// Sockets accepted beyond `max_sockets` for `/healthz`, `/readyz` and `/metrics` only.
    pub health_sockets: usize,
    /// Sockets one client address may hold at once (0: unlimited).
    pub max_sockets_per_ip: usize,
    /// Sockets of one client address that have not yet sent a whole request head (0: unlimited).
    pub max_handshakes_per_ip: usize,
    /// Time from accepting a socket to its whole request head (websocket or HTTP); also how
    /// long a kept-alive HTTP connection may wait for its next request.
    pub head_timeout_ms: u64,
    /// Time an HTTP request may take from its head to its response, body included.
    pub request_timeout_ms: u64,
    /// Failed HTTP API authentications per second from one address before it gets 429
    /// (burst: ten times as many).
    pub auth_failures_per_second_per_ip: u32,
    /// Sockets from `trusted_proxies` start with a PROXY protocol header (v1 or v2) naming the
    /// client, which the per-address limits then count; other peers' bytes are their own.
    pub proxy_protocol: bool,
}

/// Default sockets per client address: room for a large office behind one NAT.
pub const DEFAULT_MAX_SOCKETS_PER_IP: usize = 1000;

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            max_sockets: 0,
            reserved_descriptors: 64,
            health_sockets: 16,
            max_sockets_per_ip: DEFAULT_MAX_SOCKETS_PER_IP,
            max_handshakes_per_ip: 64,
            head_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            auth_failures_per_second_per_ip: 5,
            proxy_protocol: false,
        }
    }
}

/// An IP address or a CIDR block, as written in `trusted_proxies`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| format!("'{s}' is neither an IP address nor a CIDR block"))
}
