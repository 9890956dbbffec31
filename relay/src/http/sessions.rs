//! Sonde's own endpoints, signed like the rest of the HTTP API: server-side session
//! directives and the agent inventory.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sonde_protocol::sonde::host_channel;

use super::{ApiError, Signed};
use crate::bus::Msg;
use crate::sessions::{Clock, SessionInfo};

/// Duration of a server-side session when the request gives none.
pub const DEFAULT_DURATION_S: u64 = 60;
/// How long a follower waits for the leader to confirm a forwarded directive.
const FORWARD_WAIT: Duration = Duration::from_secs(3);
/// Longest server-side session one request may ask for.
pub const MAX_DURATION_S: u64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    host: String,
    #[serde(default)]
    duration_s: Option<u64>,
}

fn info_json(i: &SessionInfo) -> Value {
    json!({
        "host": &*i.host,
        "id": i.id,
        "started": i.started_ms,
        "viewers": i.viewers,
        "lease_until": i.lease_until_ms,
        "until": i.until_ms,
    })
}

/// `POST /apps/{id}/sessions` `{"host": …, "duration_s": …}`
pub async fn start(signed: Signed) -> Result<Json<Value>, ApiError> {
    let req: StartBody = serde_json::from_slice(&signed.body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    host_channel(&req.host).map_err(|e| ApiError::bad_request(format!("invalid host '{}': {e}", req.host)))?;
    let secs = req.duration_s.unwrap_or(DEFAULT_DURATION_S);
    if secs == 0 || secs > MAX_DURATION_S {
        return Err(ApiError::bad_request(format!("duration_s must be 1 to {MAX_DURATION_S}")));
    }
    let app = &signed.app;
    let max = app.config.limits.max_sessions;
    if max > 0 && app.sessions.count() >= max && !app.sessions.list(Clock::now()).iter().any(|i| *i.host == *req.host) {
        app.metrics.limit("sessions");
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("the app already runs its limit of {max} sessions; stop one first")));
    }
    if !app.sessions.is_leader() {
        // Another node runs the sessions: ask it, then answer from its table.
        app.announce(Msg::SessionStart { host: req.host.clone(), duration_s: secs });
        let until = Clock::now().now_ms + secs * 1000;
        let deadline = Instant::now() + FORWARD_WAIT;
        while Instant::now() < deadline {
            let found = app.sessions.list(Clock::now()).into_iter().find(|i| *i.host == *req.host && i.until_ms.is_some_and(|u| u + 1000 >= until));
            if let Some(info) = found {
                return Ok(Json(info_json(&info)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the node running the sessions did not answer; retry"));
    }
    let (info, actions) = app.sessions.start_for(&req.host, Duration::from_secs(secs), Clock::now());
    app.apply(actions);
    Ok(Json(info_json(&info)))
}

/// `GET /apps/{id}/sessions`
pub async fn list(signed: Signed) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = signed.app.sessions.list(Clock::now()).iter().map(info_json).collect();
    Ok(Json(json!({ "sessions": list })))
}

/// `DELETE /apps/{id}/sessions/{host}`
pub async fn stop(Path((_, host)): Path<(String, String)>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let app = &signed.app;
    if !app.sessions.is_leader() {
        if !app.sessions.list(Clock::now()).iter().any(|i| *i.host == *host) {
            return Err(ApiError::not_found(format!("no session for host {host}")));
        }
        app.announce(Msg::SessionStop { host });
        return Ok(Json(json!({})));
    }
    let action = app.sessions.stop(&host).ok_or_else(|| ApiError::not_found(format!("no session for host {host}")))?;
    app.apply(vec![action]);
    Ok(Json(json!({})))
}

/// `GET /apps/{id}/agents`
pub async fn agents(signed: Signed) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    // The entries are JSON already (snapshots are checked when they arrive): joined as they
    // are. Parsed into a tree per host first, 10,000 hosts took ~50 MB for the moment.
    let entries = signed.app.inventory.all();
    let mut out = String::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 16);
    out.push_str("{\"agents\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    Ok(([("content-type", "application/json")], out).into_response())
}
