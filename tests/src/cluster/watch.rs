//! A viewer of a host that records what it sees (each sample's arrival, backfills, directives,
//! its subscriptions), to assert on a session across node failures. When its connection ends
//! it subscribes again through the next node, as a load balancer would send it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sonde_protocol::frame::Incoming;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::tokens::{hs256, viewer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// The subscription succeeded.
    Subscribed,
    /// A live sample.
    Sample { seq: u64 },
    /// One part of a backfill.
    Backfill { session: String, part: u64 },
    /// A `sonde:session` directive.
    Directive { state: String, id: String },
    /// The connection ended.
    Ended,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    /// Which subscription (0, 1, … as the viewer moves from node to node).
    pub sub: usize,
    pub what: What,
}

type Log = Arc<Mutex<Vec<Seen>>>;

pub struct Watch {
    log: Log,
    task: JoinHandle<()>,
}

/// Longest wait for something a test expects a viewer to see.
const PATIENCE: Duration = Duration::from_secs(15);

impl Watch {
    /// Watches `host` (app 1) through the first of `urls`; returns once subscribed.
    pub async fn start(urls: Vec<String>, host: &str) -> Self {
        let log: Log = Arc::default();
        let task = tokio::spawn(run(urls, format!("private-sonde-host.{host}"), log.clone()));
        let w = Self { log, task };
        w.until("the subscription", |l| l.iter().any(|s| s.what == What::Subscribed)).await;
        w
    }

    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    /// Waits until `check` holds for what was seen.
    pub async fn until(&self, what: &str, check: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check(&self.log.lock().expect("log")) {
            assert!(Instant::now() < deadline, "the viewer never saw {what}: {:?}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `n` more live samples.
    pub async fn samples(&self, n: usize) {
        let count = |l: &[Seen]| l.iter().filter(|s| matches!(s.what, What::Sample { .. })).count();
        let target = count(&self.log()) + n;
        self.until(&format!("{n} more samples"), |l| count(l) >= target).await;
    }

    /// The longest time without a live sample from `from` to `to` (the first and the trailing
    /// stretch included, so a stream that stopped shows as a gap).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self.log().iter().filter(|s| matches!(s.what, What::Sample { .. }) && s.at > from && s.at < to).map(|s| s.at).collect();
        times.insert(0, from);
        times.push(to);
        times.windows(2).map(|w| w[1].duration_since(w[0])).max().unwrap_or_default()
    }

    /// Every session id in the directives and backfills seen.
    pub fn ids(&self) -> BTreeSet<String> {
        self.log()
            .into_iter()
            .filter_map(|s| match s.what {
                What::Directive { id, .. } => Some(id),
                What::Backfill { session, .. } => Some(session),
                What::Subscribed | What::Sample { .. } | What::Ended => None,
            })
            .collect()
    }

    /// Backfills received (first parts), for each subscription so far.
    pub fn backfills(&self) -> Vec<usize> {
        let log = self.log();
        let subs = log.iter().filter(|s| s.what == What::Subscribed).count();
        (0..subs).map(|n| log.iter().filter(|s| s.sub == n && matches!(s.what, What::Backfill { part: 0, .. })).count()).collect()
    }

    /// How many `state` directives were seen.
    pub fn directives(&self, state: &str) -> usize {
        self.log().iter().filter(|s| matches!(&s.what, What::Directive { state: st, .. } if st == state)).count()
    }

    /// When the last directive extending the lease (`renewed` or `started`) arrived.
    pub fn last_renewal(&self) -> Option<Instant> {
        self.log().iter().rev().find(|s| matches!(&s.what, What::Directive { state, .. } if state == "renewed" || state == "started")).map(|s| s.at)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn push(log: &Log, sub: usize, what: What) {
    log.lock().expect("log").push(Seen { at: Instant::now(), sub, what });
}

async fn run(urls: Vec<String>, channel: String, log: Log) {
    let token = hs256(&viewer("1"), "secret");
    let mut sub = 0;
    for url in urls.iter().cycle() {
        if watch_once(url, &channel, &token, sub, &log).await {
            push(&log, sub, What::Ended);
            sub += 1;
        } else {
            // That node is down: try the next one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One connection, until it ends. Returns whether it got subscribed.
async fn watch_once(url: &str, channel: &str, token: &str, sub: usize, log: &Log) -> bool {
    let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url)).await else { return false };
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": token}});
    if ws.send(Message::text(subscribe.to_string())).await.is_err() {
        return false;
    }
    let mut subscribed = false;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(frame) = Incoming::parse(&text) else { continue };
        let data = frame.data_value();
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let what = match frame.event.as_str() {
            "pusher_internal:subscription_succeeded" => {
                subscribed = true;
                What::Subscribed
            }
            "client-sonde-sample" => What::Sample { seq: data["seq"].as_u64().unwrap_or_default() },
            "client-sonde-backfill" => What::Backfill { session: str_of(&data["session"]), part: data["part"].as_u64().unwrap_or_default() },
            "sonde:session" => What::Directive { state: str_of(&data["state"]), id: str_of(&data["id"]) },
            "pusher:ping" => {
                let _ = ws.send(Message::text(json!({"event": "pusher:pong", "data": {}}).to_string())).await;
                continue;
            }
            _ => continue,
        };
        push(log, sub, what);
    }
    subscribed
}
