//! Relay configuration: plain data, typed defaults, loaded from TOML and overridden by flags.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Where the relay listens when nothing else is said.
pub const DEFAULT_BIND: &str = "127.0.0.1:6001";
/// Seconds of silence after which a client should ping (sent in the handshake).
pub const DEFAULT_ACTIVITY_TIMEOUT_S: u64 = 120;
/// Seconds the server waits for a pong after its own ping before closing with 4201.
pub const DEFAULT_PONG_TIMEOUT_S: u64 = 30;

/// The whole relay configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the websocket endpoint, the HTTP API and the dashboard listen on.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Advertised in `pusher:connection_established`; the server pings a silent client after it.
    #[serde(default = "default_activity_timeout")]
    pub activity_timeout_s: u64,
    /// How long the server waits for any frame after its own ping.
    #[serde(default = "default_pong_timeout")]
    pub pong_timeout_s: u64,
    /// Threads that write large fan-outs (channels with more than 16 subscribers); default:
    /// one per core.
    #[serde(default)]
    pub fanout_threads: Option<usize>,
    /// Threads that serve connections, each with its own event loop; default: one per core.
    /// 0 serves them on the runtime that runs the server (as embedded in a program).
    #[serde(default)]
    pub io_threads: Option<usize>,
    /// A second, plain HTTP listener for `/healthz`, `/readyz` and `/metrics` only (an
    /// internal address for Prometheus and health checks), unaffected by the public edge.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
    /// Addresses of reverse proxies and load balancers (IPs or CIDR blocks) whose
    /// `X-Forwarded-For` names the real client: only for them is the header believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// TLS on the public listener (`[tls]`): websockets, the API and the dashboard over it.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Limits of the internet-facing edge: sockets, deadlines, per-address limits.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// Realtime session timing.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Redis for a cluster of relays; without it the relay is one in-memory node.
    #[serde(default)]
    pub redis: Option<crate::cluster::RedisConfig>,
    /// How webhooks are delivered (timeouts, retries, queue bounds), for every app.
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhookSettings,
    /// The flight recorder of slow and failed events (`[recorder]`).
    #[serde(default)]
    pub recorder: crate::insight::RecorderConfig,
    /// The apps (accounts) this relay serves.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

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

/// Timing of realtime sessions, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// How long a session outlives its last viewer.
    pub grace_ms: u64,
    /// How far ahead each lease runs.
    pub lease_ms: u64,
    /// How often leases are renewed (must be well below `lease_ms`).
    pub renew_ms: u64,
    /// The sampling interval agents are asked for.
    pub interval_ms: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { grace_ms: 10_000, lease_ms: 30_000, renew_ms: 10_000, interval_ms: 1000 }
    }
}

impl SessionsConfig {
    pub fn timing(&self) -> crate::sessions::SessionTiming {
        use std::time::Duration;
        crate::sessions::SessionTiming {
            grace: Duration::from_millis(self.grace_ms),
            lease: Duration::from_millis(self.lease_ms),
            renew_every: Duration::from_millis(self.renew_ms),
            interval_ms: self.interval_ms,
        }
    }
}

fn default_bind() -> SocketAddr {
    DEFAULT_BIND.parse().expect("constant address")
}
fn default_activity_timeout() -> u64 {
    DEFAULT_ACTIVITY_TIMEOUT_S
}
fn default_pong_timeout() -> u64 {
    DEFAULT_PONG_TIMEOUT_S
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            activity_timeout_s: DEFAULT_ACTIVITY_TIMEOUT_S,
            pong_timeout_s: DEFAULT_PONG_TIMEOUT_S,
            fanout_threads: None,
            io_threads: None,
            metrics_bind: None,
            trusted_proxies: Vec::new(),
            tls: None,
            edge: EdgeConfig::default(),
            sessions: SessionsConfig::default(),
            redis: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
            recorder: crate::insight::RecorderConfig::default(),
            apps: Vec::new(),
        }
    }
}

