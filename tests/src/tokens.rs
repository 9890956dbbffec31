//! Minting tokens the way a backend would, with key pairs made when the tests run (by the
//! `openssl` command, which the test command installs): nothing secret is committed.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sonde_relay::config::PublicKeyConfig;
use sonde_relay::tokens::{role_claims, Claims};

/// Key pairs by name (`rsa`, `ec`, `ed`, `attacker-rsa`), each `NAME.key` (PKCS#8 PEM) and
/// `NAME.pub` (SubjectPublicKeyInfo PEM), made once per test process.
fn keys() -> &'static HashMap<String, String> {
    static KEYS: OnceLock<HashMap<String, String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = crate::agent::TempDir::new("jwt-keys");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir.0).output().expect("openssl must be installed (scripts/lib.sh installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let mut pairs = HashMap::new();
        for (name, algorithm) in [("rsa", "RSA"), ("attacker-rsa", "RSA"), ("ec", "EC"), ("ed", "ED25519")] {
            let key = format!("{name}.key");
            let options: &[&str] = match algorithm {
                "RSA" => &["-pkeyopt", "rsa_keygen_bits:2048"],
                "EC" => &["-pkeyopt", "ec_paramgen_curve:P-256"],
                _ => &[],
            };
            openssl(&[&["genpkey", "-algorithm", algorithm, "-out", &key][..], options].concat());
            openssl(&["pkey", "-in", &key, "-pubout", "-out", &format!("{name}.pub")]);
            for file in [key, format!("{name}.pub")] {
                let text = std::fs::read_to_string(dir.0.join(&file)).expect("the key openssl wrote");
                pairs.insert(file, text);
            }
        }
        pairs
    })
}

/// A test key's PEM: `NAME.key` or `NAME.pub`.
pub fn test_key(name: &str) -> String {
    keys().get(name).unwrap_or_else(|| panic!("no test key {name}")).clone()
}

/// The public keys of the test pairs, as an app registers them.
pub fn public_keys() -> Vec<PublicKeyConfig> {
    [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")]
        .iter()
        .map(|(name, alg)| PublicKeyConfig {
            kid: Some((*name).to_owned()),
            alg: (*alg).to_owned(),
            pem: Some(test_key(&format!("{name}.pub"))),
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

/// Signs with a test private key: `rsa`, `ec`, `ed` or `attacker-rsa`.
pub fn signed_with(claims: &Claims, key: &str) -> String {
    let pem = test_key(&format!("{key}.key"));
    let (alg, enc) = match key {
        "rsa" | "attacker-rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes())),
        "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(pem.as_bytes())),
        "ed" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem.as_bytes())),
        other => panic!("no test key {other}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(key.trim_start_matches("attacker-").to_owned());
    jsonwebtoken::encode(&header, claims, &enc.expect("test key")).expect("sign")
}

/// A token with an arbitrary header and signature, as an attacker would forge it.
pub fn forged(header: &str, claims: &Claims, signature: &str) -> String {
    use base64::Engine;
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!("{}.{}.{signature}", e(header.as_bytes()), e(serde_json::to_string(claims).expect("claims").as_bytes()))
}

/// HS256 keyed with the RSA public key's PEM: the classic algorithm-confusion forgery.
pub fn hs256_with_public_key(claims: &Claims) -> String {
    sonde_relay::tokens::mint_hs256(claims, &test_key("rsa.pub"))
}

pub fn expiring_in(mut claims: Claims, secs: i64) -> Claims {
    let now = sonde_relay::tokens::now_s() as i64;
    claims.exp = (now + secs) as u64;
    claims
}

pub const HOUR: Duration = Duration::from_secs(3600);
