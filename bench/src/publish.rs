//! Publishing: through the signed HTTP API or as client events, at a steady rate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use sonde_protocol::sign;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::cli::ChannelLoad;
use crate::pusher::{PusherConn, Target};
use crate::recorder::{new_histogram, now_ns, Latency};
use crate::report::Section;
use crate::scan::{SENT_AT, SEQUENCE};

/// How a scenario publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Via {
    /// `POST /apps/{id}/events`, signed with the app secret.
    Http,
    /// `client-*` events from a websocket subscribed to a private channel.
    Client,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Client => "client events",
        })
    }
}

/// Spreads `rate` publishes a second evenly: every millisecond tick says how many are due.
pub struct Pacer {
    rate: f64,
    started: Instant,
    sent: u64,
    ticker: tokio::time::Interval,
}

impl Pacer {
    pub fn new(rate: f64) -> Self {
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Self { rate, started: Instant::now(), sent: 0, ticker }
    }

    /// Waits for the next tick and returns how many publishes are due now.
    pub async fn due(&mut self) -> u64 {
        self.ticker.tick().await;
        let target = due_by(self.rate, self.started.elapsed());
        let n = target.saturating_sub(self.sent);
        self.sent = target.max(self.sent);
        n
    }
}

fn due_by(rate: f64, elapsed: Duration) -> u64 {
    (rate * elapsed.as_secs_f64()) as u64 + 1
}

/// A bench payload: the markers first (so receivers find them at once), then padding up to
/// about `size` bytes. It is the JSON text of an object.
pub fn bench_data(seq: u64, size: usize, out: &mut String) {
    out.clear();
    let _ = write!(out, "{{\"{SENT_AT}\":{},\"{SEQUENCE}\":{seq},\"p\":\"", now_ns());
    let pad = size.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
}

/// A client of the signed HTTP API.
#[derive(Clone)]
pub struct HttpPublisher {
    client: reqwest::Client,
    target: Arc<Target>,
    url: String,
    path: String,
}

impl HttpPublisher {
    pub fn new(target: &Target, max_idle: usize) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(max_idle).tcp_nodelay(true).timeout(Duration::from_secs(10));
        if let Some(pem) = target.tls.as_ref().and_then(|t| t.ca_pem.as_ref()) {
            // The same trust as the websockets: the private CA only.
            builder = builder.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build()?;
        let path = format!("/apps/{}/events", target.app_id);
        Ok(Self { client, url: format!("{}{path}", target.base_url()), path, target: Arc::new(target.clone()) })
    }

    /// Publishes `data` (JSON text, sent as a string as Pusher's SDKs do) to one channel.
    pub async fn publish(&self, channel: &str, event: &str, data: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "name": event, "channel": channel, "data": data }).to_string();
        let ts = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let query = sign::sign_request("POST", &self.path, &self.target.key, &self.target.secret, ts, body.as_bytes(), &[]);
        let resp =
            self.client.post(format!("{}?{query}", self.url)).header("content-type", "application/json").body(body).send().await.context("HTTP publish")?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("HTTP publish answered {status}: {text}");
        }
        // Read the body so the connection returns to the pool.
        resp.bytes().await?;
        Ok(())
    }
}

/// A websocket that publishes client events on the private channel it subscribed to.
/// Shared by tasks; the lock is held for one frame write.
#[derive(Clone)]
pub struct ClientPublisher {
    conn: Arc<Mutex<PusherConn>>,
}

impl ClientPublisher {
    pub async fn open(target: &Target, n: usize, channel: &str) -> anyhow::Result<Self> {
        let mut conn = PusherConn::connect(target, n).await?;
        conn.subscribe_and_wait(target, channel).await?;
        Ok(Self::from_conn(conn))
    }

    /// A connection already subscribed to the channels it will publish on.
    pub fn from_conn(conn: PusherConn) -> Self {
        Self { conn: Arc::new(Mutex::new(conn)) }
    }

    pub async fn publish(&self, channel: &str, event: &str, data: &str, frame: &mut String) -> anyhow::Result<()> {
        client_event_frame(channel, event, data, frame);
        self.conn.lock().await.ws.send_text(frame.as_bytes()).await?;
        Ok(())
    }
}

/// `{"event":…,"channel":…,"data":{…}}`, with `data` the object itself, as pusher-js sends it.
/// Channel and event names from the bench need no escaping.
pub fn client_event_frame(channel: &str, event: &str, data: &str, out: &mut String) {
    out.clear();
    let _ = write!(out, "{{\"event\":\"{event}\",\"channel\":\"{channel}\",\"data\":{data}}}");
}

/// Counts what publishing achieved, and how long each publish call took (for HTTP: the
/// request until its answer; for client events: the frame write).
pub struct Outcome {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    calls: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self { ok: AtomicU64::new(0), failed: AtomicU64::new(0), first_error: Default::default(), calls: std::sync::Mutex::new(new_histogram()) }
    }
}

