//! Minting tokens the way a backend would, with the fixture keys in `tests/fixtures/keys`.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sonde_relay::config::PublicKeyConfig;
use sonde_relay::tokens::{role_claims, Claims};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The public keys of the fixture pairs, as an app registers them.
pub fn public_keys() -> Vec<PublicKeyConfig> {
    [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")]
        .iter()
        .map(|(name, alg)| PublicKeyConfig {
            kid: Some((*name).to_owned()),
            alg: (*alg).to_owned(),
            pem: Some(fixture(&format!("{name}.pub"))),
            pem_file: None,
        })
        .collect()
}

pub fn viewer(app: &str) -> Claims {
    role_claims(app, "viewer", None, None, Duration::from_secs(3600)).expect("viewer claims")
}

pub fn agent(app: &str, host: &str) -> Claims {
    role_claims(app, "agent", Some(host), None, Duration::from_secs(3600)).expect("agent claims")
}

pub fn hs256(claims: &Claims, secret: &str) -> String {
    sonde_relay::tokens::mint_hs256(claims, secret)
}

/// Signs with a fixture private key: `rsa`, `ec`, `ed` or `attacker-rsa`.
pub fn signed_with(claims: &Claims, key: &str) -> String {
    let pem = fixture(&format!("{key}.key"));
    let (alg, enc) = match key {
        "rsa" | "attacker-rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes())),
        "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(pem.as_bytes())),
        "ed" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem.as_bytes())),
        other => panic!("no fixture key {other}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(key.trim_start_matches("attacker-").to_owned());
    jsonwebtoken::encode(&header, claims, &enc.expect("fixture key")).expect("sign")
}

/// A token with an arbitrary header and signature, as an attacker would forge it.
pub fn forged(header: &str, claims: &Claims, signature: &str) -> String {
    use base64::Engine;
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!("{}.{}.{signature}", e(header.as_bytes()), e(serde_json::to_string(claims).expect("claims").as_bytes()))
}

/// HS256 keyed with the RSA public key's PEM: the classic algorithm-confusion forgery.
pub fn hs256_with_public_key(claims: &Claims) -> String {
    sonde_relay::tokens::mint_hs256(claims, &fixture("rsa.pub"))
}

pub fn expiring_in(mut claims: Claims, secs: i64) -> Claims {
    let now = sonde_relay::tokens::now_s() as i64;
    claims.exp = (now + secs) as u64;
    claims
}

pub const HOUR: Duration = Duration::from_secs(3600);
