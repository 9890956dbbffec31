//! Viewers that start sessions: each connects, subscribes to a host channel with a viewer
//! token (the relay starts a session), records subscribe → `started` directive, → first
//! backfill part and → first live sample, watches for a while and leaves (the relay stops
//! the session after its grace).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng;
use sonde_protocol::frame::Incoming;
use sonde_protocol::sonde::{EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SESSION};
use tokio::time::Instant;

use crate::pusher::{PusherConn, Target};
use crate::recorder::new_histogram;
use crate::ws::Message;

/// How long a viewer waits for its first live sample before counting a failure.
const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(15);

pub struct Viewers {
    pub target: Target,
    pub prefix: String,
    pub agents: usize,
    pub first: usize,
    /// Hosts below this are watched by the held sessions: picked only when nothing else is.
    pub avoid: usize,
    token: String,
    /// Hosts being watched now: a new viewer picks another one.
    busy: Mutex<HashSet<usize>>,
    pub directive: Mutex<Histogram<u64>>,
    pub backfill: Mutex<Histogram<u64>>,
    pub sample: Mutex<Histogram<u64>>,
    pub started: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub first_error: crate::sim::stats::FirstError,
}

impl Viewers {
    pub fn new(target: Target, prefix: String, first: usize, agents: usize) -> Self {
        let token = crate::sim::token::viewer(&target.app_id, &target.secret);
        Self {
            target,
            prefix,
            agents,
            first,
            avoid: 0,
            token,
            busy: Mutex::new(HashSet::new()),
            directive: Mutex::new(new_histogram()),
            backfill: Mutex::new(new_histogram()),
            sample: Mutex::new(new_histogram()),
            started: Default::default(),
            failed: Default::default(),
            first_error: Default::default(),
        }
    }

    /// A host nobody watches now (or any host when all are watched).
    fn pick(&self) -> usize {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = rand::thread_rng();
        let from = if self.avoid < self.agents { self.avoid } else { 0 };
        let mut h = rng.gen_range(from..self.agents);
        for _ in 0..16 {
            if !busy.contains(&h) {
                break;
            }
            h = rng.gen_range(from..self.agents);
        }
        busy.insert(h);
        h
    }

    fn release(&self, h: usize) {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&h);
    }

    /// One viewer of a host picked at random (or `host` when given), for `watch`.
    pub async fn watch(self: Arc<Self>, n: usize, host: Option<usize>, watch: Duration) {
        let h = host.unwrap_or_else(|| self.pick());
        self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.view(n, h, watch).await {
            self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.first_error.set(&format!("{e:#}"));
        }
        self.release(h);
    }

    async fn view(&self, n: usize, h: usize, watch: Duration) -> anyhow::Result<()> {
        let channel = format!("{}{}{}", sonde_protocol::sonde::HOST_CHANNEL_PREFIX, self.prefix, self.first + h);
        let subscribe = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": self.token}}).to_string();
        let mut conn = PusherConn::connect(&self.target, n).await?;
        let t0 = Instant::now();
        conn.ws.send_text(subscribe.as_bytes()).await?;
        let (mut directive, mut backfill, mut sample) = (false, false, false);
        let mut deadline = t0 + FIRST_SAMPLE_WAIT;
        loop {
            let msg = match tokio::time::timeout_at(deadline, conn.ws.read()).await {
                Ok(m) => m?,
                Err(_) if sample => break,
                Err(_) => anyhow::bail!("no live sample from {channel} within {FIRST_SAMPLE_WAIT:?}"),
            };
            let Message::Text(text) = msg else { anyhow::bail!("the relay closed the viewer") };
            let event = Incoming::parse(&String::from_utf8_lossy(text)).map(|f| f.event).unwrap_or_default();
            let took = t0.elapsed().as_nanos().max(1) as u64;
            let record = |seen: &mut bool, h: &Mutex<Histogram<u64>>| {
                if !std::mem::replace(seen, true) {
                    h.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(took);
                }
            };
            match event.as_str() {
                EVENT_SESSION => record(&mut directive, &self.directive),
                EVENT_BACKFILL => record(&mut backfill, &self.backfill),
                EVENT_SAMPLE if !sample => {
                    record(&mut sample, &self.sample);
                    deadline = Instant::now() + watch;
                }
                "pusher:subscription_error" => anyhow::bail!("subscription refused: {}", String::from_utf8_lossy(text)),
                _ => {}
            }
        }
        conn.ws.close().await?;
        Ok(())
    }
}
