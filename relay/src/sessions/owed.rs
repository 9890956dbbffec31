//! Backfills owed to viewers. A viewer joining a running session is owed the history, and the
//! node it joined asks the agent for it (a `backfill` directive for that viewer). When the
//! agent is away at that moment (its node died or restarts, and the viewer moved meanwhile)
//! the ask reaches no one. So a viewer stays owed until a backfill reaches it: the agent's
//! answer to it, or a backfill to the whole channel (an agent that starts the session afresh
//! sends one). While it is owed one, live samples flowing again mean the agent is back: the
//! node asks (again, if its last ask is older than `reask`). A viewer gets one backfill per
//! subscription however the agent comes back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_protocol::sonde::{SessionDirective, SessionState};
use sonde_protocol::SocketId;

use super::{Action, Clock, Sessions};

/// Viewers owed a backfill per host; past it the oldest is forgotten.
const MAX_OWED: usize = 64;
/// A viewer still owed a backfill after this long gets none.
const GIVE_UP: Duration = Duration::from_secs(60);

pub(super) struct Owed {
    socket: SocketId,
    since: Instant,
    asked: Option<Instant>,
}

/// What of the agent's reached this node's subscribers of a host channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Sample,
    /// A backfill for the whole channel.
    Backfill,
}

impl Sessions {
    /// Whether any viewer here is owed a backfill (checked on the publish path first).
    pub fn owes(&self) -> bool {
        self.owing.load(Ordering::Relaxed) > 0
    }

    /// How long an ask may go unanswered before the node asks again.
    fn reask(&self) -> Duration {
        Duration::from_millis(self.timing.interval_ms.saturating_mul(2)).max(Duration::from_secs(2))
    }

    pub(super) fn owe(&self, host: &Arc<str>, socket: SocketId, asked: Option<Instant>, now: Instant) {
        let mut owed = self.owed.lock();
        let list = owed.entry(host.clone()).or_default();
        if list.len() >= MAX_OWED {
            list.remove(0);
        }
        list.push(Owed { socket, since: now, asked });
        self.recount(&mut owed);
    }

    /// Drops emptied hosts and keeps the count the publish path checks.
    fn recount(&self, owed: &mut HashMap<Arc<str>, Vec<Owed>>) {
        owed.retain(|_, l| !l.is_empty());
        self.owing.store(owed.values().map(Vec::len).sum(), Ordering::Relaxed);
    }

    /// Forgets viewers owed a backfill for longer than `GIVE_UP` (gone, or never answered),
    /// also of hosts that stream no more.
    pub(super) fn forget_owed(&self, now: Instant) {
        if !self.owes() {
            return;
        }
        let mut owed = self.owed.lock();
        for list in owed.values_mut() {
            list.retain(|o| now.saturating_duration_since(o.since) < GIVE_UP);
        }
        self.recount(&mut owed);
    }

    /// Something of the agent's reached this node's subscribers of `host`: returns the asks
    /// for the viewers still owed a backfill (`alive` tells which are still connected).
    pub fn stream_seen(&self, host: &str, what: Stream, clock: Clock, alive: impl Fn(SocketId) -> bool) -> Vec<Action> {
        let due: Vec<SocketId> = {
            let mut owed = self.owed.lock();
            let Some(list) = owed.get_mut(host) else { return Vec::new() };
            let before = list.len();
            let due = match what {
                Stream::Backfill => {
                    list.clear();
                    Vec::new()
                }
                Stream::Sample => {
                    list.retain(|o| alive(o.socket) && clock.now.saturating_duration_since(o.since) < GIVE_UP);
                    let reask = self.reask();
                    let due = list.iter_mut().filter(|o| o.asked.is_none_or(|at| clock.now.saturating_duration_since(at) >= reask));
                    due.map(|o| {
                        o.asked = Some(clock.now);
                        o.socket
                    })
                    .collect()
                }
            };
            // On every sample of a host with owed viewers: only this host's list changed, so the
            // count moves by its change (a full recount would walk every host's list).
            let gone = before - list.len();
            if list.is_empty() {
                owed.remove(host);
            }
            self.owing.fetch_sub(gone, Ordering::Relaxed);
            due
        };
        if due.is_empty() {
            return Vec::new();
        }
        let role = self.role();
        let hosts = self.hosts.lock();
        let Some((key, st)) = hosts.get_key_value(host) else { return Vec::new() };
        let Some((id, lease_until, term)) = self.running(role, host, st) else { return Vec::new() };
        due.into_iter()
            .map(|viewer| {
                let directive = SessionDirective {
                    state: SessionState::Backfill,
                    id: id.clone(),
                    interval_ms: self.timing.interval_ms,
                    lease_until,
                    for_socket: Some(viewer.to_string()),
                };
                Action::Publish { host: key.clone(), directive, term }
            })
            .collect()
    }

    /// A backfill reached `socket`: it is owed nothing more.
    pub fn backfilled(&self, socket: SocketId) {
        let mut owed = self.owed.lock();
        for list in owed.values_mut() {
            list.retain(|o| o.socket != socket);
        }
        self.recount(&mut owed);
    }
}
