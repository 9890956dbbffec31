//! The HTTP side of a websocket: checks the upgrade request, answers 101, then hands the
//! upgraded stream to a connection task. App and protocol checks happen after the upgrade,
//! because pusher-js only learns a close code from the websocket itself.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use sonde_protocol::CloseCode;

use super::conn::{self, Refusal};
use super::handshake::{self, has_token};
use tokio_util::task::TaskTracker;

use crate::apps::{App, Apps};
use crate::reply::ApiError;
use crate::tokens::Grant;

/// Every value of a header, as text.
fn values<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

pub fn is_upgrade(headers: &HeaderMap) -> bool {
    has_token(values(headers, "upgrade"), "websocket")
}

/// A websocket request on any other path: upgraded and closed with 4005.
pub async fn wrong_path(State(tracker): State<TaskTracker>, req: Request) -> Response {
    if !is_upgrade(req.headers()) {
        return ApiError::not_found("no such endpoint").into_response();
    }
    // RFC 6455 §4.1: only a GET opens a websocket.
    if req.method() != axum::http::Method::GET {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "a websocket upgrade must be a GET request").into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    upgrade(req, |io| conn::refuse(io, Refusal { code: CloseCode::PathNotFound, message: "websocket path must be /app/{key}".into() }), &tracker)
}

pub(super) type Accepted = (Arc<App>, Option<Arc<Grant>>);

pub(super) fn check(apps: &Apps, key: &str, query: Option<&str>, origin: Option<&str>, ip: IpAddr) -> Result<Accepted, Refusal> {
    let app = apps.by_key(key).ok_or_else(|| Refusal { code: CloseCode::UnknownApp, message: format!("App key {key} not in this cluster") })?;
    let params: Vec<(String, String)> = query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let refuse = |code: CloseCode, message: String| {
        app.metrics.error(Some(code));
        Err(Refusal { code, message })
    };
    match param("protocol").map(str::parse::<u32>) {
        None => return refuse(CloseCode::NoProtocol, "no protocol version supplied (use ?protocol=7)".into()),
        Some(Ok(5..=7)) => {}
        Some(_) => return refuse(CloseCode::UnsupportedProtocol, format!("unsupported protocol version {}", param("protocol").unwrap_or_default())),
    }
    if !app.config.enabled {
        return refuse(CloseCode::AppDisabled, "app is disabled".into());
    }
    if !origin_allowed(&app.config.allowed_origins, origin) {
        app.metrics.limit("allowed_origins");
        return refuse(CloseCode::Unauthorized, format!("origin {} is not allowed for this app", origin.unwrap_or("(none)")));
    }
    if !app.limiters.connection(ip, Instant::now()) {
        app.metrics.limit("connections_per_ip");
        return refuse(CloseCode::OverCapacity, "too many new connections from this address; retry later".into());
    }
    let max = app.config.limits.max_connections;
    if max > 0 && app.hub.connection_count() >= max {
        app.metrics.limit("connections");
        return refuse(CloseCode::OverQuota, format!("app is over its quota of {max} connections"));
    }
    let grant = match param("token") {
        None => None,
        Some(t) => match app.tokens.verify(t) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => return refuse(CloseCode::Unauthorized, format!("token refused: {e}")),
        },
    };
    Ok((app.clone(), grant))
}

/// Exact origins, or `*.example.com` for any subdomain (scheme and port included in the
/// comparison for exact entries).
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = origin else { return false };
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(domain) => {
            let host = origin.split("://").nth(1).unwrap_or(origin);
            let host = host.split(':').next().unwrap_or(host);
            host.ends_with(&format!(".{domain}"))
        }
        None => a == origin,
    })
}

fn upgrade<F, Fut>(mut req: Request, run: F, tracker: &TaskTracker) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let key = match handshake::key(|name| values(req.headers(), name)) {
        Ok(key) => key.as_bytes().to_vec(),
        Err(refused) => {
            let mut r = refused.reply().into_response();
            if let Some((name, value)) = refused.header() {
                r.headers_mut().insert(name, HeaderValue::from_static(value));
            }
            return r;
        }
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::new(StatusCode::BAD_REQUEST, "connection cannot be upgraded").into_response();
    };
    tracker.spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            run(TokioIo::new(upgraded)).await;
        }
    });
    let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in handshake::switching_protocols(&key) {
        reply = reply.header(name, value);
    }
    reply.body(Body::empty()).expect("valid header names and values")
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        let list = vec!["https://app.example.com".to_owned(), "*.trusted.io".to_owned()];
        assert!(super::origin_allowed(&[], None));
        assert!(super::origin_allowed(&list, Some("https://app.example.com")));
        assert!(!super::origin_allowed(&list, Some("http://app.example.com")));
        assert!(super::origin_allowed(&list, Some("https://a.trusted.io:8443")));
        assert!(!super::origin_allowed(&list, Some("https://eviltrusted.io")));
        assert!(!super::origin_allowed(&list, None));
    }
}
