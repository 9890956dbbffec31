//! A dashboard following the agent inventory (`private-sonde-inventory`, viewer token): what
//! it receives on subscribe (pages, bytes, time until every expected host is listed) and
//! after (frames and bytes of updates), and how many hosts it shows online, reconnecting as
//! a browser would when the relay goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sonde_protocol::frame::Incoming;
use sonde_protocol::sonde::{EVENT_INVENTORY, INVENTORY_CHANNEL};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::pusher::{PusherConn, Target};
use crate::ws::Message;

/// Hosts a dashboard keeps track of at most (the relay's data is not trusted to stay small).
const MAX_HOSTS: usize = 2_000_000;

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub full_frames: u64,
    pub full_bytes: u64,
    pub full_entries: u64,
    /// Subscribe → the full list naming `expected` hosts.
    pub full_after: Option<Duration>,
    pub update_frames: u64,
    pub update_bytes: u64,
    pub update_entries: u64,
    pub online: usize,
    pub listed: usize,
    pub subscribes: u64,
    /// The latest subscribe → every expected host listed online (a reconnected dashboard
    /// is complete again).
    pub all_online_after: Option<Duration>,
}

#[derive(Default)]
pub struct View {
    pub counts: Counts,
    hosts: HashMap<String, bool>,
}

impl View {
    fn apply(&mut self, data: &serde_json::Value, bytes: usize) {
        let full = data.get("full").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let agents = data.get("agents").and_then(serde_json::Value::as_array).map_or(&[][..], Vec::as_slice);
        let c = &mut self.counts;
        if full {
            c.full_frames += 1;
            c.full_bytes += bytes as u64;
            c.full_entries += agents.len() as u64;
        } else {
            c.update_frames += 1;
            c.update_bytes += bytes as u64;
            c.update_entries += agents.len() as u64;
        }
        for a in agents {
            let (Some(host), Some(online)) = (a.get("host").and_then(|h| h.as_str()), a.get("online").and_then(serde_json::Value::as_bool)) else {
                continue;
            };
            if self.hosts.len() < MAX_HOSTS || self.hosts.contains_key(host) {
                self.hosts.insert(host.to_owned(), online);
            }
        }
        self.counts.listed = self.hosts.len();
        self.counts.online = self.hosts.values().filter(|o| **o).count();
    }
}

/// Follows the inventory until `stop`, reconnecting every second when the connection fails.
pub async fn follow(target: Target, n: usize, expected: usize, view: Arc<Mutex<View>>, mut stop: watch::Receiver<bool>) {
    let token = crate::sim::token::viewer(&target.app_id, &target.secret);
    let subscribe = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": INVENTORY_CHANNEL, "auth": token}}).to_string();
    let mut last_error = String::new();
    while !*stop.borrow() {
        tokio::select! {
            r = once(&target, n, expected, &subscribe, &view) => {
                // Told once per kind of failure: a relay that is down refuses every second.
                if let Err(e) = r.map_err(|e| format!("{e:#}")) {
                    if e != last_error {
                        eprintln!("  dashboard {n} on {}: {e}", target.server);
                        last_error = e;
                    }
                }
            }
            _ = stop.changed() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn once(target: &Target, n: usize, expected: usize, subscribe: &str, view: &Mutex<View>) -> anyhow::Result<()> {
    let mut conn = PusherConn::connect(target, n).await?;
    let t0 = Instant::now();
    conn.ws.send_text(subscribe.as_bytes()).await?;
    {
        // What this connection lists starts from nothing, as a reloaded page does.
        let mut v = lock(view);
        v.counts.subscribes += 1;
        v.hosts.clear();
        v.counts.online = 0;
        v.counts.listed = 0;
        v.counts.all_online_after = None;
    }
    loop {
        let Message::Text(text) = conn.ws.read().await? else { anyhow::bail!("closed by the relay") };
        let bytes = text.len();
        let Ok(f) = Incoming::parse(&String::from_utf8_lossy(text)) else { continue };
        match f.event.as_str() {
            EVENT_INVENTORY => {
                let mut v = lock(view);
                v.apply(&f.data_value(), bytes);
                if v.counts.full_after.is_none() && v.counts.full_entries >= expected as u64 {
                    v.counts.full_after = Some(t0.elapsed());
                }
                if v.counts.all_online_after.is_none() && v.counts.online >= expected {
                    v.counts.all_online_after = Some(t0.elapsed());
                }
            }
            "pusher:ping" => conn.ws.send_text(br#"{"event":"pusher:pong","data":{}}"#).await?,
            "pusher:subscription_error" | "pusher:error" => anyhow::bail!("refused: {:?}", f.data),
            _ => {}
        }
    }
}

pub fn lock(view: &Mutex<View>) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_pages_and_updates_are_told_apart() {
        let mut v = View::default();
        v.apply(&serde_json::json!({"full": true, "agents": [{"host": "a", "online": true}, {"host": "b", "online": false}]}), 100);
        v.apply(&serde_json::json!({"full": false, "agents": [{"host": "b", "online": true}, {"nohost": 1}]}), 40);
        v.apply(&serde_json::json!({"full": "yes", "agents": "no"}), 10);
        let c = &v.counts;
        assert_eq!((c.full_frames, c.full_bytes, c.full_entries), (1, 100, 2));
        assert_eq!((c.update_frames, c.update_bytes, c.update_entries), (2, 50, 2));
        assert_eq!((c.listed, c.online), (2, 2));
    }
}
