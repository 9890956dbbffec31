//! Wiring: the shared state, the router, and `run(listener, config, shutdown)`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use sonde_protocol::CloseCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::apps::{Apps, Shared};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::dashboard;
use crate::edge::{Admission, Gate, Slot};
use crate::http;
use crate::metrics::Metrics;
use crate::sessions::Clock;
use crate::ws::conn::Timing;
use crate::ws::upgrade;

/// How often expired cache entries are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Longest wait at start for the cluster before serving local clients anyway.
const CLUSTER_START_WAIT: Duration = Duration::from_secs(5);
/// Resolution of session timers (renewals, grace periods).
const SESSION_TICK: Duration = Duration::from_millis(250);
/// How long shutdown waits for connections to say goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued webhooks to go out (once each, no retries).
const WEBHOOK_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The state every handler shares: one `Clone` struct of `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub apps: Arc<Apps>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    /// Cancelled when the relay stops: connections close with 4200.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The cluster adapter, when running with Redis.
    pub cluster: Option<Arc<Cluster>>,
    /// The runtimes that serve connections; without them, the caller's runtime does.
    pub io: Option<Arc<IoRuntimes>>,
    /// Socket caps, per-address limits and deadlines of the edge.
    pub gate: Arc<Gate>,
    /// The HTTP client of webhooks, when an app has targets.
    pub webhook_client: Option<reqwest::Client>,
    /// TLS on the public listener, when configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The HTTP API's part of the state (what `http::Signed` checks a request against).
impl axum::extract::FromRef<AppState> for Arc<Apps> {
    fn from_ref(s: &AppState) -> Self {
        s.apps.clone()
    }
}

/// The metrics endpoint's part of the state (the registry alone).
impl axum::extract::FromRef<AppState> for Arc<Metrics> {
    fn from_ref(s: &AppState) -> Self {
        s.metrics.clone()
    }
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

impl AppState {
    /// The relay `config` describes, its fan-out lanes started (`fanout_threads`).
    pub fn new(config: &Config) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        metrics.insight.recorder.configure(&config.recorder);
        let lanes = crate::hub::Lanes::start(config.fanout_threads)?;
        let shared = Shared { metrics: &metrics, timing: config.sessions.timing(), hooks: &config.webhooks, lanes: &lanes };
        let apps = Arc::new(Apps::build(&config.apps, shared));
        let webhook_client = apps.iter().any(|a| a.webhooks.is_some()).then(|| crate::webhooks::client(&config.webhooks));
        let cluster = config.redis.clone().map(|r| Cluster::new(r, apps.clone(), &metrics));
        let cap = crate::edge::socket_cap(config.edge.max_sockets, config.edge.reserved_descriptors);
        let gate = Arc::new(Gate::new(&config.edge, &config.trusted_proxies, cap, metrics.clone()));
        Ok(Self {
            gate,
            apps,
            cluster,
            metrics,
            timing: Timing {
                activity: Duration::from_secs(config.activity_timeout_s),
                pong: Duration::from_secs(config.pong_timeout_s),
                write: Duration::from_secs(30),
            },
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            io: None,
            webhook_client,
            tls: None,
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/app.css", get(dashboard::app_css))
        .merge(http::api_routes())
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .fallback(upgrade::wrong_path)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::deadline))
        .layer(DefaultBodyLimit::max(http::MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then closes every client with 4200 and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let mut state = AppState::new(&config)?;
    let threads = config.io_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let io = match threads {
        0 => None,
        n => Some(IoThreads::start(n)?),
    };
    state.io = io.as_ref().map(|t| t.runtimes.clone());
    if let Some(files) = &config.tls {
        let tls = crate::tls::Tls::load(files).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        state.tracker.spawn(tls.watch(state.metrics.clone(), state.shutdown.clone()));
        state.tls = Some(tls);
    } else if let Some(hup) = crate::tls::hangup_without_tls(state.shutdown.clone()) {
        // `systemctl reload` (SIGHUP) must never end a relay that has nothing to reload.
        state.tracker.spawn(hup);
    }
    if let Some(addr) = config.metrics_bind {
        // Up before the cluster is joined: /readyz says when this node is.
        state.tracker.spawn(crate::health::serve(bind(addr)?, state.clone()));
    }
    let served = run_with_state(listener, state, shutdown).await;
    drop(io);
    served
}

pub async fn run_with_state(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let cancel = state.shutdown.clone();
    let cluster_task = state.cluster.clone().map(|c| {
        let task = tokio::spawn(c.clone().run(cancel.child_token()));
        (c, task)
    });
    if let Some((c, _)) = &cluster_task {
        // Serve only as a full member: subscribed to the bus and synced with the other nodes.
        // Without Redis, serve local clients anyway; /readyz says not ready until it is back.
        c.wait_ready(CLUSTER_START_WAIT).await;
    }
    // Stopped only once every connection is gone, so what their departure causes is sent.
    let hooks_stop = CancellationToken::new();
    let hooks: Vec<_> = match &state.webhook_client {
        Some(client) => state.apps.iter().filter_map(|a| a.webhooks.as_ref()).flat_map(|w| w.start(client, &hooks_stop)).collect(),
        None => Vec::new(),
    };
    let sweeper = tokio::spawn(sweep(state.clone()));
    let ticker = tokio::spawn(tick_sessions(state.clone()));
    if let Some(dump) = crate::insight::signal::dump_on_sigusr1(state.metrics.insight.recorder.clone(), cancel.clone()) {
        tokio::spawn(dump);
    }
    let routes = router(state.clone());
    let stop = cancel.clone();
    // Polled on its own task from the start, so signal handlers are installed at once.
    let mut shutdown = tokio::spawn(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => admit(tcp, peer, &state, &routes),
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
            () = stop.cancelled() => break,
        }
    }
    info!(code = sonde_protocol::CloseCode::Reconnect.code(), "shutting down: closing clients");
    let served: std::io::Result<()> = Ok(());
    if state.cluster.is_some() {
        // The next leader reports what this node's departure causes, its own clients leaving
        // included: this one stops reporting before it lets the lease go.
        state.apps.iter().filter_map(|a| a.webhooks.as_ref()).for_each(|w| w.leave_cluster());
    }
    cancel.cancel();
    for app in state.apps.iter() {
        app.hub.close_all(CloseCode::Reconnect, "server is shutting down, reconnect");
    }
    state.tracker.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, state.tracker.wait()).await;
    hooks_stop.cancel();
    let _ = tokio::time::timeout(WEBHOOK_DRAIN_TIMEOUT, futures_util::future::join_all(hooks)).await;
    sweeper.abort();
    ticker.abort();
    if let Some((_, task)) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    served
}

/// Drives session leases and grace periods, and flushes inventory changes once a second.
async fn tick_sessions(state: AppState) {
    let mut tick = tokio::time::interval(SESSION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let clock = Clock::now();
        for app in state.apps.iter() {
            app.apply(app.sessions.tick(clock));
            if n.is_multiple_of(4) {
                app.count_agents();
            }
            // Once a second; sooner while a backlog drains (`App::flush_inventory` sizes it).
            if n.is_multiple_of(4) || app.inventory.has_changes() {
                app.flush_inventory();
            }
            if n.is_multiple_of(240) {
                app.inventory.prune(clock.now_ms);
            }
        }
        if n.is_multiple_of(4) {
            crate::insight::usage_api::tick(&state);
            crate::insight::live::tick(&state);
        }
    }
}

/// Takes a just-accepted socket through the door: refused at once, served for health checks
/// only, or handed to an I/O thread. Its deadline for a whole request head starts now.
fn admit(mut tcp: TcpStream, peer: SocketAddr, state: &AppState, routes: &Router) {
    let slot = match state.gate.admit(peer.ip()) {
        Admission::Refused(r) => {
            // Best effort and without waiting: the socket is closed either way.
            let _ = tcp.try_write(r.reply().as_bytes());
            return;
        }
        Admission::HealthOnly(slot) => {
            let task = serve_health(tcp, peer, state.clone(), routes.clone(), slot);
            state.tracker.spawn(crate::edge::guarded(task, state.metrics.clone()));
            return;
        }
        Admission::Client(slot) => slot,
    };
    tune_socket(&mut tcp);
    let deadline = Instant::now() + state.gate.head_timeout;
    match &state.io {
        // Handed over unregistered: it registers with the runtime it runs on.
        Some(io) => match tcp.into_std() {
            Ok(std) => {
                let task = crate::edge::guarded(serve_std(std, peer, state.clone(), routes.clone(), slot, deadline), state.metrics.clone());
                io.pick().spawn(state.tracker.track_future(task));
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
        },
        None => {
            let task = serve_tcp(tcp, peer, state.clone(), routes.clone(), slot, deadline);
            state.tracker.spawn(crate::edge::guarded(task, state.metrics.clone()));
        }
    }
}

async fn serve_std(std: std::net::TcpStream, peer: SocketAddr, state: AppState, routes: Router, slot: Slot, deadline: Instant) {
    if let Ok(tcp) = TcpStream::from_std(std) {
        serve_tcp(tcp, peer, state, routes, slot, deadline).await;
    }
}

/// One accepted connection: the websocket endpoint handles its own handshake (so it owns its
/// socket); everything else is served by hyper with the router.
///
/// A connection's task is as large as the largest state its future can be in, for its whole
/// life; each path is boxed, so an idle websocket does not carry the room of a hyper
/// connection (or the reverse).
async fn serve_tcp(tcp: tokio::net::TcpStream, peer: SocketAddr, state: AppState, routes: Router, slot: Slot, deadline: Instant) {
    // Behind a load balancer speaking the PROXY protocol, its header names the client.
    let peer = match state.gate.proxy_protocol {
        true => match Box::pin(crate::proxied::client(&tcp, peer, &state, deadline)).await {
            Some(client) => client,
            None => return,
        },
        false => peer,
    };
    if let Some(tls) = state.tls.clone() {
        return Box::pin(crate::tls::accept::serve(tcp, peer, state, routes, slot, deadline, tls)).await;
    }
    let sniff = Box::pin(async {
        tokio::select! {
            app = crate::ws::accept::is_app_socket(&tcp, deadline) => Some(app),
            () = state.shutdown.cancelled() => None,
        }
    });
    let Some(sniff) = sniff.await else { return };
    match sniff {
        Some(true) => Box::pin(crate::ws::accept::serve(tcp, peer, state, slot, deadline)).await,
        Some(false) => Box::pin(serve_plain_http(tcp, peer, state, routes, slot, true)).await,
        // Nothing said before the deadline: an idle socket holds no place.
        None => state.metrics.edge_refused("head_timeout"),
    }
}

/// Paths still served when the relay is at its socket cap.
const HEALTH_PATHS: [&[u8]; 3] = [b"GET /healthz ", b"GET /readyz ", b"GET /metrics "];
/// How long a socket beyond the cap may take to show it asks for a health path.
const HEALTH_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// A socket beyond the cap: served if it asks for a health path, refused otherwise.
async fn serve_health(tcp: TcpStream, peer: SocketAddr, state: AppState, routes: Router, slot: Slot) {
    let health = tokio::time::timeout(HEALTH_HEAD_TIMEOUT, crate::ws::accept::starts_with(&tcp, &HEALTH_PATHS));
    if health.await.is_ok_and(|found| found.is_some()) {
        serve_plain_http(tcp, peer, state, routes, slot, false).await;
    } else {
        let refused = crate::edge::Refused::Cap;
        state.metrics.edge_refused(refused.label());
        let _ = tcp.try_write(refused.reply().as_bytes());
    }
}

/// The client's address as the router sees it (the forwarded one behind a trusted proxy).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

async fn serve_plain_http(tcp: tokio::net::TcpStream, peer: SocketAddr, state: AppState, routes: Router, slot: Slot, keep_alive: bool) {
    let Ok(socket) = crate::net::Socket::new(tcp) else { return };
    serve_http(crate::net::SocketStream::new(socket), peer, state, routes, slot, keep_alive).await;
}

/// Serves HTTP requests with the router on one connection (plain or TLS) until it closes.
pub async fn serve_http<S>(io: S, peer: SocketAddr, state: AppState, routes: Router, slot: Slot, keep_alive: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let gate = state.gate.clone();
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
        .header_read_timeout(state.gate.head_timeout)
        .max_buf_size(MAX_HTTP_BUFFER)
        .keep_alive(keep_alive)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Most bytes hyper buffers per connection (request heads and pipelined requests).
const MAX_HTTP_BUFFER: usize = 64 * 1024;

/// Kernel send buffer per connection: a client that stops reading holds at most this much
/// kernel memory (plus its bounded outbox) instead of several MiB of autotuned buffer.
pub const SEND_BUFFER_BYTES: usize = 256 * 1024;

fn tune_socket(tcp: &mut TcpStream) {
    // Frames are already batched per write; waiting for more (Nagle) only adds latency.
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
}

/// Binds with a listen backlog that absorbs bursts of new connections (the default of 128
/// drops SYNs, costing clients a second each).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn sweep(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        for app in state.apps.iter() {
            app.hub.sweep();
            app.limiters.sweep(std::time::Instant::now());
        }
        state.gate.sweep(std::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;

    #[test]
    fn every_app_fans_out_through_the_lanes_the_config_names() {
        let apps = vec![AppConfig::from_flag("1:k1:s1").unwrap(), AppConfig::from_flag("2:k2:s2").unwrap()];
        let state = AppState::new(&Config { fanout_threads: Some(3), apps, ..Config::default() }).unwrap();
        let lanes: Vec<&crate::hub::Lanes> = state.apps.iter().map(|a| a.hub.lanes()).collect();
        assert_eq!(lanes.len(), 2);
        assert!(lanes.iter().all(|l| l.count() == 3 && std::ptr::eq(*l, lanes[0])));
    }
}
