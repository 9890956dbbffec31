//! Webhook configuration: the targets of an app (`[[apps.webhooks]]`, with `webhook_batch_ms`
//! on the app) and the relay-wide delivery settings (`[webhooks]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;
pub use sonde_protocol::webhook::EventType;

/// One target of an app's webhooks.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed.
    pub url: String,
    /// The events this target receives (`subscription_count` and Sonde's `sonde_*` events only
    /// when listed).
    pub event_types: Vec<EventType>,
    /// Only events of channels whose name starts with this.
    #[serde(default)]
    pub channel_prefix: Option<String>,
    /// Headers added to every request. Their values never reach logs or `Debug` output.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("event_types", &self.event_types)
            .field("channel_prefix", &self.channel_prefix)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// URL schemes targets may use (https trusts the system's roots plus `[webhooks] ca_file`).
const SCHEMES: &[&str] = &["http", "https"];

/// Headers the relay sets itself.
const RESERVED_HEADERS: &[&str] = &["x-pusher-key", "x-pusher-signature", "content-type", "content-length", "host", "transfer-encoding"];

/// Longest `channel_prefix` (a channel name is at most 200 characters).
const MAX_PREFIX: usize = 200;

/// A target checked and parsed.
pub struct Parsed {
    pub url: Url,
    /// `host:port`, the label of the target's metrics.
    pub label: String,
    pub headers: HeaderMap,
}

impl WebhookConfig {
    /// Checks everything a delivery relies on; `Err` says what is wrong, for the config error.
    pub fn parse(&self) -> Result<Parsed, String> {
        let shown = crate::redact::url(&self.url);
        let url = Url::parse(&self.url).map_err(|e| format!("webhook url {shown:?} is not a URL: {e}"))?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(format!("webhook url {shown:?}: the scheme must be http or https"));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!("webhook url {shown:?} has no host"));
        };
        let label = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if self.event_types.is_empty() {
            return Err(format!("webhook {shown:?}: event_types is empty"));
        }
        if self.channel_prefix.as_ref().is_some_and(|p| p.len() > MAX_PREFIX) {
            return Err(format!("webhook {shown:?}: channel_prefix is longer than {MAX_PREFIX} characters"));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("webhook {shown:?}: {name:?} is not a valid header name"))?;
            if RESERVED_HEADERS.contains(&n.as_str()) {
                return Err(format!("webhook {shown:?}: the header {name} is set by the relay"));
            }
            // The value may be a credential: never echo it.
            let v = HeaderValue::from_str(value).map_err(|_| format!("webhook {shown:?}: the value of header {name} is not a valid header value"))?;
            headers.insert(n, v);
        }
        Ok(Parsed { url, label, headers })
    }

    /// The event types as a set of bits.
    pub fn types(&self) -> u16 {
        self.event_types.iter().fold(0, |acc, t| acc | t.bit())
    }
}

/// Relay-wide webhook delivery settings (`[webhooks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Time one request may take, connecting included.
    pub timeout_ms: u64,
    /// How long a request is retried after its first attempt; then its events are dropped
    /// (and counted). Pusher retries for 5 minutes.
    pub retry_window_s: u64,
    /// Delay before the first retry; it doubles with every attempt (with jitter) up to
    /// `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Bytes of events queued for one target while it is slow or down; beyond, the oldest
    /// are dropped (and counted).
    pub max_queue_bytes: usize,
    /// Most events in one request when batching (`webhook_batch_ms` > 0); a request also
    /// stops growing at 1 MiB.
    pub max_batch_events: usize,
    /// Without batching: requests in flight to one target at most. The events of one channel
    /// always take the same of these connections, one request at a time, so they arrive in
    /// order. With batching, a target takes one request at a time, which carries everything
    /// its window gathered.
    pub connections_per_target: usize,
    /// PEM certificates of a private CA that https targets' certificates may chain to,
    /// trusted besides the system's store.
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            retry_window_s: 300,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            max_queue_bytes: 16 * 1024 * 1024,
            max_batch_events: 1000,
            connections_per_target: 4,
            ca_file: None,
        }
    }
}

impl WebhookSettings {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [self.timeout_ms, self.initial_backoff_ms, self.max_backoff_ms];
        if positive.contains(&0) || self.max_batch_events == 0 || self.connections_per_target == 0 || self.max_queue_bytes == 0 {
            return Err(
                "webhooks: timeout_ms, initial_backoff_ms, max_backoff_ms, max_queue_bytes, max_batch_events and connections_per_target must be positive"
                    .into(),
            );
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err("webhooks: initial_backoff_ms must not exceed max_backoff_ms".into());
        }
        if self.connections_per_target > 64 {
            return Err("webhooks: connections_per_target is at most 64".into());
        }
        if let Some(path) = &self.ca_file {
            ca_certificates(path)?;
        }
        Ok(())
    }
}

