//! Account-scoped tokens: JWTs whose claims name the app, the subject, an expiry and the
//! channels the holder may subscribe to and publish on.
//!
//! HS256 tokens are signed with the app secret; RS256, ES256 and EdDSA tokens with a private
//! key whose public half is registered for the app, so a backend can mint tokens without
//! holding the relay's secret. The header's `alg` picks the key: an HS256 token is never
//! checked against a public key, nor an RS256 one against the secret.

mod pattern;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use pattern::{covers, ChannelPattern};

/// The claims of a Sonde token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The app (account) id the token is for.
    pub app: String,
    /// The subject: a user, a viewer or an agent.
    pub sub: String,
    /// Expiry, Unix seconds (required).
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Channel patterns the holder may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Channel patterns the holder may send client events on.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Presence `user_info` for the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<serde_json::Value>,
    /// User ids whose online status the subject may watch after sign-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watchlist: Vec<String>,
    /// `viewer`, `agent` or a custom role; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// What a verified token allows.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sub: Arc<str>,
    pub expires_at: SystemTime,
    pub subscribe: Vec<ChannelPattern>,
    pub publish: Vec<ChannelPattern>,
    /// Raw JSON text of `user_info`.
    pub user_info: Option<Arc<str>>,
    pub watchlist: Vec<Arc<str>>,
}

impl Grant {
    pub fn may_subscribe(&self, channel: &str) -> bool {
        covers(&self.subscribe, channel)
    }
    pub fn may_publish(&self, channel: &str) -> bool {
        covers(&self.publish, channel)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("tokens with alg 'none' are never accepted")]
    AlgNone,
    #[error("algorithm {0} is not registered for this app")]
    AlgNotRegistered(String),
    #[error("invalid token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token was issued for app {0}, not this one")]
    WrongApp(String),
}

/// A public key registered for an app.
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Verifies the tokens of one app.
pub struct Verifier {
    app_id: String,
    secret: DecodingKey,
    keys: Vec<PublicKey>,
    leeway_s: u64,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct AppOnly {
    #[serde(default)]
    app: Option<String>,
}

fn b64_json<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(format!("{what} is not a JSON object")))
}

/// Whether an `auth` string is a JWT rather than Pusher's `key:signature`.
pub fn looks_like_jwt(auth: &str) -> bool {
    auth.bytes().filter(|b| *b == b'.').count() == 2 && !auth.contains(':')
}

/// What a `Verifier` is built from: its app's id, secret, registered public keys and clock
/// leeway. The config builds it (`AppConfig::verifier`); tokens know nothing of the config.
pub struct KeySettings<'a> {
    pub app_id: &'a str,
    pub secret: &'a str,
    pub public_keys: Vec<PublicKeyPem>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// A registered public key as text: `alg` is `RS256`, `ES256` or `EdDSA`.
pub struct PublicKeyPem {
    pub kid: Option<String>,
    pub alg: String,
    pub pem: String,
}

