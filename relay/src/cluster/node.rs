//! One node's Redis loop: connect, subscribe, sync, relay messages both ways, heartbeat,
//! drop silent nodes, hold or claim the session leader lease, and reconnect with backoff when
//! Redis fails.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use redis::AsyncCommands;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::lease::{Claim, Lease};
use super::sync::SyncWait;
use super::views::Views;
use super::RedisConfig;
use crate::apps::Apps;
use crate::bus::Link;
use crate::bus::{Envelope, Msg};
use crate::hub::NodeId;
use crate::sessions::Clock;

/// How long a (re)joined node waits for the other nodes to begin answering its `Hello`
/// before it gives up on those that have not (see `sync`).
const SYNC_WAIT: Duration = Duration::from_secs(3);
/// Most queued messages sent to Redis in one pipeline.
const BATCH: usize = 256;

pub struct Cluster {
    config: RedisConfig,
    node: NodeId,
    apps: Arc<Apps>,
    link: Link,
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    views: Mutex<Views>,
    ready: watch::Sender<bool>,
    /// 1 while connected to Redis.
    state: Gauge,
    lease: Lease,
    /// The leader term this node holds.
    held: Mutex<Option<u64>>,
    /// The node holding the leader lease, as the last claim found: its heartbeats confirm
    /// the cluster-wide webhook events the others keep (see `webhooks::pending`).
    leader: Mutex<Option<String>>,
    /// Bus latency by app (node-level messages under ""), the recorder of slow ones, and
    /// the count of lost links.
    bus: super::latency::BusLatency,
}

type Res<T> = redis::RedisResult<T>;

impl Cluster {
    pub fn new(config: RedisConfig, apps: Arc<Apps>, metrics: &crate::metrics::Metrics) -> Arc<Self> {
        let node: NodeId = config.node_id.clone().unwrap_or_else(|| format!("{:016x}", rand::random::<u64>())).into();
        let (link, rx) = Link::new(node.clone(), metrics.cluster_dropped.clone());
        let bus = super::latency::BusLatency::new(metrics, apps.iter().map(|a| a.id()));
        for app in apps.iter() {
            app.set_cluster(link.clone());
        }
        let (ready, _) = watch::channel(false);
        let lease = Lease::new(&config.prefix, &node, config.node_timeout_ms);
        let views = Mutex::new(Views::new(apps.clone()));
        Arc::new(Self {
            config,
            node,
            views,
            apps,
            link,
            rx: Mutex::new(Some(rx)),
            ready,
            state: metrics.cluster_up.clone(),
            lease,
            held: Mutex::new(None),
            leader: Mutex::new(None),
            bus,
        })
    }

