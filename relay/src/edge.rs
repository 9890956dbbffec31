//! The relay's front door: how many sockets it serves, how many one address may hold, how
//! long a client may take to say what it wants, and which proxies may name the real client.
//!
//! Every accepted socket takes a [`Slot`] before anything is read from it; the slot is given
//! back when the socket's task ends, however it ends. Descriptors therefore never run out:
//! past `max_sockets` only a few health and metrics requests are served, and past those a
//! socket is refused at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use ipnet::IpNet;
use parking_lot::Mutex;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{parse_net, EdgeConfig};
use crate::limits::TokenBucket;
use crate::metrics::Metrics;

/// What every way in shares (the public listener's websocket and HTTP doors, TLS, the PROXY
/// header, the `metrics_bind` listener): the gate, the relay's counters and its lifetime.
/// Each edge takes this, or a part of the relay's state built on it, never the whole state.
#[derive(Clone)]
pub struct Door {
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the relay stops: connections close with 4200.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// The client's address as the router sees it (the forwarded one behind a trusted proxy).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Addresses tracked for failed authentications at most; past it, forgiven ones go first.
const MAX_TRACKED_FAILURES: usize = 100_000;

/// Why a socket is refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every socket and every health socket is taken.
    Cap,
    /// The address holds `max_sockets_per_ip` sockets already.
    PerIp,
    /// The address has `max_handshakes_per_ip` sockets that have not sent a request yet.
    Handshakes,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Self::Cap => "socket_cap",
            Self::PerIp => "sockets_per_ip",
            Self::Handshakes => "handshakes_per_ip",
        }
    }

    /// The HTTP reply a refused socket gets, written without reading its request.
    pub fn reply(self) -> String {
        let (status, message) = match self {
            Self::Cap => ("503 Service Unavailable", "the relay is at its connection capacity"),
            Self::PerIp => ("429 Too Many Requests", "too many connections from this address"),
            Self::Handshakes => ("429 Too Many Requests", "too many unfinished requests from this address"),
        };
        json_reply(status, message)
    }
}

/// A whole HTTP/1.1 response with a JSON error body, closing the connection.
pub fn json_reply(status: &str, message: &str) -> String {
    let body = serde_json::json!({ "error": message }).to_string();
    format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}", body.len())
}

/// What an accepted socket may do.
pub enum Admission {
    /// Be served as usual.
    Client(Slot),
    /// Ask for `/healthz`, `/readyz` or `/metrics` only: the relay is at its socket cap.
    HealthOnly(Slot),
    Refused(Refused),
}

#[derive(Default)]
struct PerIp {
    open: usize,
    handshaking: usize,
}

