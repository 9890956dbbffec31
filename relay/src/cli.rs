//! Command-line flags and their environment mirrors (`SONDE_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{AppConfig, Config, ConfigError};

/// Development app used when no app is configured: for a first look on 127.0.0.1 only.
pub const DEV_APP: &str = "1:sonde-dev:sonde-dev-secret";

#[derive(Parser)]
#[command(name = "sonde-relay", version, about = "Sonde: a Pusher-compatible realtime relay for live metrics")]
pub struct Cli {
    /// TOML configuration file; flags override it.
    #[arg(long, env = "SONDE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on (websocket, HTTP API, dashboard).
    #[arg(long, env = "SONDE_BIND")]
    pub bind: Option<SocketAddr>,
    /// Also serve /healthz, /readyz and /metrics (only) on this address, e.g. an internal one.
    #[arg(long, env = "SONDE_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Serve TLS on --bind with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, env = "SONDE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519).
    #[arg(long, env = "SONDE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// An app as ID:KEY:SECRET (repeatable; comma-separated in SONDE_APP).
    #[arg(long = "app", env = "SONDE_APP", value_delimiter = ',', hide_env_values = true)]
    pub apps: Vec<String>,
    /// Redis URL: run as one node of a cluster (redis://host:port/db).
    #[arg(long, env = "SONDE_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Prefix of the cluster's Redis keys and channels.
    #[arg(long, env = "SONDE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "SONDE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (the default).
    Serve,
    /// Print a signed token (JWT) for a viewer, an agent or a custom subject.
    Token(Box<TokenArgs>),
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The app id the token is for.
    #[arg(long = "app", env = "SONDE_TOKEN_APP")]
    pub app: String,
    /// The app secret (prefer SONDE_APP_SECRET or --secret-file to keep it out of shell history).
    #[arg(long, env = "SONDE_APP_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A file holding the app secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// viewer: subscribe to every host and the inventory, publish nothing; agent: its own host
    /// channel only; operator: every app's flight recorder and the relay's own channel;
    /// custom: only what --subscribe and --publish say.
    #[arg(long, default_value = "viewer")]
    pub role: String,
    /// The host of an agent token.
    #[arg(long)]
    pub host: Option<String>,
    /// The subject (user id); defaults by role.
    #[arg(long)]
    pub sub: Option<String>,
    /// Extra channel pattern the token may subscribe to (exact, or prefix ending in *).
    #[arg(long = "subscribe")]
    pub subscribe: Vec<String>,
    /// Extra channel pattern the token may publish client events on.
    #[arg(long = "publish")]
    pub publish: Vec<String>,
    /// Presence user_info, as JSON.
    #[arg(long)]
    pub user_info: Option<String>,
    /// Lifetime: 90s, 30m, 12h, 7d.
    #[arg(long, default_value = "12h")]
    pub ttl: String,
}

/// Secrets (app secrets in `--app`, a Redis password) never reach `Debug` output.
impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps: Vec<String> = self.apps.iter().map(|a| redact_app_flag(a)).collect();
        f.debug_struct("Cli")
            .field("config", &self.config)
            .field("bind", &self.bind)
            .field("metrics_bind", &self.metrics_bind)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("apps", &apps)
            .field("redis", &self.redis.as_deref().map(crate::redact::url))
            .field("redis_prefix", &self.redis_prefix)
            .field("log_format", &self.log_format)
            .field("command", &self.command)
            .finish()
    }
}

/// `ID:KEY:SECRET` with the secret hidden.
fn redact_app_flag(spec: &str) -> String {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(key), Some(_)) => format!("{id}:{key}:<redacted>"),
        _ => "<redacted>".into(),
    }
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("app", &self.app)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("role", &self.role)
            .field("host", &self.host)
            .field("sub", &self.sub)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenArgs {
    /// Builds and signs the token.
    pub fn mint(&self) -> Result<String, String> {
        let secret = match (&self.secret, &self.secret_file) {
            (_, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?.trim().to_owned(),
            (Some(s), None) => s.clone(),
            (None, None) => return Err("give the app secret with SONDE_APP_SECRET, --secret-file or --secret".into()),
        };
        let ttl = crate::tokens::parse_ttl(&self.ttl)?;
        let mut claims = crate::tokens::role_claims(&self.app, &self.role, self.host.as_deref(), self.sub.as_deref(), ttl)?;
        claims.subscribe.extend(self.subscribe.iter().cloned());
        claims.publish.extend(self.publish.iter().cloned());
        if let Some(info) = &self.user_info {
            claims.user_info = Some(serde_json::from_str(info).map_err(|e| format!("--user-info is not JSON: {e}"))?);
        }
        Ok(crate::tokens::mint_hs256(&claims, &secret))
    }
}

impl Cli {
    /// The effective configuration: file, then flags; the development app when none is given.
    pub fn load(&self) -> Result<(Config, bool), ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(addr) = self.metrics_bind {
            config.metrics_bind = Some(addr);
        }
        if let Some(tls) = crate::tls::TlsConfig::from_flags(self.tls_cert.clone(), self.tls_key.clone()).map_err(ConfigError::Invalid)? {
            config.tls = Some(tls);
        }
        if let Some(url) = &self.redis {
            let mut r = config.redis.take().unwrap_or_else(|| crate::cluster::RedisConfig::new(url));
            r.url = url.clone();
            config.redis = Some(r);
        }
        if let (Some(prefix), Some(r)) = (&self.redis_prefix, config.redis.as_mut()) {
            r.prefix = prefix.clone();
        }
        for spec in &self.apps {
            config.apps.push(AppConfig::from_flag(spec)?);
        }
        let dev = config.apps.is_empty();
        if dev {
            config.apps.push(AppConfig::from_flag(DEV_APP)?);
        }
        config.validate()?;
        Ok((config, dev))
    }
}