/// One app: an account with its credentials, switches and limits.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Numeric id used in HTTP API paths (`/apps/{id}/…`).
    pub id: String,
    /// Public key used in websocket URLs and auth strings.
    pub key: String,
    /// Shared secret for HMAC signatures. Never logged.
    pub secret: String,
    /// A disabled app refuses websockets (4003) and API calls (403).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether clients may send `client-` events on private and presence channels.
    #[serde(default)]
    pub client_events: bool,
    /// Whether `pusher:signin` is accepted.
    #[serde(default = "yes")]
    pub user_authentication: bool,
    /// Whether subscribers receive `pusher_internal:subscription_count` (not on presence).
    #[serde(default)]
    pub subscription_count: bool,
    /// Origins allowed to open websockets (the browser's `Origin`); empty allows any.
    /// An entry `*.example.com` allows every subdomain.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Public keys that may sign tokens for this app (RS256, ES256, EdDSA).
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// Clock skew tolerated on token `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub token_leeway_s: u64,
    /// Backends told of channel, presence, client and Sonde events (`[[apps.webhooks]]`).
    #[serde(default)]
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// How long an event waits for others to share its webhook request; 0 sends one event
    /// per request.
    #[serde(default)]
    pub webhook_batch_ms: u64,
    /// Limits; Pusher's defaults when omitted.
    #[serde(default, flatten)]
    pub limits: Limits,
}

/// Default clock skew tolerated on tokens.
pub const DEFAULT_TOKEN_LEEWAY_S: u64 = 30;

fn default_leeway() -> u64 {
    DEFAULT_TOKEN_LEEWAY_S
}

/// A public key registered for an app, as PEM text or a PEM file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// Key id matched against the token header's `kid`, when both are present.
    #[serde(default)]
    pub kid: Option<String>,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// The PEM text.
    #[serde(default)]
    pub pem: Option<String>,
    /// A file holding the PEM text.
    #[serde(default)]
    pub pem_file: Option<std::path::PathBuf>,
}

impl PublicKeyConfig {
    pub fn pem_text(&self) -> Result<String, String> {
        match (&self.pem, &self.pem_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display())),
            _ => Err("a public key needs exactly one of pem or pem_file".into()),
        }
    }
}

impl AppConfig {
    /// This app's token verifier (the config knows tokens' settings type, never the reverse).
    pub fn verifier(&self) -> Result<crate::tokens::Verifier, String> {
        let mut public_keys = Vec::with_capacity(self.public_keys.len());
        for k in &self.public_keys {
            let pem = k.pem_text().map_err(|e| format!("app {}: {e}", self.id))?;
            public_keys.push(crate::tokens::PublicKeyPem { kid: k.kid.clone(), alg: k.alg.clone(), pem });
        }
        let settings = crate::tokens::KeySettings { app_id: &self.id, secret: &self.secret, public_keys, leeway_s: self.token_leeway_s };
        crate::tokens::Verifier::new(&settings)
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("client_events", &self.client_events)
            .field("allowed_origins", &self.allowed_origins)
            .field("public_keys", &self.public_keys.len())
            .field("webhooks", &self.webhooks)
            .field("webhook_batch_ms", &self.webhook_batch_ms)
            .field("limits", &self.limits)
            .finish()
    }
}

fn yes() -> bool {
    true
}

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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("--app must be ID:KEY:SECRET, got '{0}'")]
    AppSyntax(String),
    #[error("app id '{0}' must be numeric (the official SDKs reject other ids)")]
    AppId(String),
    #[error("app {0}: key and secret must not be empty")]
    EmptyCredential(String),
    #[error("app key '{0}' must use only letters, digits, '-' and '_'")]
    KeySyntax(String),
    #[error("two apps share the id '{0}'")]
    DuplicateId(String),
    #[error("two apps share the key '{0}'")]
    DuplicateKey(String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: p, source })
    }

    /// Checks everything a running relay relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for app in &self.apps {
            if app.id.is_empty() || !app.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::AppId(app.id.clone()));
            }
            if app.key.is_empty() || app.secret.is_empty() {
                return Err(ConfigError::EmptyCredential(app.id.clone()));
            }
            if !app.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::KeySyntax(app.key.clone()));
            }
            if !ids.insert(app.id.clone()) {
                return Err(ConfigError::DuplicateId(app.id.clone()));
            }
            if !keys.insert(app.key.clone()) {
                return Err(ConfigError::DuplicateKey(app.key.clone()));
            }
            app.verifier().map_err(ConfigError::Invalid)?;
            crate::webhooks::config::validate_app(&app.id, &app.webhooks, app.webhook_batch_ms).map_err(ConfigError::Invalid)?;
            let l = &app.limits;
            if l.max_message_bytes < l.max_payload_bytes {
                return Err(ConfigError::Invalid(format!(
                    "app {}: max_message_bytes ({}) must be at least max_payload_bytes ({})",
                    app.id, l.max_message_bytes, l.max_payload_bytes
                )));
            }
        }
        self.recorder.validate().map_err(ConfigError::Invalid)?;
        let t = &self.sessions;
        if t.interval_ms == 0 || t.renew_ms == 0 || t.renew_ms * 2 > t.lease_ms {
            return Err(ConfigError::Invalid("sessions: interval_ms and renew_ms must be positive and renew_ms at most half of lease_ms".into()));
        }
        if self.edge.head_timeout_ms == 0 || self.edge.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid("edge: head_timeout_ms and request_timeout_ms must be positive".into()));
        }
        for p in &self.trusted_proxies {
            crate::edge::parse_net(p).map_err(|e| ConfigError::Invalid(format!("trusted_proxies: {e}")))?;
        }
        if self.edge.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(ConfigError::Invalid("edge: proxy_protocol needs trusted_proxies, the load balancers whose PROXY header is believed".into()));
        }
        self.webhooks.validate().map_err(ConfigError::Invalid)?;
        if self.activity_timeout_s == 0 || self.pong_timeout_s == 0 {
            return Err(ConfigError::Invalid("activity_timeout_s and pong_timeout_s must be positive".into()));
        }
        Ok(())
    }
}