/// The door: counts and limits shared by every listener of the relay.
pub struct Gate {
    max_sockets: usize,
    health_sockets: usize,
    per_ip_max: usize,
    handshakes_max: usize,
    /// Deadline from accept to a whole request head.
    pub head_timeout: Duration,
    /// Deadline for an HTTP request from head to response.
    pub request_timeout: Duration,
    auth_failure_rate: u32,
    trusted: Vec<IpNet>,
    /// Trusted peers send a PROXY protocol header first (see `crate::proxied`).
    pub proxy_protocol: bool,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
    auth_failures: Mutex<HashMap<IpAddr, TokenBucket>>,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// `max_sockets` is the cap already resolved (see [`socket_cap`]).
    pub fn new(config: &EdgeConfig, trusted_proxies: &[String], max_sockets: usize, metrics: Arc<Metrics>) -> Self {
        metrics.edge_socket_cap.set(i64::try_from(max_sockets).unwrap_or(i64::MAX));
        Self {
            max_sockets,
            health_sockets: config.health_sockets,
            per_ip_max: config.max_sockets_per_ip,
            handshakes_max: config.max_handshakes_per_ip,
            head_timeout: Duration::from_millis(config.head_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            auth_failure_rate: config.auth_failures_per_second_per_ip,
            trusted: trusted_proxies.iter().filter_map(|p| parse_net(p).ok()).collect(),
            proxy_protocol: config.proxy_protocol,
            open: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            auth_failures: Mutex::default(),
            metrics,
        }
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&peer))
    }

    /// Decides what a socket just accepted from `peer` may do. Per-address limits apply to
    /// the peer unless it is a trusted proxy (its clients are counted once their address is
    /// known, with [`Slot::rebind`]).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let n = self.open.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_sockets.saturating_add(self.health_sockets) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return self.refuse(Refused::Cap);
        }
        let mut slot = Slot { gate: self.clone(), ip: None, handshaking: AtomicBool::new(false) };
        // Counted with the slot: its drop takes both back, a refusal's included.
        self.metrics.edge_sockets.inc();
        if n >= self.max_sockets {
            return Admission::HealthOnly(slot);
        }
        if !self.is_trusted(peer) {
            if let Err(r) = self.count(&mut slot, peer) {
                drop(slot);
                return self.refuse(r);
            }
        }
        Admission::Client(slot)
    }

    fn refuse(&self, r: Refused) -> Admission {
        self.metrics.edge_refused(r.label());
        Admission::Refused(r)
    }

    /// Counts the slot against `ip`'s limits.
    fn count(&self, slot: &mut Slot, ip: IpAddr) -> Result<(), Refused> {
        let mut map = self.per_ip.lock();
        let e = map.entry(ip).or_default();
        if self.per_ip_max > 0 && e.open >= self.per_ip_max {
            return Err(Refused::PerIp);
        }
        if self.handshakes_max > 0 && e.handshaking >= self.handshakes_max {
            return Err(Refused::Handshakes);
        }
        e.open += 1;
        e.handshaking += 1;
        slot.ip = Some(ip);
        slot.handshaking.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, ip: IpAddr, handshaking: bool) {
        let mut map = self.per_ip.lock();
        if let Some(e) = map.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
            if handshaking {
                e.handshaking = e.handshaking.saturating_sub(1);
            }
            if e.open == 0 {
                map.remove(&ip);
            }
        }
    }

    fn handshake_done(&self, ip: IpAddr) {
        if let Some(e) = self.per_ip.lock().get_mut(&ip) {
            e.handshaking = e.handshaking.saturating_sub(1);
        }
    }

    /// The client's address: the peer's, or for a trusted proxy the nearest address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let Some(list) = forwarded_for else { return peer };
        for hop in list.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip) => continue,
                Ok(ip) => return ip,
                Err(_) => return peer,
            }
        }
        peer
    }

    /// Whether `ip` may try to authenticate now (it has not failed too often lately).
    pub fn may_authenticate(&self, ip: IpAddr, now: Instant) -> bool {
        if self.auth_failure_rate == 0 {
            return true;
        }
        self.auth_failures.lock().get(&ip).is_none_or(|b| b.peek(now))
    }

    /// Counts a failed authentication from `ip`.
    pub fn failed_authentication(&self, ip: IpAddr, now: Instant) {
        if self.auth_failure_rate == 0 {
            return;
        }
        let mut map = self.auth_failures.lock();
        if map.len() >= MAX_TRACKED_FAILURES {
            map.retain(|_, b| !b.full_at(now));
        }
        let rate = self.auth_failure_rate;
        map.entry(ip).or_insert_with(|| TokenBucket::new(rate, rate.saturating_mul(10))).take(now);
    }

    /// Forgets addresses whose failures are forgiven (called periodically).
    pub fn sweep(&self, now: Instant) {
        self.auth_failures.lock().retain(|_, b| !b.full_at(now));
    }
}

/// One accepted socket's place at the door; given back on drop.
pub struct Slot {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
    handshaking: AtomicBool,
}

impl Slot {
    /// The socket has sent a whole request head: it no longer counts as a handshake.
    pub fn handshake_done(&self) {
        if let (Some(ip), true) = (self.ip, self.handshaking.swap(false, Ordering::Relaxed)) {
            self.gate.handshake_done(ip);
        }
    }

    /// Behind a trusted proxy: counts the socket against the real client's address.
    pub fn rebind(&mut self, client: IpAddr) -> Result<(), Refused> {
        if self.ip.is_some() {
            return Ok(());
        }
        let gate = self.gate.clone();
        gate.count(self, client).inspect_err(|r| gate.metrics.edge_refused(r.label()))?;
        self.handshake_done();
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        self.gate.metrics.edge_sockets.dec();
        if let Some(ip) = self.ip {
            self.gate.release(ip, *self.handshaking.get_mut());
        }
    }
}

/// The most sockets the process's descriptor limit allows, after raising its soft limit to
/// the hard one, less `reserved` for the relay's own files.
pub fn socket_cap(configured: usize, reserved: usize) -> usize {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    let limit = if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() { hard } else { soft };
    let available = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(reserved).max(1);
    match configured {
        0 => available,
        n => n.min(available),
    }
}

