//! Relay configuration: plain data, typed defaults, loaded from TOML and overridden by flags.
//!
//! Every setting the relay has is declared here, one file per section, as plain data with its
//! defaults and checks; the parts it configures import their settings from here, and the
//! config imports nothing of them but the token settings it builds a verifier from
//! (`AppConfig::verifier`).

mod app;
mod edge;
mod limits;
pub mod recorder;
mod redis;
mod sessions;
mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use app::{AppConfig, PublicKeyConfig, DEFAULT_TOKEN_LEEWAY_S};
pub use edge::{parse_net, EdgeConfig, DEFAULT_MAX_SOCKETS_PER_IP};
pub use limits::Limits;
pub use recorder::RecorderConfig;
pub use redis::RedisConfig;
pub use sessions::SessionsConfig;
pub use tls::TlsConfig;
pub use webhooks::{WebhookConfig, WebhookSettings};

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
    pub tls: Option<TlsConfig>,
    /// Limits of the internet-facing edge: sockets, deadlines, per-address limits.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// Realtime session timing.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Redis for a cluster of relays; without it the relay is one in-memory node.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// How webhooks are delivered (timeouts, retries, queue bounds), for every app.
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// The flight recorder of slow and failed events (`[recorder]`).
    #[serde(default)]
    pub recorder: RecorderConfig,
    /// The apps (accounts) this relay serves.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
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
            webhooks: WebhookSettings::default(),
            recorder: RecorderConfig::default(),
            apps: Vec::new(),
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
            webhooks::validate_app(&app.id, &app.webhooks, app.webhook_batch_ms).map_err(ConfigError::Invalid)?;
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
            parse_net(p).map_err(|e| ConfigError::Invalid(format!("trusted_proxies: {e}")))?;
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
