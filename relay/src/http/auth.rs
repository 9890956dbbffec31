//! HTTP API request signing (auth_version 1.0): key, ±600 s timestamp, body MD5 recomputed
//! from the raw body, HMAC over `METHOD\nPATH\nQUERY` compared in constant time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{Method, Uri};
use bytes::Bytes;
use sonde_protocol::sign::{body_md5, request_string, verify_hmac_hex};

use super::{ApiError, Signed};
use crate::apps::{App, Apps};

/// How far `auth_timestamp` may be from the server's clock.
pub const TIMESTAMP_TOLERANCE_S: i64 = 600;

/// Checks a request of `app_id` (handlers take `Signed`, which calls this).
pub(super) fn verify(apps: &Apps, app_id: &str, method: &Method, uri: &Uri, body: Bytes) -> Result<Signed, ApiError> {
    let Verified { app, params } = verify_at(apps, app_id, method, uri, &body, now_s())?;
    Ok(Signed { app, params, body })
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What a signature that checked out tells: the app and the request's query parameters.
pub struct Verified {
    pub app: Arc<App>,
    pub params: Vec<(String, String)>,
}

/// Checks a request received at `now` (seconds since the epoch).
pub fn verify_at(apps: &Apps, app_id: &str, method: &Method, uri: &Uri, body: &[u8], now: i64) -> Result<Verified, ApiError> {
    let app = apps.by_id(app_id).ok_or_else(|| ApiError::not_found(format!("unknown app id {app_id}")))?.clone();
    let params: Vec<(String, String)> = uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let key = get("auth_key").ok_or_else(|| ApiError::unauthorized("auth_key is missing"))?;
    if key != app.config.key {
        return Err(ApiError::unauthorized("auth_key does not belong to this app"));
    }
    let ts: i64 = get("auth_timestamp").and_then(|t| t.parse().ok()).ok_or_else(|| ApiError::unauthorized("auth_timestamp is missing or not a number"))?;
    if now.checked_sub(ts).is_none_or(|d| d.unsigned_abs() > TIMESTAMP_TOLERANCE_S.unsigned_abs()) {
        return Err(ApiError::unauthorized(format!(
            "auth_timestamp {ts} is more than {TIMESTAMP_TOLERANCE_S} s away from the server time {now}; check the client's clock"
        )));
    }
    if get("auth_version") != Some("1.0") {
        return Err(ApiError::unauthorized("auth_version must be 1.0"));
    }
    let md5 = body_md5(body);
    match get("body_md5") {
        Some(m) if m != md5 => return Err(ApiError::unauthorized("body_md5 does not match the body")),
        None if !body.is_empty() => return Err(ApiError::unauthorized("body_md5 is required for a request with a body")),
        _ => {}
    }
    let sig = get("auth_signature").ok_or_else(|| ApiError::unauthorized("auth_signature is missing"))?;
    let signed = request_string(method.as_str(), uri.path(), &params);
    if !verify_hmac_hex(&app.config.secret, &signed, sig) {
        return Err(ApiError::unauthorized(format!("invalid signature: expected HMAC SHA256 hex digest of {signed:?}")));
    }
    if !app.config.enabled {
        return Err(ApiError::forbidden("app is disabled"));
    }
    // Charged only now: requests that fail authentication must not use up the app's budget
    // (they are limited per address instead).
    if !app.limiters.http_request(std::time::Instant::now()) {
        app.metrics.limit("http_requests");
        return Err(ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "too many API requests for this app; retry later"));
    }
    Ok(Verified { app, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;
    use crate::metrics::Metrics;
    use sonde_protocol::sign::sign_request;

    fn apps() -> Apps {
        Apps::new(&[AppConfig::from_flag("3:278d425bdf160c739803:7ad3773142a6692b25b8").unwrap()], &Metrics::default())
    }

    fn uri(path: &str, q: &str) -> Uri {
        format!("{path}?{q}").parse().unwrap()
    }

    #[test]
    fn reference_vector_is_accepted() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        assert!(verify_at(&apps(), "3", &Method::POST, &uri("/apps/3/events", q), body, 1353088179 + 599).is_ok());
        let stale = verify_at(&apps(), "3", &Method::POST, &uri("/apps/3/events", q), body, 1353088179 + 601);
        assert_eq!(stale.err().unwrap().status, 401);
        let tampered = verify_at(&apps(), "3", &Method::POST, &uri("/apps/3/events", q), b"{}", 1353088179);
        assert!(tampered.err().unwrap().message.contains("body_md5"));
    }

    #[test]
    fn get_with_md5_of_empty_body_is_accepted() {
        let now = 1_700_000_000;
        let md5 = body_md5(b"");
        let q = sign_request("GET", "/apps/3/channels", "278d425bdf160c739803", "7ad3773142a6692b25b8", now as u64, b"", &[("body_md5", &md5)]);
        assert!(verify_at(&apps(), "3", &Method::GET, &uri("/apps/3/channels", &q), b"", now).is_ok());
    }

    #[test]
    fn rejections() {
        let now = 1_700_000_000;
        let good = sign_request("GET", "/apps/3/channels", "278d425bdf160c739803", "7ad3773142a6692b25b8", now as u64, b"", &[]);
        assert_eq!(verify_at(&apps(), "9", &Method::GET, &uri("/apps/9/channels", &good), b"", now).err().unwrap().status, 404);
        let bad_sig = good.replace("auth_signature=", "auth_signature=0");
        assert_eq!(verify_at(&apps(), "3", &Method::GET, &uri("/apps/3/channels", &bad_sig), b"", now).err().unwrap().status, 401);
        let other_path = verify_at(&apps(), "3", &Method::GET, &uri("/apps/3/channels/x", &good), b"", now);
        assert_eq!(other_path.err().unwrap().status, 401);
        let wrong_key = sign_request("GET", "/apps/3/channels", "nope", "7ad3773142a6692b25b8", now as u64, b"", &[]);
        assert!(verify_at(&apps(), "3", &Method::GET, &uri("/apps/3/channels", &wrong_key), b"", now).err().unwrap().message.contains("auth_key"));
    }
}
