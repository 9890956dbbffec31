//! `[[apps]]`: one app's credentials, switches, keys, webhook targets and limits, and the
//! token verifier built from them.

use serde::Deserialize;

use super::{ConfigError, Limits, WebhookConfig};
use crate::tokens::{KeySettings, PublicKeyPem, Verifier};

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
    pub webhooks: Vec<WebhookConfig>,
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
    pub fn verifier(&self) -> Result<Verifier, String> {
        let mut public_keys = Vec::with_capacity(self.public_keys.len());
        for k in &self.public_keys {
            let pem = k.pem_text().map_err(|e| format!("app {}: {e}", self.id))?;
            public_keys.push(PublicKeyPem { kid: k.kid.clone(), alg: k.alg.clone(), pem });
        }
        let settings = KeySettings { app_id: &self.id, secret: &self.secret, public_keys, leeway_s: self.token_leeway_s };
        Verifier::new(&settings)
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

fn yes() -> bool {
    true
}
