//! The `[tls]` section of the config file (and `--tls-cert` / `--tls-key`).

use std::path::PathBuf;

use serde::Deserialize;

/// How often the certificate files are looked at for a renewal, by default.
pub const DEFAULT_RELOAD_POLL_MS: u64 = 2_000;
/// Sessions the server remembers for resumption by session id (TLS 1.2 without tickets).
pub const DEFAULT_SESSION_CACHE: usize = 4_096;

/// TLS on the public listener: one certificate chain and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC); RSA, ECDSA P-256/P-384 or Ed25519.
    pub key: PathBuf,
    /// How often the two files are checked for a renewal (0: only on SIGHUP).
    #[serde(default = "default_poll")]
    pub reload_poll_ms: u64,
    /// Sessions kept for resumption by id; tickets need no server memory.
    #[serde(default = "default_cache")]
    pub session_cache: usize,
}

fn default_poll() -> u64 {
    DEFAULT_RELOAD_POLL_MS
}
fn default_cache() -> usize {
    DEFAULT_SESSION_CACHE
}

impl TlsConfig {
    /// A config for these two files with the default reload and cache settings.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { cert: cert.into(), key: key.into(), reload_poll_ms: DEFAULT_RELOAD_POLL_MS, session_cache: DEFAULT_SESSION_CACHE }
    }

    /// Both flags or neither: one alone is a mistake worth stopping for.
    pub fn from_flags(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<Self>, String> {
        match (cert, key) {
            (Some(c), Some(k)) => Ok(Some(Self::new(c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key (SONDE_TLS_KEY) too".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert (SONDE_TLS_CERT) too".into()),
        }
    }
}
