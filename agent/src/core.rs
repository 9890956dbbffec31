//! The agent's heart: applies session directives, sends the backfill and then live samples
//! while a session runs, and the minute snapshot outside sessions. It talks to the relay only
//! through channels, so tests drive it with no socket at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sonde_protocol::sonde::{SessionDirective, EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SNAPSHOT};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::encode::{backfill_parts, sample_data};
use crate::ring::Ring;
use crate::session::{Sessions, Step, StopReason};
use crate::snapshot::SnapshotSource;
use crate::Shutdown;

/// How often a snapshot is sent outside sessions.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);

/// The ring, shared between the sampler (writer) and the core (reader).
pub type SharedRing = Arc<Mutex<Ring>>;

/// What the connection reports to the core.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Subscribed to the host channel: events can flow.
    Subscribed,
    Directive(SessionDirective),
    /// The connection is gone; a new one is being made.
    Down,
}

/// A client event for the connection to send on the host channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub event: &'static str,
    /// The event's data: JSON text.
    pub data: String,
}

pub struct Core {
    pub ring: SharedRing,
    /// The sequence number of the newest tick in the ring.
    pub latest: watch::Receiver<u64>,
    pub out: mpsc::Sender<Outbound>,
    pub clock: Clock,
    /// `None` when usage statistics are disabled: no snapshots at all.
    pub snapshots: Option<SnapshotSource>,
}

struct State {
    sessions: Sessions,
    online: bool,
    /// The newest tick already sent (in a backfill or live).
    sent_seq: u64,
    /// A snapshot is due but the ring has too few ticks for rates yet.
    snapshot_due: bool,
}

/// Ticks needed before a snapshot's figures mean something (rates need two).
const SNAPSHOT_MIN_TICKS: usize = 2;

impl Core {
    pub async fn run(self, mut link: mpsc::Receiver<LinkEvent>, mut shutdown: Shutdown) {
        let mut st = State { sessions: Sessions::default(), online: false, sent_seq: 0, snapshot_due: false };
        let mut latest = self.latest.clone();
        let mut minute = tokio::time::interval_at(tokio::time::Instant::now() + SNAPSHOT_INTERVAL, SNAPSHOT_INTERVAL);
        minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = st.sessions.deadline();
            tokio::select! {
                ev = link.recv() => match ev {
                    Some(ev) => self.on_link(&mut st, ev),
                    None => break,
                },
                changed = latest.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let seq = *latest.borrow_and_update();
                    self.on_tick(&mut st, seq);
                }
                () = self.clock.sleep_until_ms(deadline.unwrap_or(0)), if deadline.is_some() => {
                    let step = st.sessions.on_time(self.clock.now_ms());
                    self.apply(&mut st, step);
                }
                _ = minute.tick() => self.on_minute(&st),
                () = shutdown.wait() => break,
            }
        }
        let step = st.sessions.shutdown();
        self.apply(&mut st, step);
    }

    fn on_link(&self, st: &mut State, ev: LinkEvent) {
        match ev {
            LinkEvent::Subscribed => {
                st.online = true;
                if st.sessions.active().is_none() {
                    st.snapshot_due = true;
                    self.snapshot_if_ready(st);
                }
            }
            LinkEvent::Directive(d) => {
                if let Some(old) = st.sessions.replaced(&d) {
                    self.apply(st, Step::Stop { id: old, reason: StopReason::Replaced });
                }
                let step = st.sessions.on_directive(&d, self.clock.now_ms());
                self.apply(st, step);
            }
            LinkEvent::Down => st.online = false,
        }
    }

    fn apply(&self, st: &mut State, step: Step) {
        match step {
            Step::Start(id) => {
                // The history goes as backfill; the newest tick goes at once as the first live
                // sample, so a viewer does not wait for the next second boundary.
                let (parts, first) = {
                    let ring = lock(&self.ring);
                    st.sent_seq = ring.latest().map_or(0, |t| t.seq);
                    let history = ring.len().saturating_sub(1);
                    (backfill_parts(&id, ring.iter().take(history), None), ring.latest().map(sample_data))
                };
                tracing::info!(session = %id, parts = parts.len(), "session started; sending backfill");
                for data in parts {
                    self.send(EVENT_BACKFILL, data);
                }
                if let Some(data) = first {
                    self.send(EVENT_SAMPLE, data);
                }
            }
            Step::Backfill { id, for_socket } => {
                // Everything already streamed, so the viewer's history meets the live samples.
                let parts = {
                    let ring = lock(&self.ring);
                    backfill_parts(&id, ring.iter().filter(|t| t.seq <= st.sent_seq), for_socket)
                };
                tracing::debug!(session = %id, parts = parts.len(), "history for a viewer that joined");
                for data in parts {
                    self.send(EVENT_BACKFILL, data);
                }
            }
            Step::Extended => tracing::debug!(lease_until = st.sessions.deadline(), "session lease extended"),
            Step::Stop { id, reason } => tracing::info!(session = %id, ?reason, "session stopped"),
            Step::Ignore => {}
        }
    }

    /// Sends a due snapshot once the ring holds enough ticks for its figures.
    fn snapshot_if_ready(&self, st: &mut State) {
        if st.snapshot_due && st.online && lock(&self.ring).len() >= SNAPSHOT_MIN_TICKS {
            st.snapshot_due = false;
            self.send_snapshot();
        }
    }

    fn on_tick(&self, st: &mut State, seq: u64) {
        let step = st.sessions.on_time(self.clock.now_ms());
        self.apply(st, step);
        self.snapshot_if_ready(st);
        if !st.online || seq <= st.sent_seq {
            return;
        }
        let data = {
            let ring = lock(&self.ring);
            match ring.get(seq) {
                Some(t) if st.sessions.wants_sample(t.ts) => sample_data(t),
                Some(_) | None => return,
            }
        };
        st.sent_seq = seq;
        self.send(EVENT_SAMPLE, data);
    }

    fn on_minute(&self, st: &State) {
        match &self.snapshots {
            Some(_) if st.online && st.sessions.active().is_none() => self.send_snapshot(),
            Some(s) => s.skip_minute(),
            None => {}
        }
    }

    fn send_snapshot(&self) {
        let Some(src) = &self.snapshots else { return };
        let data = src.build(&lock(&self.ring));
        self.send(EVENT_SNAPSHOT, data);
    }

    fn send(&self, event: &'static str, data: String) {
        if let Err(e) = self.out.try_send(Outbound { event, data }) {
            tracing::debug!(event, error = %e, "outbound queue full or closed; event dropped");
        }
    }
}

/// The sampler never panics while holding the ring, so poisoning only follows a bug elsewhere;
/// the ring itself stays consistent, so it is used as is.
pub fn lock(ring: &SharedRing) -> std::sync::MutexGuard<'_, Ring> {
    ring.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