impl Verifier {
    pub fn new(settings: &KeySettings<'_>) -> Result<Self, String> {
        let app = settings.app_id;
        let mut keys = Vec::new();
        for k in &settings.public_keys {
            let pem = k.pem.as_bytes();
            let (alg, key) = match k.alg.as_str() {
                "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem)),
                "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(pem)),
                "EdDSA" => (Algorithm::EdDSA, DecodingKey::from_ed_pem(pem)),
                other => return Err(format!("app {app}: key algorithm must be RS256, ES256 or EdDSA, not {other}")),
            };
            let key = key.map_err(|e| format!("app {app}: public key {}: {e}", k.kid.as_deref().unwrap_or("")))?;
            keys.push(PublicKey { kid: k.kid.clone(), alg, key });
        }
        Ok(Self { app_id: app.to_owned(), secret: DecodingKey::from_secret(settings.secret.as_bytes()), keys, leeway_s: settings.leeway_s })
    }

    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("a JWT has three dot-separated parts".into()));
        };
        let header: RawHeader = b64_json(h, "header")?;
        let claimed: AppOnly = b64_json(c, "claims")?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        if let Some(app) = claimed.app.filter(|a| *a != self.app_id) {
            return Err(TokenError::WrongApp(app));
        }
        let candidates: Vec<(Algorithm, &DecodingKey)> = match header.alg.as_str() {
            "HS256" => vec![(Algorithm::HS256, &self.secret)],
            alg @ ("RS256" | "ES256" | "EdDSA") => {
                let list: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| format!("{:?}", k.alg) == alg && (header.kid.is_none() || k.kid == header.kid))
                    .map(|k| (k.alg, &k.key))
                    .collect();
                if list.is_empty() {
                    return Err(TokenError::AlgNotRegistered(alg.to_owned()));
                }
                list
            }
            other => return Err(TokenError::AlgNotRegistered(other.to_owned())),
        };
        let mut last = TokenError::BadSignature;
        for (alg, key) in candidates {
            let mut v = Validation::new(alg);
            v.leeway = self.leeway_s;
            v.validate_nbf = true;
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => return self.grant(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => TokenError::BadSignature,
                        ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                        ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                        ErrorKind::MissingRequiredClaim(c) => return Err(TokenError::Malformed(format!("claim '{c}' is required"))),
                        _ => TokenError::Malformed(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }

    fn grant(&self, c: Claims) -> Result<Grant, TokenError> {
        if c.app != self.app_id {
            return Err(TokenError::WrongApp(c.app));
        }
        if c.sub.is_empty() {
            return Err(TokenError::Malformed("sub must not be empty".into()));
        }
        Ok(Grant {
            sub: c.sub.into(),
            expires_at: expiry_of(c.exp, self.leeway_s),
            subscribe: c.subscribe.iter().map(|p| ChannelPattern::parse(p)).collect(),
            publish: c.publish.iter().map(|p| ChannelPattern::parse(p)).collect(),
            user_info: c.user_info.map(|v| Arc::from(v.to_string())),
            watchlist: c.watchlist.into_iter().map(Arc::from).collect(),
        })
    }
}

/// Latest expiry a token can name: the end of year 9999. Anything later is taken as this, so
/// no arithmetic on a hostile `exp` can overflow.
pub const MAX_EXP_S: u64 = 253_402_300_799;

/// When a connection holding a token with this `exp` must stop: the first whole second at
/// which verification refuses it (`exp + leeway` is still accepted), so a client reconnecting
/// with the same token is refused instead of let in again.
pub fn expiry_of(exp: u64, leeway_s: u64) -> SystemTime {
    let secs = exp.min(MAX_EXP_S).saturating_add(leeway_s).saturating_add(1).min(MAX_EXP_S);
    UNIX_EPOCH.checked_add(Duration::from_secs(secs)).unwrap_or(UNIX_EPOCH)
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs claims with an app secret (HS256).
pub fn mint_hs256(claims: &Claims, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("HS256 signing cannot fail")
}

/// The channel every agent of `host` streams on.
pub fn host_channel(host: &str) -> String {
    format!("{HOST_CHANNEL_PREFIX}{host}")
}

use sonde_protocol::sonde::{HOST_CHANNEL_PATTERN, HOST_CHANNEL_PREFIX};
pub use sonde_protocol::sonde::{INVENTORY_CHANNEL, RELAY_CHANNEL};

/// Claims of a standard role: a viewer may subscribe to every host channel and the inventory
/// and publish nothing; an agent may subscribe and publish on its own host's channel only.
pub fn role_claims(app: &str, role: &str, host: Option<&str>, sub: Option<&str>, ttl: Duration) -> Result<Claims, String> {
    let now = now_s();
    let (sub, subscribe, publish) = match role {
        "viewer" => (sub.unwrap_or("viewer").to_owned(), vec![HOST_CHANNEL_PATTERN.to_owned(), INVENTORY_CHANNEL.to_owned()], vec![]),
        "agent" => {
            let host = host.ok_or("an agent token needs --host")?;
            sonde_protocol::ChannelName::parse(&host_channel(host)).map_err(|e| format!("host '{host}' makes an invalid channel name: {e}"))?;
            let ch = host_channel(host);
            (sub.map_or_else(|| format!("agent:{host}"), str::to_owned), vec![ch.clone()], vec![ch])
        }
        "custom" => (sub.ok_or("a custom token needs --sub")?.to_owned(), vec![], vec![]),
        // A viewer that also reads every app's flight recorder (`GET /debug/slow`) and watches
        // the relay itself.
        "operator" => {
            let subscribe = vec![HOST_CHANNEL_PATTERN.to_owned(), INVENTORY_CHANNEL.to_owned(), RELAY_CHANNEL.to_owned()];
            (sub.unwrap_or("operator").to_owned(), subscribe, vec![])
        }
        other => return Err(format!("unknown role '{other}' (viewer, agent, operator or custom)")),
    };
    Ok(Claims {
        app: app.to_owned(),
        sub,
        exp: now.checked_add(ttl.as_secs()).filter(|&e| e <= MAX_EXP_S).ok_or("the token's lifetime reaches past the year 9999")?,
        nbf: None,
        iat: Some(now),
        subscribe,
        publish,
        user_info: None,
        watchlist: vec![],
        role: Some(role.to_owned()),
    })
}

/// Longest lifetime `sonde-relay token` mints: ten years.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses `90s`, `30m`, `12h`, `7d` (or plain seconds), at most ten years.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration '{s}'"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration unit in '{s}' (s, m, h, d)")),
    };
    let secs = n.checked_mul(mult).filter(|&secs| secs <= MAX_TTL.as_secs());
    let secs = secs.ok_or_else(|| format!("duration '{s}' is longer than the longest token lifetime, 3650d"))?;
    if secs == 0 {
        return Err("a token's lifetime must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