/// The certificates of the PEM file at `path` (read by `sonde_ca`, as the agent reads its
/// `--ca-file`), as the webhooks' HTTP client trusts them; `Err` says what is wrong, for the
/// config error.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = sonde_ca::read_ca_file(path).map_err(|e| format!("webhooks: ca_file: {e}"))?;
    certs.iter().map(|c| reqwest::Certificate::from_der(c).map_err(|e| format!("webhooks: ca_file {}: {e}", path.display()))).collect()
}

/// Longest `webhook_batch_ms`: events wait at most this long for their batch.
pub const MAX_BATCH_MS: u64 = 60_000;

/// Checks an app's webhook settings.
pub fn validate_app(app_id: &str, targets: &[WebhookConfig], batch_ms: u64) -> Result<(), String> {
    if batch_ms > MAX_BATCH_MS {
        return Err(format!("app {app_id}: webhook_batch_ms is at most {MAX_BATCH_MS}"));
    }
    for t in targets {
        t.parse().map_err(|e| format!("app {app_id}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("sonde-webhook-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert_eq!(ca_certificates(&path).unwrap().len(), 1);
        std::fs::write(&path, "no certificate here\n").unwrap();
        assert!(ca_certificates(&path).unwrap_err().contains("no certificate"));
        std::fs::write(&path, vec![b'a'; 1024 * 1024 + 1]).unwrap();
        assert!(ca_certificates(&path).unwrap_err().contains("1 MiB"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ca_certificates(&path).unwrap_err().contains("ca.pem"));
    }

    fn target(toml_text: &str) -> Result<Parsed, String> {
        let c: WebhookConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.parse()
    }

    #[test]
    fn targets_are_checked() {
        let ok = target("url = \"http://127.0.0.1:9000/hooks\"\nevent_types = [\"channel_occupied\"]\nheaders = { \"X-Env\" = \"prod\" }").unwrap();
        assert_eq!(ok.label, "127.0.0.1:9000");
        assert_eq!(ok.headers["x-env"], "prod");
        assert_eq!(target("url = \"http://backend/hooks\"\nevent_types = [\"client_event\"]").unwrap().label, "backend:80");
        assert_eq!(target("url = \"https://backend/hooks\"\nevent_types = [\"client_event\"]").unwrap().label, "backend:443");
        let bad = [
            ("url = \"ftp://backend/hooks\"\nevent_types = [\"client_event\"]", "scheme"),
            ("url = \"not a url\"\nevent_types = [\"client_event\"]", "not a URL"),
            ("url = \"http://backend/\"\nevent_types = []", "empty"),
            ("url = \"http://backend/\"\nevent_types = [\"channel_created\"]", "unknown variant"),
            ("url = \"http://backend/\"\nevent_types = [\"cache_miss\"]\nheaders = { \"X-Pusher-Signature\" = \"x\" }", "set by the relay"),
            ("url = \"http://backend/\"\nevent_types = [\"cache_miss\"]\nheaders = { \"Bad Name\" = \"x\" }", "header name"),
            ("url = \"http://backend/\"\nevent_types = [\"cache_miss\"]\nheaders = { \"X-Token\" = \"secret\\n\" }", "header value"),
        ];
        for (text, want) in bad {
            let err = target(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("secret\n"), "a header value is never echoed");
        }
    }

    #[test]
    fn header_values_and_url_passwords_stay_out_of_debug() {
        let c: WebhookConfig =
            toml::from_str("url = \"http://u:hunter2@backend/\"\nevent_types = [\"cache_miss\"]\nheaders = { \"Authorization\" = \"Bearer s3cret\" }").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Authorization"));
    }

    #[test]
    fn settings_are_checked() {
        assert!(WebhookSettings::default().validate().is_ok());
        let zero = WebhookSettings { connections_per_target: 0, ..WebhookSettings::default() };
        assert!(zero.validate().is_err());
        let inverted = WebhookSettings { initial_backoff_ms: 10, max_backoff_ms: 5, ..WebhookSettings::default() };
        assert!(inverted.validate().is_err());
        assert!(validate_app("1", &[], MAX_BATCH_MS + 1).is_err());
        let missing = WebhookSettings { ca_file: Some("/does/not/exist.pem".into()), ..WebhookSettings::default() };
        assert!(missing.validate().unwrap_err().contains("/does/not/exist.pem"));
    }
}
