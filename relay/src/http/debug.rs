//! Reading the flight recorder: `GET /apps/{id}/debug/slow` (signed like the rest of the
//! API, that app's events only) and `GET /debug/slow` (every app's, for an operator token).

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::Arc;

use super::{ApiError, Signed};
use crate::apps::Apps;
use crate::metrics::Metrics;

/// Events returned when the request names no `limit`, and the most it may name.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// The role claim that reads every app's events (`sonde-relay token --role operator`).
pub const OPERATOR_ROLE: &str = "operator";

fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let params: Vec<(String, String)> = query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    match params.iter().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some((_, v)) => {
            v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")))
        }
    }
}

fn events(metrics: &Metrics, app: Option<&str>, limit: usize) -> Json<Value> {
    let rec = &metrics.insight.recorder;
    Json(json!({ "recording": rec.enabled(), "events": rec.latest(app, limit) }))
}

/// `GET /apps/{id}/debug/slow`
pub async fn app_events(State(metrics): State<Arc<Metrics>>, uri: Uri, signed: Signed) -> Result<Json<Value>, ApiError> {
    let n = limit(uri.query())?;
    Ok(events(&metrics, Some(signed.app.id()), n))
}

#[derive(Deserialize)]
struct RoleClaims {
    #[serde(default)]
    app: String,
    #[serde(default)]
    role: Option<String>,
}

/// The claims a token names, unverified: which app's keys to check it with, and its role.
fn claims_of(token: &str) -> Option<RoleClaims> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks `Authorization: Bearer <token>`: a valid token of one of the relay's apps whose
/// role is `operator`.
fn operator(apps: &Apps, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = value.strip_prefix("Bearer ").ok_or_else(|| ApiError::unauthorized("an operator token is required (Authorization: Bearer …)"))?;
    let claims = claims_of(token).ok_or_else(|| ApiError::unauthorized("malformed token"))?;
    let app = apps.by_id(&claims.app).ok_or_else(|| ApiError::unauthorized("the token names no app of this relay"))?;
    app.tokens.verify(token).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    // The signature covers the claims read above, so the role is the signer's word.
    if claims.role.as_deref() != Some(OPERATOR_ROLE) {
        return Err(ApiError::forbidden("the token's role is not operator"));
    }
    Ok(())
}

/// `GET /debug/slow`
pub async fn all_events(State(apps): State<Arc<Apps>>, State(metrics): State<Arc<Metrics>>, headers: HeaderMap, uri: Uri) -> Result<Json<Value>, ApiError> {
    operator(&apps, &headers)?;
    let n = limit(uri.query())?;
    Ok(events(&metrics, None, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("a=1&limit=5")).unwrap(), 5);
        assert!(limit(Some("limit=0")).is_err());
        assert!(limit(Some("limit=1001")).is_err());
        assert!(limit(Some("limit=x")).is_err());
    }
}