    /// Other nodes this one hears from.
    pub fn peers(&self) -> usize {
        self.views.lock().node_count()
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the node is a full member (or `max` has passed).
    pub async fn wait_ready(&self, max: Duration) {
        let mut rx = self.ready.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|r| *r)).await;
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.config.prefix)
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().take() else { return };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.connected(&mut rx, &shutdown).await {
                Ok(()) => return,
                Err(e) => warn!(error = %e, "cluster: lost Redis; serving local clients and reconnecting"),
            }
            self.bus.reconnects.inc();
            self.link.up.store(false, Ordering::Relaxed);
            self.state.set(0);
            self.ready.send_replace(false);
            self.run_alone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn connected(&self, rx: &mut mpsc::Receiver<Vec<u8>>, shutdown: &CancellationToken) -> Res<()> {
        let client = redis::Client::open(self.config.url.as_str())?;
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(self.key("bus")).await?;
            let con = client.get_multiplexed_async_connection().await?;
            Res::Ok((pubsub, con))
        };
        let (pubsub, mut con) = tokio::time::timeout(Duration::from_secs(3), connect)
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting to Redis")))??;
        let mut messages = pubsub.into_on_message();
        // Drop whatever queued while Redis was away: the resync below replaces it.
        while rx.try_recv().is_ok() {}
        // Back in the cluster, whatever ran here alone is the leader's to continue.
        self.follow_all();
        self.views.lock().heard_all_now();
        self.link.up.store(true, Ordering::Relaxed);
        self.state.set(1);
        self.heartbeat(&mut con).await?;
        let expected: HashSet<String> = self.within(self.live_nodes(&mut con)).await?;
        self.publish(&mut con, &[self.envelope("", Msg::Hello)]).await?;
        self.announce_state(&mut con, "*").await?;
        info!(node = %self.node, peers = expected.len(), "cluster: connected to Redis");

        // A node that has not begun answering within the node timeout is gone (its key
        // outlives it); one that has is waited for until it is done or silent.
        let first_wait = SYNC_WAIT.min(Duration::from_millis(self.config.node_timeout_ms + self.config.heartbeat_ms));
        let mut waiting = SyncWait::new(expected, first_wait);
        let hello_at = tokio::time::Instant::now();
        if waiting.is_empty() {
            self.synced();
            self.claim(&mut con).await?;
        }
        let mut beat = tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.leave(&mut con).await;
                    return Ok(());
                }
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "Redis closed the subscription")));
                    };
                    self.on_bus(&mut con, &msg.get_payload::<Vec<u8>>()?, &mut waiting).await?;
                }
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return Ok(());
                    }
                    self.publish(&mut con, &batch).await?;
                    batch.clear();
                }
                _ = beat.tick() => self.on_beat(&mut con, &mut waiting, hello_at.elapsed()).await?,
            }
        }
    }

    /// One message from another node; answers a `Hello` with this node's state.
    async fn on_bus(&self, con: &mut redis::aio::MultiplexedConnection, payload: &[u8], waiting: &mut SyncWait) -> Res<()> {
        let Some(env) = Envelope::decode(payload) else {
            tracing::debug!(len = payload.len(), "cluster: undecodable bus message");
            return Ok(());
        };
        if *env.node == *self.node {
            return Ok(());
        }
        let from: NodeId = env.node.as_str().into();
        if matches!(env.msg, Msg::Heartbeat) && self.leader.lock().as_deref() == Some(env.node.as_str()) {
            self.apps.iter().filter_map(|app| app.webhooks.as_ref()).for_each(|w| w.leader_beat());
        }
        if matches!(&env.msg, Msg::SyncStart { to } if **to == *self.node) {
            waiting.answering(&env.node);
        }
        let hello = matches!(env.msg, Msg::Hello);
        let bye = matches!(env.msg, Msg::Bye);
        let (kind, sent_ms) = (env.msg.label(), env.sent_ms);
        let done = self.views.lock().apply(&from, &env.app, env.msg, &self.node);
        self.bus.applied(&env.node, &env.app, kind, sent_ms);
        if hello {
            self.announce_state(con, &env.node).await?;
        }
        if done && waiting.finished(&env.node) {
            self.synced();
            self.claim(con).await?;
        } else if bye && self.held.lock().is_none() {
            // The leader may have let its lease go on leaving: take over without waiting.
            self.claim(con).await?;
        }
        Ok(())
    }

    /// Says this node is alive, drops nodes that stopped answering, and declares this node
    /// ready once the others answered its `Hello` (see `SyncWait` for how long it waits).
    async fn on_beat(&self, con: &mut redis::aio::MultiplexedConnection, waiting: &mut SyncWait, since_hello: Duration) -> Res<()> {
        self.heartbeat(con).await?;
        self.publish(con, &[self.envelope("", Msg::Heartbeat)]).await?;
        let silent = self.views.lock().silent(Duration::from_millis(self.config.node_timeout_ms));
        for n in &silent {
            warn!(node = %n, "cluster: node stopped answering; dropping its state");
            self.views.lock().drop_node(n);
            waiting.finished(n);
        }
        if !self.is_ready() && waiting.over(since_hello) {
            self.synced();
        }
        self.claim(con).await
    }

    /// The node is a full member. The cluster-wide webhook events it kept while syncing were
    /// the others' state arriving (every channel becoming occupied, every member added), which
    /// whoever led then has reported: they are forgotten, not sent if this node leads next.
    fn synced(&self) {
        if !self.is_ready() {
            self.apps.iter().filter_map(|app| app.webhooks.as_ref()).for_each(|w| w.forget_pending());
        }
        self.ready.send_replace(true);
    }

    fn envelope(&self, app: &str, msg: Msg) -> Vec<u8> {
        Envelope::new(&self.node, app, msg).encode()
    }

    async fn publish(&self, con: &mut redis::aio::MultiplexedConnection, msgs: &[Vec<u8>]) -> Res<()> {
        let mut pipe = redis::pipe();
        for m in msgs {
            pipe.publish(self.key("bus"), m.as_slice()).ignore();
        }
        self.within(pipe.query_async::<()>(con)).await
    }

    async fn heartbeat(&self, con: &mut redis::aio::MultiplexedConnection) -> Res<()> {
        let ttl = self.config.node_timeout_ms;
        self.within(con.pset_ex::<_, _, ()>(self.key(&format!("node:{}", self.node)), 1, ttl)).await
    }

    async fn live_nodes(&self, con: &mut redis::aio::MultiplexedConnection) -> Res<HashSet<String>> {
        let prefix = self.key("node:");
        let keys: Vec<String> = con.keys(format!("{prefix}*")).await?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).filter(|n| *n != *self.node).collect())
    }

    /// Publishes this node's whole state, bracketed so receivers can drop what is gone.
    async fn announce_state(&self, con: &mut redis::aio::MultiplexedConnection, to: &str) -> Res<()> {
        let mut out = vec![self.envelope("", Msg::SyncStart { to: to.to_owned() })];
        for app in self.apps.iter() {
            let id = app.id();
            // The table first: a leader hearing it adopts the sessions it lacks before the
            // viewer counts below would make it start new ones.
            out.push(self.envelope(id, Msg::from(&app.sessions.table(Clock::now()))));
            let (channels, users) = app.hub.local_state();
            for (ch, count, members) in channels {
                out.push(self.envelope(id, Msg::Count { channel: ch.to_string(), count }));
                for m in members {
                    out.push(
                        self.envelope(id, Msg::Join { channel: ch.to_string(), user: m.user_id.to_string(), info: m.user_info.as_deref().map(str::to_owned) }),
                    );
                }
            }
            for u in users {
                out.push(self.envelope(id, Msg::User { user: u.to_string(), online: true }));
            }
            for (host, viewers, agents) in app.sessions.local_hosts() {
                out.push(self.envelope(id, Msg::Host { host: host.to_string(), viewers, agents: agents.iter().map(ToString::to_string).collect() }));
            }
            for host in app.inventory.local_hosts() {
                let (connections, snapshot) = app.inventory.local(&host);
                out.push(self.envelope(id, Msg::Agent { host: host.to_string(), connections, snapshot: snapshot.map(|s| s.to_string()) }));
            }
            let now = std::time::Instant::now();
            for (ch, frame, until) in app.hub.cached() {
                let ttl_ms = until.saturating_duration_since(now).as_millis() as u64;
                out.push(self.envelope(id, Msg::Cache { channel: ch.to_string(), frame: String::from_utf8_lossy(&frame).into_owned(), ttl_ms }));
            }
        }
        out.push(self.envelope("", Msg::SyncDone { to: to.to_owned() }));
        for chunk in out.chunks(BATCH) {
            self.publish(con, chunk).await?;
        }
        Ok(())
    }
}

