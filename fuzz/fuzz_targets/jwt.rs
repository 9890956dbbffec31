//! Token verification: any string gets a verdict, and tokens with any `exp` and `nbf`,
//! signed with the app's secret, are verified without overflowing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sonde_relay::config::AppConfig;
use sonde_relay::tokens::{mint_hs256, role_claims, Verifier};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| AppConfig::from_flag("1:key:secret").unwrap().verifier().unwrap())
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= 16 {
        let exp = u64::from_le_bytes(data[..8].try_into().unwrap());
        let nbf = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let mut claims = role_claims("1", "viewer", None, None, std::time::Duration::from_secs(60)).unwrap();
        claims.exp = exp;
        claims.nbf = (nbf % 3 != 0).then_some(nbf);
        if let Ok(grant) = verifier().verify(&mint_hs256(&claims, "secret")) {
            let _ = grant.expires_at.duration_since(std::time::UNIX_EPOCH);
        }
    }
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = verifier().verify(token);
    }
});
