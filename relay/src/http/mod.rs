//! The HTTP edge: the Pusher HTTP API, health, metrics.

pub mod auth;
mod channels;
pub mod events;
mod info;
mod sessions;
mod signed;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use crate::reply::ApiError;
pub use signed::Signed;

use crate::metrics::{EndpointLabel, HttpLabel, Metrics};
use crate::server::{AppState, ClientIp};

/// Bodies larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app_id}/events", post(events::events))
        .route("/apps/{app_id}/batch_events", post(events::batch_events))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::show))
        .route("/apps/{app_id}/channels/{channel}/users", get(channels::users))
        .route("/apps/{app_id}/users/{user_id}/terminate_connections", post(channels::terminate))
        .route("/users/{user_id}/terminate_connections", post(channels::terminate_unprefixed))
        .route("/apps/{app_id}/sessions", get(sessions::list).post(sessions::start))
        .route("/apps/{app_id}/sessions/{host}", axum::routing::delete(sessions::stop))
        .route("/apps/{app_id}/agents", get(sessions::agents))
        .route("/apps/{app_id}/debug/slow", get(crate::insight::http::app_events))
        .route("/debug/slow", get(crate::insight::http::all_events))
        .route("/apps/{app_id}/usage", get(crate::insight::usage_api::usage))
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(s): State<AppState>) -> Response {
    if s.shutdown.is_cancelled() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if s.cluster.as_ref().is_some_and(|c| !c.is_ready()) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not yet a full member of the cluster (Redis unreachable or syncing)").into_response();
    }
    "ready".into_response()
}

pub async fn metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], metrics.encode()).into_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

/// Bounds a request's whole life, body included: a client that promises a body and never
/// sends it gets 408 instead of holding the connection.
pub async fn deadline(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.gate.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            s.metrics.edge_refused("request_timeout");
            let mut resp =
                ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("request not completed within {} ms", s.gate.request_timeout.as_millis())).into_response();
            resp.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Counts API requests by app, endpoint and status, and times them. An address that failed to
/// authenticate too often lately gets 429 before its request is looked at.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(req).await;
    };
    if !path.starts_with("/apps/") && !path.starts_with("/users/") && !path.starts_with("/debug/") {
        return next.run(req).await;
    }
    let client = req.extensions().get::<ClientIp>().map(|c| c.0);
    if client.is_some_and(|ip| !s.gate.may_authenticate(ip, Instant::now())) {
        s.metrics.edge_refused("auth_failures_per_ip");
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed authentications from this address; retry later").into_response();
    }
    let app = req.uri().path().split('/').nth(2).filter(|id| s.apps.by_id(id).is_some()).unwrap_or("unknown").to_owned();
    let endpoint = endpoint_name(&path);
    let started = Instant::now();
    let resp = next.run(req).await;
    if let (Some(ip), StatusCode::UNAUTHORIZED) = (client, resp.status()) {
        s.gate.failed_authentication(ip, Instant::now());
    }
    let took = started.elapsed();
    s.metrics.http_duration.get_or_create(&EndpointLabel { endpoint }).observe(took.as_secs_f64());
    s.metrics.insight.recorder.slow_http(&app, endpoint, resp.status().as_u16(), took);
    s.metrics.http_requests.get_or_create(&HttpLabel { app, endpoint, status: resp.status().as_u16() }).inc();
    resp
}

fn endpoint_name(route: &str) -> &'static str {
    match route {
        "/apps/{app_id}/events" => "events",
        "/apps/{app_id}/batch_events" => "batch_events",
        "/apps/{app_id}/channels" => "channels",
        "/apps/{app_id}/channels/{channel}" => "channel",
        "/apps/{app_id}/channels/{channel}/users" => "channel_users",
        "/apps/{app_id}/users/{user_id}/terminate_connections" => "terminate_connections",
        "/apps/{app_id}/sessions" => "sessions",
        "/apps/{app_id}/sessions/{host}" => "session",
        "/apps/{app_id}/agents" => "agents",
        "/apps/{app_id}/debug/slow" | "/debug/slow" => "debug_slow",
        "/apps/{app_id}/usage" => "usage",
        _ => "other",
    }
}
