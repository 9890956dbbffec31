//! Wiring: the shared state, the router, and `run(listener, config, shutdown)`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::get;
use axum::Router;
use sonde_protocol::CloseCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::accept::{Accepting, IoRuntimes, IoThreads};
use crate::apps::{Apps, Shared};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::dashboard;
use crate::edge::{Door, Gate};
use crate::http;
use crate::metrics::Metrics;
use crate::ws::conn::Timing;
use crate::ws::{self, upgrade};

/// Longest wait at start for the cluster before serving local clients anyway.
const CLUSTER_START_WAIT: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections to say goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued webhooks to go out (once each, no retries).
const WEBHOOK_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The relay's state, which only this wiring holds whole: every edge and handler takes its
/// own part (axum's `FromRef` below, or a part built here such as `ws::Endpoint`).
#[derive(Clone)]
pub struct AppState {
    pub apps: Arc<Apps>,
    /// The gate, the counters and the relay's lifetime, which every door shares.
    pub door: Door,
    pub timing: Timing,
    /// The cluster adapter, when running with Redis.
    pub cluster: Option<Arc<Cluster>>,
    /// The runtimes that serve connections; without them, the caller's runtime does.
    pub io: Option<Arc<IoRuntimes>>,
    /// The HTTP client of webhooks, when an app has targets.
    pub webhook_client: Option<reqwest::Client>,
    /// TLS on the public listener, when configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The HTTP API's part (what `http::Signed` checks a request against).
impl FromRef<AppState> for Arc<Apps> {
    fn from_ref(s: &AppState) -> Self {
        s.apps.clone()
    }
}

/// The metrics endpoint's part (the registry alone).
impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(s: &AppState) -> Self {
        s.door.metrics.clone()
    }
}

/// The middleware's and `/readyz`'s part: the gate, the counters, whether the relay stops.
impl FromRef<AppState> for Door {
    fn from_ref(s: &AppState) -> Self {
        s.door.clone()
    }
}

/// `/readyz`'s other part: whether this node is a full member of its cluster.
impl FromRef<AppState> for Option<Arc<Cluster>> {
    fn from_ref(s: &AppState) -> Self {
        s.cluster.clone()
    }
}

/// A websocket upgrade through hyper spawns its connection on the relay's tracker.
impl FromRef<AppState> for TaskTracker {
    fn from_ref(s: &AppState) -> Self {
        s.door.tracker.clone()
    }
}

impl AppState {
    /// The relay `config` describes, its fan-out lanes started (`fanout_threads`).
    pub fn new(config: &Config) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        metrics.insight.recorder.configure(&config.recorder);
        let lanes = crate::hub::Lanes::start(config.fanout_threads)?;
        let shared = Shared { metrics: &metrics, timing: (&config.sessions).into(), hooks: &config.webhooks, lanes: &lanes };
        let apps = Arc::new(Apps::build(&config.apps, shared));
        let webhook_client = apps.iter().any(|a| a.webhooks.is_some()).then(|| crate::webhooks::client(&config.webhooks));
        let cluster = config.redis.clone().map(|r| Cluster::new(r, apps.clone(), &metrics));
        let cap = crate::edge::socket_cap(config.edge.max_sockets, config.edge.reserved_descriptors);
        let gate = Arc::new(Gate::new(&config.edge, &config.trusted_proxies, cap, metrics.clone()));
        Ok(Self {
            door: Door { gate, metrics, shutdown: CancellationToken::new(), tracker: TaskTracker::new() },
            apps,
            cluster,
            timing: Timing {
                activity: Duration::from_secs(config.activity_timeout_s),
                pong: Duration::from_secs(config.pong_timeout_s),
                write: Duration::from_secs(30),
            },
            io: None,
            webhook_client,
            tls: None,
        })
    }

    /// The websocket edge's part.
    pub fn endpoint(&self) -> ws::Endpoint {
        ws::Endpoint { door: self.door.clone(), apps: self.apps.clone(), timing: self.timing, tls: self.tls.is_some() }
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
    let door = state.door.clone();
    if let Some(files) = &config.tls {
        let tls = crate::tls::Tls::load(files).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        door.tracker.spawn(tls.watch(door.metrics.clone(), door.shutdown.clone()));
        state.tls = Some(tls);
    } else if let Some(hup) = crate::tls::hangup_without_tls(door.shutdown.clone()) {
        // `systemctl reload` (SIGHUP) must never end a relay that has nothing to reload.
        door.tracker.spawn(hup);
    }
    if let Some(addr) = config.metrics_bind {
        // Up before the cluster is joined: /readyz says when this node is.
        let routes = crate::health::routes().with_state(state.clone());
        door.tracker.spawn(crate::health::serve(bind(addr)?, routes, door.clone()));
    }
    let served = run_with_state(listener, state, shutdown).await;
    drop(io);
    served
}

pub async fn run_with_state(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let cancel = state.door.shutdown.clone();
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
    let sweeper = tokio::spawn(crate::ticks::sweep(state.apps.clone(), state.door.gate.clone()));
    let ticker = tokio::spawn(crate::ticks::run(state.apps.clone(), state.door.metrics.clone(), state.cluster.clone()));
    if let Some(dump) = crate::insight::signal::dump_on_sigusr1(state.door.metrics.insight.recorder.clone(), cancel.clone()) {
        tokio::spawn(dump);
    }
    let accepting = Arc::new(Accepting { ws: state.endpoint(), tls: state.tls.clone(), routes: router(state.clone()), io: state.io.clone() });
    accept_until(&listener, &accepting, shutdown, &cancel).await;
    info!(code = sonde_protocol::CloseCode::Reconnect.code(), "shutting down: closing clients");
    if state.cluster.is_some() {
        // The next leader reports what this node's departure causes, its own clients leaving
        // included: this one stops reporting before it lets the lease go.
        state.apps.iter().filter_map(|a| a.webhooks.as_ref()).for_each(|w| w.leave_cluster());
    }
    cancel.cancel();
    for app in state.apps.iter() {
        app.hub.close_all(CloseCode::Reconnect, "server is shutting down, reconnect");
    }
    state.door.tracker.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, state.door.tracker.wait()).await;
    hooks_stop.cancel();
    let _ = tokio::time::timeout(WEBHOOK_DRAIN_TIMEOUT, futures_util::future::join_all(hooks)).await;
    sweeper.abort();
    ticker.abort();
    if let Some((_, task)) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    Ok(())
}

/// Hands every accepted socket to the accept path until `shutdown` resolves or the relay is
/// stopped otherwise.
async fn accept_until(listener: &TcpListener, accepting: &Arc<Accepting>, shutdown: impl Future<Output = ()> + Send + 'static, stop: &CancellationToken) {
    // Polled on its own task from the start, so signal handlers are installed at once.
    let mut shutdown = tokio::spawn(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => crate::accept::admit(tcp, peer, accepting),
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => return,
            () = stop.cancelled() => return,
        }
    }
}

/// Binds with a listen backlog that absorbs bursts of new connections (the default of 128
/// drops SYNs, costing clients a second each).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
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
