//! Tokens as `sonde-relay token` mints them (HS256 with the app secret): an agent token for
//! one host, a viewer token for every host and the inventory. Same header, same claims in the
//! same order, so a simulated agent's handshake is as long as a real one's.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sonde_protocol::sonde::{HOST_CHANNEL_PATTERN, HOST_CHANNEL_PREFIX, INVENTORY_CHANNEL};

/// How long the bench's tokens are valid.
const TTL_S: u64 = 24 * 3600;

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs `claims`, JSON text written in the relay's field order.
fn sign_raw(secret: &str, claims: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    // The relay's minting library writes `typ` before `alg`.
    let body = format!("{}.{}", b64(br#"{"typ":"JWT","alg":"HS256"}"#), b64(claims.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("{body}.{}", b64(&mac.finalize().into_bytes()))
}

/// `sonde-relay token --role agent --host HOST`.
pub fn agent(app_id: &str, secret: &str, host: &str) -> String {
    let now = now_s();
    let ch = format!("{HOST_CHANNEL_PREFIX}{host}");
    // Written by hand: serde_json's map would sort the keys.
    let claims = format!(
        r#"{{"app":{},"sub":{},"exp":{},"iat":{now},"subscribe":[{c}],"publish":[{c}],"role":"agent"}}"#,
        super::host::json_str(app_id),
        super::host::json_str(&format!("agent:{host}")),
        now + TTL_S,
        c = super::host::json_str(&ch)
    );
    sign_raw(secret, &claims)
}

/// `sonde-relay token --role viewer`.
pub fn viewer(app_id: &str, secret: &str) -> String {
    let now = now_s();
    let claims = format!(
        r#"{{"app":{},"sub":"viewer","exp":{},"iat":{now},"subscribe":["{HOST_CHANNEL_PATTERN}","{INVENTORY_CHANNEL}"],"publish":[],"role":"viewer"}}"#,
        super::host::json_str(app_id),
        now + TTL_S
    );
    sign_raw(secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_the_relays_and_the_signature_checks() {
        let t = agent("1", "secret", "web-1");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["subscribe"][0], "private-sonde-host.web-1");
        assert_eq!(claims["publish"], claims["subscribe"]);
        assert_eq!(claims["sub"], "agent:web-1");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(viewer("1", "s").split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(v["role"], "viewer");
    }
}