impl Outcome {
    fn done(&self, r: anyhow::Result<()>, started: Instant) {
        let ns = started.elapsed().as_nanos().max(1) as u64;
        self.calls.lock().expect("outcome lock").saturating_record(ns);
        match r {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.first_error.lock().expect("outcome lock").get_or_insert_with(|| format!("{e:#}"));
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("outcome lock").clone()
    }

    pub fn call_latency(&self) -> Latency {
        Latency::of(&self.calls.lock().expect("outcome lock"))
    }

    /// Publish call rows, e.g. "publish call p99".
    pub fn rows(&self, section: &mut Section) {
        let l = self.call_latency();
        section.row("publish call p50", l.p50_ms, "ms");
        section.row("publish call p99", l.p99_ms, "ms");
        section.row("publish call max", l.max_ms, "ms");
    }
}

/// Either kind of publisher, so scenarios are written once.
#[derive(Clone)]
pub enum Publisher {
    /// HTTP publishes run as tasks, at most `inflight` at a time: a slow answer must not
    /// hold back the publishing rate.
    Http {
        http: HttpPublisher,
        gate: Arc<Semaphore>,
        inflight: u32,
    },
    Client(ClientPublisher),
}

impl Publisher {
    pub fn http(target: &Target, inflight: usize) -> anyhow::Result<Self> {
        let inflight = inflight.clamp(1, 10_000);
        Ok(Self::Http { http: HttpPublisher::new(target, inflight)?, gate: Arc::new(Semaphore::new(inflight)), inflight: inflight as u32 })
    }

    /// The event name each kind may use.
    pub fn event(&self, name: &str) -> String {
        match self {
            Self::Http { .. } => name.to_owned(),
            Self::Client(_) => format!("client-{name}"),
        }
    }

    pub async fn send(&self, channel: &Arc<str>, event: &Arc<str>, data: String, outcome: &Arc<Outcome>) {
        match self {
            Self::Http { http, gate, .. } => {
                let permit = gate.clone().acquire_owned().await.expect("semaphore never closes");
                let (http, channel, event, outcome) = (http.clone(), channel.clone(), event.clone(), outcome.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    outcome.done(http.publish(&channel, &event, &data).await, started);
                    drop(permit);
                });
            }
            Self::Client(c) => {
                let mut frame = String::with_capacity(data.len() + 64);
                let started = Instant::now();
                outcome.done(c.publish(channel, event, &data, &mut frame).await, started);
            }
        }
    }

    /// A few publishes before measuring, so that connection setup (HTTP keep-alive pool,
    /// server-side first-use paths) is not counted. Sequence 0 is never recorded.
    pub async fn warm_up(&self, channel: &Arc<str>, event: &Arc<str>) {
        let outcome = Arc::new(Outcome::default());
        let n = match self {
            Self::Http { inflight, .. } => (*inflight).min(16),
            Self::Client(_) => 1,
        };
        for _ in 0..n {
            let mut data = String::new();
            bench_data(0, 16, &mut data);
            self.send(channel, event, data, &outcome).await;
        }
        self.settle().await;
        if let Some(e) = outcome.first_error() {
            eprintln!("  warm-up publish failed: {e}");
        }
    }

    /// Waits for HTTP publishes still in flight.
    pub async fn settle(&self) {
        if let Self::Http { gate, inflight, .. } = self {
            let _all = gate.acquire_many(*inflight).await.expect("semaphore never closes");
        }
    }

    /// Publishes `load.payload`-byte messages at `rate` for `load.duration` seconds (numbered
    /// on from `seq`), then waits for those in flight; returns how long publishing took.
    pub async fn paced(&self, (channel, event): (&Arc<str>, &Arc<str>), rate: f64, load: &ChannelLoad, seq: &mut u64, outcome: &Arc<Outcome>) -> Duration {
        let started = Instant::now();
        let mut pacer = Pacer::new(rate);
        while started.elapsed() < Duration::from_secs(load.duration) {
            for _ in 0..pacer.due().await {
                *seq += 1;
                let mut data = String::with_capacity(load.payload + 64);
                bench_data(*seq, load.payload, &mut data);
                self.send(channel, event, data, outcome).await;
            }
        }
        self.settle().await;
        started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{classify, Kind};

    #[test]
    fn payload_round_trips_through_a_server_frame() {
        let mut data = String::new();
        bench_data(7, 200, &mut data);
        assert!((198..=202).contains(&data.len()), "{}", data.len());
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["_bs"], 7);
        // As the server sends it: data as a JSON string.
        let frame = format!(r#"{{"event":"bench","channel":"c","data":{}}}"#, serde_json::to_string(&data).unwrap());
        let Kind::Payload { seq, sent_at_ns } = classify(frame.as_bytes()) else { panic!("{frame}") };
        assert_eq!(seq, 7);
        assert!(sent_at_ns > 1_600_000_000_000_000_000);
        // As a client sends it.
        let mut f = String::new();
        client_event_frame("private-a", "client-bench", &data, &mut f);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["data"]["_bs"], 7);
    }

    #[test]
    fn pacing_counts() {
        assert_eq!(due_by(100.0, Duration::ZERO), 1);
        assert_eq!(due_by(100.0, Duration::from_millis(995)), 100);
        assert_eq!(due_by(100.0, Duration::from_secs(10)), 1001);
        assert_eq!(due_by(0.5, Duration::from_secs(3)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_keeps_the_rate() {
        let mut p = Pacer::new(2000.0);
        let mut sent = 0;
        while p.started.elapsed() < Duration::from_secs(1) {
            sent += p.due().await;
        }
        assert!((1990..=2010).contains(&sent), "{sent}");
    }
}
