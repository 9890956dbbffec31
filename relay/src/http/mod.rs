//! The HTTP edge: the Pusher HTTP API, health, metrics.

pub mod auth;
mod channels;
mod debug;
pub mod events;
mod info;
mod serve;
mod sessions;
mod signed;
mod usage;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use crate::reply::ApiError;
pub use serve::serve;
pub use signed::Signed;

use crate::apps::Apps;
use crate::cluster::Cluster;
use crate::edge::{ClientIp, Door};
use crate::metrics::{EndpointLabel, HttpLabel, Metrics};

/// Bodies larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The HTTP API's routes, for any state the handlers can take their parts from.
pub fn api_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Apps>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
{
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
        .route("/apps/{app_id}/debug/slow", get(debug::app_events))
        .route("/debug/slow", get(debug::all_events))
        .route("/apps/{app_id}/usage", get(usage::usage))
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(door): State<Door>, State(cluster): State<Option<Arc<Cluster>>>) -> Response {
    if door.shutdown.is_cancelled() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if cluster.as_ref().is_some_and(|c| !c.is_ready()) {
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
pub async fn deadline(State(door): State<Door>, req: Request, next: Next) -> Response {
    let limit = door.gate.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            door.metrics.edge_refused("request_timeout");
            let mut resp = ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("request not completed within {} ms", limit.as_millis())).into_response();
            resp.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Counts API requests by app, endpoint and status, and times them. An address that failed to
/// authenticate too often lately gets 429 before its request is looked at.
pub async fn track(State(door): State<Door>, State(apps): State<Arc<Apps>>, req: Request, next: Next) -> Response {
    let (gate, metrics) = (&door.gate, &door.metrics);
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(req).await;
    };
    if !path.starts_with("/apps/") && !path.starts_with("/users/") && !path.starts_with("/debug/") {
        return next.run(req).await;
    }
    let client = req.extensions().get::<ClientIp>().map(|c| c.0);
    if client.is_some_and(|ip| !gate.may_authenticate(ip, Instant::now())) {
        metrics.edge_refused("auth_failures_per_ip");
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed authentications from this address; retry later").into_response();
    }
    let app = req.uri().path().split('/').nth(2).filter(|id| apps.by_id(id).is_some()).unwrap_or("unknown").to_owned();
    let endpoint = endpoint_name(&path);
    let started = Instant::now();
    let resp = next.run(req).await;
    if let (Some(ip), StatusCode::UNAUTHORIZED) = (client, resp.status()) {
        gate.failed_authentication(ip, Instant::now());
    }
    let took = started.elapsed();
    metrics.http_duration.get_or_create(&EndpointLabel { endpoint }).observe(took.as_secs_f64());
    metrics.insight.recorder.slow_http(&app, endpoint, resp.status().as_u16(), took);
    metrics.http_requests.get_or_create(&HttpLabel { app, endpoint, status: resp.status().as_u16() }).inc();
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