/// Runs a connection's task, counting a panic (the panic hook has logged it) instead of
/// letting it pass silently. Cleanup does not depend on this: every registration a task
/// holds is undone by a drop guard as it unwinds.
///
/// Not an `async fn`: one would keep room for `task` as its argument and again as the future
/// it awaits, doubling every idle connection's task.
pub fn guarded<F: Future<Output = ()>>(task: F, metrics: Arc<Metrics>) -> impl Future<Output = ()> {
    AssertUnwindSafe(task).catch_unwind().map(move |ended| {
        if let Err(payload) = ended {
            metrics.connection_panics.inc();
            crate::insight::recorder::record_panic(&metrics.insight.recorder, payload.as_ref());
        }
    })
}

/// Logs panics through `tracing` (once, with where it happened) instead of on stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(%message, %location, %thread, "panic: the task that hit it ended and its connection was cleaned up");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_ip: usize, handshakes: usize, trusted: &[&str]) -> Arc<Gate> {
        let config = EdgeConfig { health_sockets: 2, max_sockets_per_ip: per_ip, max_handshakes_per_ip: handshakes, ..EdgeConfig::default() };
        let trusted: Vec<String> = trusted.iter().map(|s| (*s).to_owned()).collect();
        Arc::new(Gate::new(&config, &trusted, max, Arc::new(Metrics::default())))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cap_then_health_sockets_then_refusal_and_slots_come_back() {
        let g = gate(3, 0, 0, &[]);
        let clients: Vec<_> = (0..3).map(|_| g.admit(ip("10.0.0.1"))).collect();
        assert!(clients.iter().all(|a| matches!(a, Admission::Client(_))));
        let health: Vec<_> = (0..2).map(|_| g.admit(ip("10.0.0.2"))).collect();
        assert!(health.iter().all(|a| matches!(a, Admission::HealthOnly(_))));
        assert!(matches!(g.admit(ip("10.0.0.3")), Admission::Refused(Refused::Cap)));
        assert_eq!(g.open(), 5);
        drop(clients);
        drop(health);
        assert_eq!(g.open(), 0);
        assert!(matches!(g.admit(ip("10.0.0.3")), Admission::Client(_)));
    }

    #[test]
    fn per_ip_and_handshake_limits() {
        let g = gate(100, 3, 2, &[]);
        let a = g.admit(ip("10.0.0.1"));
        let b = g.admit(ip("10.0.0.1"));
        assert!(matches!(g.admit(ip("10.0.0.1")), Admission::Refused(Refused::Handshakes)));
        assert!(matches!(g.admit(ip("10.0.0.2")), Admission::Client(_)), "other addresses are not affected");
        if let Admission::Client(s) = &a {
            s.handshake_done();
            s.handshake_done();
        }
        let c = g.admit(ip("10.0.0.1"));
        assert!(matches!(c, Admission::Client(_)));
        if let Admission::Client(s) = &b {
            s.handshake_done();
        }
        assert!(matches!(g.admit(ip("10.0.0.1")), Admission::Refused(Refused::PerIp)));
        drop((a, b, c));
        assert!(g.per_ip.lock().is_empty(), "no entry outlives its sockets");
        assert_eq!(g.metrics.edge_sockets.get(), 0, "the gauge counts open sockets, refusals never");
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let g = gate(100, 1, 0, &["10.1.0.0/16", "192.168.1.1"]);
        let xff = Some("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(g.client_ip(ip("10.1.0.5"), xff), ip("198.51.100.7"));
        assert_eq!(g.client_ip(ip("192.168.1.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(g.client_ip(ip("198.51.100.1"), xff), ip("198.51.100.1"), "an untrusted peer's header is ignored");
        assert_eq!(g.client_ip(ip("10.1.0.5"), Some("garbage")), ip("10.1.0.5"));
        // A trusted proxy is not limited per address; its clients are, once known.
        let Admission::Client(mut a) = g.admit(ip("10.1.0.5")) else { panic!() };
        let Admission::Client(mut b) = g.admit(ip("10.1.0.5")) else { panic!() };
        assert!(a.rebind(ip("203.0.113.9")).is_ok());
        assert_eq!(b.rebind(ip("203.0.113.9")), Err(Refused::PerIp));
        assert!(parse_net("nonsense").is_err());
    }

    #[test]
    fn failed_authentications_are_limited_per_address() {
        let g = gate(100, 0, 0, &[]);
        let now = Instant::now();
        for _ in 0..50 {
            g.failed_authentication(ip("10.0.0.1"), now);
        }
        assert!(!g.may_authenticate(ip("10.0.0.1"), now));
        assert!(g.may_authenticate(ip("10.0.0.2"), now));
        assert!(g.may_authenticate(ip("10.0.0.1"), now + Duration::from_secs(1)), "forgiven at the configured rate");
    }
}