/// The session leader lease.
impl Cluster {
    /// Keeps the leader lease, or takes it when nobody holds it. Only a full member claims
    /// it: one that has the cluster's state, the newest session table included, from its sync.
    async fn claim(&self, con: &mut redis::aio::MultiplexedConnection) -> Res<()> {
        if !self.is_ready() {
            return Ok(());
        }
        let sent = std::time::Instant::now();
        let held = *self.held.lock();
        let now = match held {
            Some(term) => self.within(self.lease.renew(con, term)).await?.then_some(term),
            None => match self.within(self.lease.claim(con, self.term_seen())).await? {
                Claim::Won(term) => Some(term),
                Claim::Held(term, holder) => {
                    self.apps.iter().for_each(|app| app.sessions.note_term(term));
                    *self.leader.lock() = Some(holder);
                    None
                }
            },
        };
        *self.held.lock() = now;
        if now.is_some() {
            *self.leader.lock() = Some(self.node.to_string());
        }
        let clock = Clock::now();
        match (held, now) {
            (_, Some(term)) => {
                if held.is_none() {
                    info!(node = %self.node, term, "cluster: this node now runs the sessions");
                }
                // Sure of the lease for most of its time to live, counted from before the
                // renewal was sent.
                let until = sent + Duration::from_millis(self.config.node_timeout_ms * 3 / 4);
                self.apps.iter().for_each(|app| app.apply(app.sessions.lead(term, until, clock)));
            }
            (Some(term), None) => {
                warn!(node = %self.node, term, "cluster: lost the leader lease; following");
                self.follow_all();
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn term_seen(&self) -> u64 {
        self.apps.iter().map(|app| app.sessions.term_seen()).max().unwrap_or(0)
    }

    fn follow_all(&self) {
        *self.held.lock() = None;
        let clock = Clock::now();
        for app in self.apps.iter() {
            app.sessions.follow(clock);
            app.apply(Vec::new());
        }
    }

    /// Cut off from Redis: every node runs its own clients' sessions until it is back.
    fn run_alone(&self) {
        *self.held.lock() = None;
        let clock = Clock::now();
        self.apps.iter().for_each(|app| app.apply(app.sessions.alone(clock)));
    }

    /// Shutting down: the last table, the lease let go so another node takes over at once,
    /// and goodbye.
    async fn leave(&self, con: &mut redis::aio::MultiplexedConnection) {
        let held = self.held.lock().take();
        if let Some(term) = held {
            let clock = Clock::now();
            let tables: Vec<Vec<u8>> = self.apps.iter().map(|app| self.envelope(app.id(), Msg::from(&app.sessions.table(clock)))).collect();
            let _ = self.publish(con, &tables).await;
            let _ = self.within(self.lease.release(con, term)).await;
        }
        let _ = self.publish(con, &[self.envelope("", Msg::Bye)]).await;
        let _: Res<()> = self.within(con.del(self.key(&format!("node:{}", self.node)))).await;
    }

    /// A Redis command that does not answer in time counts as Redis lost: the node then runs
    /// alone instead of waiting (a leader, past its lease).
    async fn within<T>(&self, fut: impl std::future::Future<Output = Res<T>>) -> Res<T> {
        let wait = Duration::from_millis((self.config.node_timeout_ms / 2).max(100));
        tokio::time::timeout(wait, fut).await.map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time")))?
    }
}
