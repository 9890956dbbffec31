//! One simulated agent: connects as `sonde-agent` does (token in the URL, its host channel
//! subscribed without `auth`), sends a snapshot after subscribing and once a minute outside
//! sessions, answers a session with the backfill and a sample a second, pings when the relay
//! is silent, and reconnects with the agent's backoff (1 s doubling to 60 s, each wait drawn
//! between half and all of the step; within a random 0-1 s after a 4200-4299 close of a
//! connection that lasted 10 s).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use sonde_protocol::frame::Incoming;
use sonde_protocol::sonde::{SessionDirective, EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SESSION, EVENT_SNAPSHOT};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use super::host::{client_event, Host};
use super::session::{Pacer, Session, Step};
use super::stats::Stats;
use crate::pusher::Target;
use crate::ws::{Message, WsConn};

const STEP: Duration = Duration::from_secs(10);
const PONG_WAIT: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// How a connection ended.
enum Ended {
    Stop,
    /// Closed by the relay with this code.
    Closed(u16),
    /// Refused its subscription: only a configuration change helps.
    Rejected,
    Lost,
}

/// What arrived from the relay, owned so the socket can be written next.
enum Heard {
    Ping,
    Directive(SessionDirective),
    Closed(u16),
    Other,
}

pub struct SimAgent {
    pub host: Host,
    pub n: usize,
    channel: String,
    path: String,
    /// Unix ms of the agent's second 0: as if it had been sampling for `uptime` already.
    epoch_ms: u64,
    stats: Arc<Stats>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl SimAgent {
    pub fn new(target: &Target, host: Host, n: usize, uptime: Duration, stats: Arc<Stats>) -> Self {
        let token = super::token::agent(&target.app_id, &target.secret, &host.name);
        let channel = format!("{}{}", sonde_protocol::sonde::HOST_CHANNEL_PREFIX, host.name);
        let path = format!("/app/{}?protocol=7&client=sonde-agent&version={}&token={token}", target.key, env!("CARGO_PKG_VERSION"));
        let epoch_ms = (now_ms() / 1000).saturating_sub(uptime.as_secs()) * 1000;
        Self { host, n, channel, path, epoch_ms, stats }
    }

    fn seq_now(&self) -> u64 {
        now_ms().saturating_sub(self.epoch_ms) / 1000
    }

    /// Runs until `stop` turns true, reconnecting as the agent does. With several relays
    /// (a cluster behind a balancer), a failed attempt moves on to another (`next_target`).
    pub async fn run(self, targets: Vec<Target>, mut stop: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        let mut at = self.n % targets.len().max(1);
        // Failed attempts in a row: the first one after a connection picks the next relay.
        let mut hops = 0usize;
        // The minute timer runs from the agent's start, not from each connection.
        let phase = Duration::from_millis(rand::thread_rng().gen_range(0..60_000));
        let mut minute = tokio::time::interval_at(Instant::now() + phase, Duration::from_secs(60));
        minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stop.borrow() {
            let started = Instant::now();
            self.stats.attempt();
            let (ended, subscribed) = self.connection(&targets[at], &mut stop, &mut minute).await;
            if subscribed {
                hops = 0;
            } else {
                at = next_target(self.n, at, hops, targets.len());
                hops = hops.saturating_add(1);
            }
            let stable = subscribed && started.elapsed() >= STABLE;
            if subscribed {
                self.stats.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            if stable {
                attempt = 0;
            }
            let delay = match ended {
                Ended::Stop => return,
                Ended::Closed(4200..=4299) if stable => rand::thread_rng().gen_range(Duration::ZERO..=Duration::from_secs(1)),
                Ended::Closed(4000..=4099) | Ended::Rejected => Duration::from_secs(60),
                Ended::Closed(_) | Ended::Lost => backoff(&mut attempt),
            };
            tokio::select! {
                () = sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One connection, to its end; whether it reached `subscription_succeeded`.
    async fn connection(&self, target: &Target, stop: &mut watch::Receiver<bool>, minute: &mut tokio::time::Interval) -> (Ended, bool) {
        let mut ws = match self.handshake(target).await {
            Ok(ws) => ws,
            Err((ended, why)) => {
                self.stats.failed(&why);
                return (ended, false);
            }
        };
        self.stats.subscribed();
        let mut live = Live { session: Session::default(), pacer: Pacer::default(), sent_seq: 0 };
        if self.snapshot(&mut ws, &mut live).await.is_err() {
            return (Ended::Lost, true);
        }
        (self.drive(&mut ws, &mut live, stop, minute).await, true)
    }

    async fn handshake(&self, target: &Target) -> Result<WsConn, (Ended, String)> {
        let lost = |why: String| (Ended::Lost, why);
        let mut ws = match timeout(STEP, WsConn::connect(target.endpoint(self.n), &target.server.to_string(), &self.path)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return Err(lost(format!("connect: {e}"))),
            Err(_) => return Err(lost("connect timed out".into())),
        };
        let deadline = Instant::now() + STEP;
        let established = read_event(&mut ws, deadline).await.map_err(lost)?;
        if established.event != "pusher:connection_established" {
            return Err(lost(format!("expected connection_established, got {}", established.event)));
        }
        let sub = format!("{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":{}}}}}", super::host::json_str(&self.channel));
        ws.send_text(sub.as_bytes()).await.map_err(|e| lost(e.to_string()))?;
        let deadline = Instant::now() + STEP;
        loop {
            let f = read_event(&mut ws, deadline).await.map_err(lost)?;
            match f.event.as_str() {
                "pusher_internal:subscription_succeeded" => return Ok(ws),
                "pusher:subscription_error" => return Err((Ended::Rejected, format!("subscription refused: {:?}", f.data))),
                _ => {}
            }
        }
    }

    async fn drive(&self, ws: &mut WsConn, live: &mut Live, stop: &mut watch::Receiver<bool>, minute: &mut tokio::time::Interval) -> Ended {
        let mut second = tokio::time::interval_at(Instant::now() + Duration::from_millis(1000 - now_ms() % 1000), Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut heard = Instant::now();
        let mut pinged: Option<Instant> = None;
        let activity = Duration::from_secs(120);
        loop {
            let quiet_until = pinged.map_or(heard + activity, |p| p + PONG_WAIT);
            let msg = tokio::select! {
                m = ws.read() => match m {
                    Ok(Message::Text(t)) => classify(t),
                    Ok(Message::Close) => Heard::Closed(1000),
                    Err(_) => return Ended::Lost,
                },
                _ = second.tick() => {
                    if self.tick(ws, live).await.is_err() { return Ended::Lost; }
                    continue;
                }
                _ = minute.tick() => {
                    if live.session.id().is_none() && self.snapshot(ws, live).await.is_err() { return Ended::Lost; }
                    continue;
                }
                () = tokio::time::sleep_until(quiet_until) => {
                    if pinged.is_some() { return Ended::Lost; }
                    pinged = Some(Instant::now());
                    if ws.send_text(br#"{"event":"pusher:ping","data":{}}"#).await.is_err() { return Ended::Lost; }
                    continue;
                }
                // The fleet stops with the process: its sockets close with it.
                _ = stop.changed() => return Ended::Stop,
            };
            heard = Instant::now();
            pinged = None;
            let sent = match msg {
                Heard::Ping => ws.send_text(br#"{"event":"pusher:pong","data":{}}"#).await.map_err(|_| ()),
                Heard::Directive(d) => self.directive(ws, live, &d).await,
                Heard::Closed(code) => return Ended::Closed(code),
                Heard::Other => Ok(()),
            };
            if sent.is_err() {
                return Ended::Lost;
            }
        }
    }

    async fn directive(&self, ws: &mut WsConn, live: &mut Live, d: &SessionDirective) -> Result<(), ()> {
        let newest = self.seq_now();
        match live.session.on_directive(d, now_ms()) {
            Step::Start => {
                self.stats.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for part in self.host.backfill(&d.id.0, self.epoch_ms, newest, newest, None) {
                    self.send(ws, live, EVENT_BACKFILL, &part).await?;
                }
                live.sent_seq = newest;
                let sample = self.host.sample_json(self.epoch_ms, newest);
                self.send(ws, live, EVENT_SAMPLE, &sample).await
            }
            Step::Backfill { for_socket } => {
                for part in self.host.backfill(&d.id.0, self.epoch_ms, live.sent_seq + 1, live.sent_seq, for_socket) {
                    self.send(ws, live, EVENT_BACKFILL, &part).await?;
                }
                Ok(())
            }
            Step::Nothing => Ok(()),
        }
    }

    async fn tick(&self, ws: &mut WsConn, live: &mut Live) -> Result<(), ()> {
        let seq = self.seq_now();
        if !live.session.streaming(now_ms()) || seq <= live.sent_seq {
            return Ok(());
        }
        live.sent_seq = seq;
        let sample = self.host.sample_json(self.epoch_ms, seq);
        self.send(ws, live, EVENT_SAMPLE, &sample).await
    }

    async fn snapshot(&self, ws: &mut WsConn, live: &mut Live) -> Result<(), ()> {
        let snap = self.host.snapshot_json(self.seq_now() / 60);
        self.send(ws, live, EVENT_SNAPSHOT, &snap).await
    }

    async fn send(&self, ws: &mut WsConn, live: &mut Live, event: &'static str, data: &str) -> Result<(), ()> {
        let wait = live.pacer.take();
        if !wait.is_zero() {
            sleep(wait).await;
        }
        let frame = client_event(event, &self.channel, data);
        match event {
            EVENT_SNAPSHOT => self.stats.snapshots.add(frame.len()),
            EVENT_SAMPLE => self.stats.samples.add(frame.len()),
            _ => self.stats.backfill.add(frame.len()),
        }
        ws.send_text(frame.as_bytes()).await.map_err(|_| ())
    }
}

struct Live {
    session: Session,
    pacer: Pacer,
    sent_seq: u64,
}

/// The agent's backoff: 1 s doubling to 60 s, a wait between half and all of the step.
/// The relay an agent tries after a failed attempt on relay `at` of `k`. The first failure
/// after a connection moves to one of the other k-1 relays picked by the agent's number, so
/// the agents of a dead node spread evenly over the survivors (as a balancer spreads them);
/// further failures in a row go round the relays one by one.
fn next_target(n: usize, at: usize, hops: usize, k: usize) -> usize {
    if k <= 1 {
        return 0;
    }
    let skip = if hops == 0 { 1 + (n / k) % (k - 1) } else { 1 };
    (at + skip) % k
}

fn backoff(attempt: &mut u32) -> Duration {
    let step = Duration::from_secs(1).saturating_mul(1 << (*attempt).min(6)).min(Duration::from_secs(60));
    *attempt = attempt.saturating_add(1);
    let half = step / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

fn classify(text: &[u8]) -> Heard {
    let Ok(f) = std::str::from_utf8(text).map_err(|_| ()).and_then(|t| Incoming::parse(t).map_err(|_| ())) else {
        return Heard::Other;
    };
    match f.event.as_str() {
        "pusher:ping" => Heard::Ping,
        EVENT_SESSION => serde_json::from_value(f.data_value()).map_or(Heard::Other, Heard::Directive),
        _ => Heard::Other,
    }
}

async fn read_event(ws: &mut WsConn, deadline: Instant) -> Result<Incoming, String> {
    match tokio::time::timeout_at(deadline, ws.read()).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(Message::Close)) => Err("closed".into()),
        Ok(Ok(Message::Text(t))) => Incoming::parse(&String::from_utf8_lossy(t)).map_err(|e| format!("not a Pusher frame: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_nodes_agents_spread_over_the_others() {
        // 5 relays, relay 4 dies: its agents (n = 4, 9, 14, …) land evenly on relays 0-3.
        let mut landed = [0usize; 5];
        for n in (4..40_000).step_by(5) {
            landed[next_target(n, n % 5, 0, 5)] += 1;
        }
        assert_eq!(landed, [2_000, 2_000, 2_000, 2_000, 0]);
        // Failing on, an agent tries every relay in turn.
        let mut at = 4;
        let tried: Vec<usize> = (0..5)
            .map(|h| {
                at = next_target(9, at, h, 5);
                at
            })
            .collect();
        assert_eq!(tried, [1, 2, 3, 4, 0]);
        assert_eq!((next_target(7, 0, 0, 1), next_target(7, 1, 0, 2), next_target(7, 1, 3, 2)), (0, 0, 0));
    }

    #[test]
    fn backoff_matches_the_agents() {
        let mut a = 0;
        let first = backoff(&mut a);
        assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first));
        let second = backoff(&mut a);
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second));
        for _ in 0..10 {
            let d = backoff(&mut a);
            assert!((Duration::from_secs(30)..=Duration::from_secs(60)).contains(&d) || a < 7, "{d:?}");
        }
    }

    #[test]
    fn directives_and_pings_are_recognised() {
        assert!(matches!(classify(br#"{"event":"pusher:ping","data":{}}"#), Heard::Ping));
        let d = br#"{"event":"sonde:session","channel":"c","data":"{\"state\":\"started\",\"id\":\"s1\",\"interval_ms\":1000,\"lease_until\":5}"}"#;
        assert!(matches!(classify(d), Heard::Directive(x) if x.id.0 == "s1"));
        assert!(matches!(classify(b"\xff garbage"), Heard::Other));
    }
}
