//! The optional second listener (`metrics_bind`): `/healthz`, `/readyz` and `/metrics` only,
//! in plain HTTP on an internal address. Whatever the public listener faces (a flood that
//! holds every socket up to the cap, slow clients), monitoring and scrapes keep working here:
//! this listener has its own small socket budget and deadlines, and serves nothing else.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::Cluster;
use crate::edge::Door;
use crate::http::{self, ApiError};
use crate::metrics::Metrics;

/// Sockets served at once on this listener; beyond them a socket is closed at once.
const MAX_SOCKETS: usize = 64;
/// A scrape that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// This listener's routes, for any state `/readyz` and `/metrics` can take their parts from.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Door: FromRef<S>,
    Option<Arc<Cluster>>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .fallback(|| async { ApiError::not_found("this listener serves /healthz, /readyz and /metrics only") })
}

/// Serves `routes` until the relay shuts down.
pub async fn serve(listener: TcpListener, routes: Router, door: Door) {
    let permits = Arc::new(Semaphore::new(MAX_SOCKETS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
                    door.tracker.spawn(serve_one(tcp, routes.clone(), permit, door.shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = door.shutdown.cancelled() => return,
        }
    }
}

async fn serve_one(tcp: TcpStream, routes: Router, _permit: OwnedSemaphorePermit, shutdown: tokio_util::sync::CancellationToken) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| tower::ServiceExt::oneshot(routes.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}
