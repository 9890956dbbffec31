//! One connection served by hyper with the router (plain or TLS), until it closes or the
//! relay stops.

use std::net::SocketAddr;

use axum::Router;

use crate::edge::{ClientIp, Door, Slot};

/// Most bytes hyper buffers per connection (request heads and pipelined requests).
const MAX_HTTP_BUFFER: usize = 64 * 1024;

/// Serves HTTP requests with the router on one connection until it closes. Each request
/// carries the peer and the client it stands for (the forwarded one behind a trusted proxy).
pub async fn serve<S>(io: S, peer: SocketAddr, door: Door, routes: Router, slot: Slot, keep_alive: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let gate = door.gate.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        slot.handshake_done();
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let client = gate.client_ip(peer.ip(), forwarded);
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        req.extensions_mut().insert(ClientIp(client));
        tower::ServiceExt::oneshot(routes.clone(), req)
    });
    let io = hyper_util::rt::TokioIo::new(io);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // Covers a first request that never comes and a kept-alive connection left idle.
        .header_read_timeout(door.gate.head_timeout)
        .max_buf_size(MAX_HTTP_BUFFER)
        .keep_alive(keep_alive)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = door.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
