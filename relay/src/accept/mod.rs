//! The accept path: a socket just accepted on the public listener goes through the gate
//! (refused, served for health checks only, or admitted), to an I/O thread, past a PROXY
//! header and TLS when configured, and then to the websocket endpoint's own handshake or to
//! hyper with the router.

mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::edge::{Admission, Door, Slot};
use crate::tls::Tls;
use crate::ws;

/// What serving an accepted socket takes, built once for the listener: the websocket
/// endpoint (and through it the door), TLS when configured, the router for every other
/// request, and the I/O threads (without them, the caller's runtime serves).
pub struct Accepting {
    pub ws: ws::Endpoint,
    pub tls: Option<Arc<Tls>>,
    pub routes: Router,
    pub io: Option<Arc<IoRuntimes>>,
}

impl Accepting {
    fn door(&self) -> &Door {
        &self.ws.door
    }
}

/// Takes a just-accepted socket through the door: refused at once, served for health checks
/// only, or handed to an I/O thread. Its deadline for a whole request head starts now.
pub fn admit(mut tcp: TcpStream, peer: SocketAddr, accepting: &Arc<Accepting>) {
    let door = accepting.door();
    let slot = match door.gate.admit(peer.ip()) {
        Admission::Refused(r) => {
            // Best effort and without waiting: the socket is closed either way.
            let _ = tcp.try_write(r.reply().as_bytes());
            return;
        }
        Admission::HealthOnly(slot) => {
            let task = serve_health(tcp, peer, accepting.clone(), slot);
            door.tracker.spawn(crate::edge::guarded(task, door.metrics.clone()));
            return;
        }
        Admission::Client(slot) => slot,
    };
    tune_socket(&mut tcp);
    let deadline = Instant::now() + door.gate.head_timeout;
    match &accepting.io {
        // Handed over unregistered: it registers with the runtime it runs on.
        Some(io) => match tcp.into_std() {
            Ok(std) => {
                let task = crate::edge::guarded(serve_std(std, peer, accepting.clone(), slot, deadline), door.metrics.clone());
                io.pick().spawn(door.tracker.track_future(task));
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
        },
        None => {
            let task = serve_tcp(tcp, peer, accepting.clone(), slot, deadline);
            door.tracker.spawn(crate::edge::guarded(task, door.metrics.clone()));
        }
    }
}

async fn serve_std(std: std::net::TcpStream, peer: SocketAddr, accepting: Arc<Accepting>, slot: Slot, deadline: Instant) {
    if let Ok(tcp) = TcpStream::from_std(std) {
        serve_tcp(tcp, peer, accepting, slot, deadline).await;
    }
}

/// One accepted connection: the websocket endpoint handles its own handshake (so it owns its
/// socket); everything else is served by hyper with the router.
///
/// A connection's task is as large as the largest state its future can be in, for its whole
/// life; each path is boxed, so an idle websocket does not carry the room of a hyper
/// connection (or the reverse).
async fn serve_tcp(tcp: TcpStream, peer: SocketAddr, accepting: Arc<Accepting>, slot: Slot, deadline: Instant) {
    let door = accepting.door();
    // Behind a load balancer speaking the PROXY protocol, its header names the client.
    let peer = match door.gate.proxy_protocol {
        true => match Box::pin(crate::proxied::client(&tcp, peer, door, deadline)).await {
            Some(client) => client,
            None => return,
        },
        false => peer,
    };
    if let Some(tls) = accepting.tls.clone() {
        return Box::pin(tls::serve(tcp, peer, tls, accepting, slot, deadline)).await;
    }
    let sniff = Box::pin(async {
        tokio::select! {
            app = ws::accept::is_app_socket(&tcp, deadline) => Some(app),
            () = door.shutdown.cancelled() => None,
        }
    });
    let Some(sniff) = sniff.await else { return };
    match sniff {
        Some(true) => Box::pin(ws::accept::serve(tcp, peer, accepting.ws.clone(), slot, deadline)).await,
        Some(false) => Box::pin(serve_plain_http(tcp, peer, door.clone(), accepting.routes.clone(), slot, true)).await,
        // Nothing said before the deadline: an idle socket holds no place.
        None => door.metrics.edge_refused("head_timeout"),
    }
}

/// Paths still served when the relay is at its socket cap.
const HEALTH_PATHS: [&[u8]; 3] = [b"GET /healthz ", b"GET /readyz ", b"GET /metrics "];
/// How long a socket beyond the cap may take to show it asks for a health path.
const HEALTH_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// A socket beyond the cap: served if it asks for a health path, refused otherwise.
async fn serve_health(tcp: TcpStream, peer: SocketAddr, accepting: Arc<Accepting>, slot: Slot) {
    let door = accepting.door();
    let health = tokio::time::timeout(HEALTH_HEAD_TIMEOUT, ws::accept::starts_with(&tcp, &HEALTH_PATHS));
    if health.await.is_ok_and(|found| found.is_some()) {
        serve_plain_http(tcp, peer, door.clone(), accepting.routes.clone(), slot, false).await;
    } else {
        let refused = crate::edge::Refused::Cap;
        door.metrics.edge_refused(refused.label());
        let _ = tcp.try_write(refused.reply().as_bytes());
    }
}

async fn serve_plain_http(tcp: TcpStream, peer: SocketAddr, door: Door, routes: Router, slot: Slot, keep_alive: bool) {
    let Ok(socket) = crate::net::Socket::new(tcp) else { return };
    crate::http::serve(crate::net::SocketStream::new(socket), peer, door, routes, slot, keep_alive).await;
}

/// Kernel send buffer per connection: a client that stops reading holds at most this much
/// kernel memory (plus its bounded outbox) instead of several MiB of autotuned buffer.
pub const SEND_BUFFER_BYTES: usize = 256 * 1024;

fn tune_socket(tcp: &mut TcpStream) {
    // Frames are already batched per write; waiting for more (Nagle) only adds latency.
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
}

/// Where connections are served: the I/O threads' runtimes, in turn.
pub struct IoRuntimes {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

impl IoRuntimes {
    /// The runtime for the next connection (they take turns).
    fn pick(&self) -> &tokio::runtime::Handle {
        &self.handles[self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len()]
    }
}

/// One single-threaded runtime per core, each serving its share of the connections.
///
/// A work-stealing runtime wakes a second worker whenever a task is scheduled while it runs
/// (in case that one could help), which on a relay serving a request at a time costs a thread
/// wake-up and two context switches per request. Here a connection lives on one thread for
/// its whole life; threads meet only through the hub (and the fan-out lanes).
pub struct IoThreads {
    pub runtimes: Arc<IoRuntimes>,
    stop: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IoThreads {
    pub fn start(count: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            threads.push(std::thread::Builder::new().name(format!("sonde-io-{i}")).spawn(move || rt.block_on(stop.cancelled()))?);
        }
        Ok(Self { runtimes: Arc::new(IoRuntimes { handles, next: AtomicUsize::new(0) }), stop, threads })
    }
}

/// Stops the threads (and drops what is left on them). Owned by `run` alone, so it never
/// runs on one of these threads.
impl Drop for IoThreads {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