impl AppConfig {
    /// Parses `ID:KEY:SECRET` as given to `--app`: client events and sign-in on, Pusher's limits,
    /// so a quick start behaves like hosted Pusher.
    pub fn from_flag(spec: &str) -> Result<Self, ConfigError> {
        let mut parts = spec.splitn(3, ':');
        let (Some(id), Some(key), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ConfigError::AppSyntax(spec.to_owned()));
        };
        Ok(Self {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            enabled: true,
            client_events: true,
            user_authentication: true,
            subscription_count: false,
            allowed_origins: Vec::new(),
            public_keys: Vec::new(),
            token_leeway_s: DEFAULT_TOKEN_LEEWAY_S,
            webhooks: Vec::new(),
            webhook_batch_ms: 0,
            limits: Limits::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults() {
        let cfg: Config = toml::from_str(
            r#"
            bind = "127.0.0.1:7000"
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            subscription_count = true
            max_connections = 5
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let app = &cfg.apps[0];
        assert!(app.enabled && !app.client_events && app.subscription_count);
        assert_eq!(app.limits.max_connections, 5);
        assert_eq!(app.limits.max_payload_bytes, 10240);
        assert!(!format!("{app:?}").contains("s2"), "the secret never reaches Debug output");
    }

    #[test]
    fn webhooks_in_the_documented_shape() {
        let cfg: Config = toml::from_str(
            r#"
            [webhooks]
            retry_window_s = 60
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            webhook_batch_ms = 250
            [[apps.webhooks]]
            url = "http://backend.example.com/pusher/webhooks"
            event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]
            channel_prefix = "presence-"
            headers = { "X-Env" = "prod" }
            [[apps.webhooks]]
            url = "http://audit.example.com/"
            event_types = ["sonde_session_started", "sonde_agent_offline"]
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.webhooks.retry_window_s, 60);
        let app = &cfg.apps[0];
        assert_eq!((app.webhooks.len(), app.webhook_batch_ms), (2, 250));
        assert_eq!(app.webhooks[0].channel_prefix.as_deref(), Some("presence-"));
        let mut https = cfg.clone();
        https.apps[0].webhooks[0].url = "https://backend.example.com/".into();
        https.validate().unwrap();
        https.webhooks.ca_file = Some("/does/not/exist.pem".into());
        let err = https.validate().unwrap_err().to_string();
        assert!(err.contains("ca_file") && err.contains("/does/not/exist.pem"), "{err}");
    }

    #[test]
    fn rejects_bad_config() {
        let bad = [("x:k:s", "numeric"), ("1:k", "ID:KEY:SECRET"), ("1:k k:s", "letters"), ("1::s", "empty")];
        for (spec, want) in bad {
            let err = AppConfig::from_flag(spec).and_then(|a| {
                let c = Config { apps: vec![a], ..Config::default() };
                c.validate()
            });
            assert!(err.unwrap_err().to_string().contains(want), "{spec}");
        }
        let dup = Config { apps: vec![AppConfig::from_flag("1:a:s").unwrap(), AppConfig::from_flag("1:b:s").unwrap()], ..Config::default() };
        assert!(matches!(dup.validate(), Err(ConfigError::DuplicateId(_))));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }
}
