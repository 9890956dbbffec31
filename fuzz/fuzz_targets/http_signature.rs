//! HTTP API request signing: any method, path, query and body must be answered with a verdict,
//! and a request signed with the app's secret must always verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sonde_relay::apps::Apps;
use sonde_relay::config::AppConfig;
use sonde_relay::http::auth::verify_at;
use sonde_relay::metrics::Metrics;

const NOW: i64 = 1_700_000_000;

fn apps() -> &'static Apps {
    static APPS: OnceLock<Apps> = OnceLock::new();
    APPS.get_or_init(|| Apps::new(&[AppConfig::from_flag("1:key:secret").unwrap()], &Metrics::default()))
}

fuzz_target!(|data: &[u8]| {
    // method \n path?query \n body
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(method), Some(target), body) = (parts.next(), parts.next(), parts.next().unwrap_or_default()) else { return };
    let Ok(method) = http::Method::from_bytes(method) else { return };
    let Ok(uri) = std::str::from_utf8(target).map_err(drop).and_then(|t| t.parse::<http::Uri>().map_err(drop)) else { return };
    let _ = verify_at(apps(), "1", &method, &uri, body, NOW);
    // The same request, signed properly, verifies.
    let path = uri.path();
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return;
    }
    let query = sonde_protocol::sign::sign_request(method.as_str(), path, "key", "secret", NOW as u64, body, &[]);
    if let Ok(signed) = format!("{path}?{query}").parse::<http::Uri>() {
        assert!(verify_at(apps(), "1", &method, &signed, body, NOW).is_ok(), "{method} {signed}");
    }
});
