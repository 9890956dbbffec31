//! An app's limits (flattened into its `[[apps]]` table): Pusher's defaults when omitted.

use serde::Deserialize;

/// Per-app limits. Zero means unlimited where noted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Concurrent websocket connections (0: unlimited); over it → close 4004.
    pub max_connections: usize,
    /// Distinct users in one presence channel.
    pub max_presence_members: usize,
    /// Bytes of one member's `user_info`.
    pub max_presence_member_info_bytes: usize,
    /// Bytes of an event's `data`.
    pub max_payload_bytes: usize,
    /// Characters of an event name.
    pub max_event_name_len: usize,
    /// Channels named by one HTTP trigger.
    pub max_channels_per_event: usize,
    /// Events in one `batch_events` call.
    pub max_batch_events: usize,
    /// Client events each connection may send per second; over it → `pusher:error` 4301.
    pub client_events_per_second: u32,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl_s: u64,
    /// Bytes of one incoming websocket message.
    pub max_message_bytes: usize,
    /// Bytes of frames queued for one connection before it counts as hopelessly behind.
    pub max_outbox_bytes: usize,
    /// Channels one connection may be subscribed to.
    pub max_channels_per_connection: usize,
    /// Client events per second on channels a token's publish capability covers.
    pub token_client_events_per_second: u32,
    /// New websocket connections per second from one client IP (0: unlimited); over it → 4100.
    pub new_connections_per_second_per_ip: u32,
    /// HTTP API requests per second for the app (0: unlimited); over it → 429.
    pub http_requests_per_second: u32,
    /// Realtime sessions running at once (0: unlimited); a server-side start beyond it → 429.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_presence_members: 100,
            max_presence_member_info_bytes: 2 * 1024,
            max_payload_bytes: 10 * 1024,
            max_event_name_len: 200,
            max_channels_per_event: 100,
            max_batch_events: 10,
            client_events_per_second: 10,
            cache_ttl_s: 30 * 60,
            max_message_bytes: 32 * 1024,
            max_outbox_bytes: 1024 * 1024,
            max_channels_per_connection: 100,
            token_client_events_per_second: 100,
            new_connections_per_second_per_ip: 0,
            http_requests_per_second: 0,
            max_sessions: 1000,
        }
    }
}
