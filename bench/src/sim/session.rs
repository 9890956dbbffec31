//! The agent's session rules, as `sonde-agent` follows them: a `started` directive starts
//! streaming (history first), `renewed` extends the lease, `stopped` ends it for good, a
//! `backfill` sends the history again to one viewer; a lease that passes stops streaming.
//! Plus its pacing of client events (a burst of 100, then 80 a second).

use std::time::Duration;

use sonde_protocol::sonde::{SessionDirective, SessionState};
use tokio::time::Instant;

/// A lease never ends sooner than this after it arrives (the agent's `MIN_LEASE_MS`).
const MIN_LEASE_MS: u64 = 5_000;
const DEFAULT_LEASE_MS: u64 = 60_000;

/// What the connection must send after a directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Backfill then the newest sample, then a sample a second.
    Start,
    Backfill {
        for_socket: Option<String>,
    },
    Nothing,
}

#[derive(Debug, Default)]
pub struct Session {
    active: Option<(String, u64)>,
    stopped: Option<String>,
}

impl Session {
    pub fn id(&self) -> Option<&str> {
        self.active.as_ref().map(|(id, _)| id.as_str())
    }

    fn lease(d: &SessionDirective, now_ms: u64) -> u64 {
        let asked = if d.lease_until == 0 { now_ms + DEFAULT_LEASE_MS } else { d.lease_until };
        asked.max(now_ms + MIN_LEASE_MS)
    }

    pub fn on_directive(&mut self, d: &SessionDirective, now_ms: u64) -> Step {
        let id = d.id.0.clone();
        let same = self.id() == Some(id.as_str());
        let stopped = self.stopped.as_deref() == Some(id.as_str());
        let lease = Self::lease(d, now_ms);
        match d.state {
            SessionState::Started if same => self.extend(lease, None),
            SessionState::Renewed | SessionState::Backfill if stopped => Step::Nothing,
            SessionState::Renewed if self.active.is_some() => self.extend(lease, Some(id)),
            SessionState::Backfill if self.active.is_some() => {
                self.extend(lease, Some(id));
                Step::Backfill { for_socket: d.for_socket.clone() }
            }
            SessionState::Started | SessionState::Renewed | SessionState::Backfill => {
                self.active = Some((id, lease));
                Step::Start
            }
            SessionState::Stopped => {
                if same {
                    self.active = None;
                }
                self.stopped = Some(id);
                Step::Nothing
            }
        }
    }

    fn extend(&mut self, lease: u64, id: Option<String>) -> Step {
        if let Some((cur, until)) = self.active.as_mut() {
            *until = (*until).max(lease);
            if let Some(id) = id {
                *cur = id;
            }
        }
        Step::Nothing
    }

    /// Whether a live sample is due now; ends a session whose lease has passed.
    pub fn streaming(&mut self, now_ms: u64) -> bool {
        match self.active {
            Some((_, until)) if now_ms >= until => {
                self.active = None;
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}

/// A token bucket: the agent's pacing of client events under the relay's limit.
pub struct Pacer {
    tokens: f64,
    last: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Self { tokens: Self::BURST, last: Instant::now() }
    }
}

impl Pacer {
    const BURST: f64 = 100.0;
    const RATE: f64 = 80.0;

    /// How long to wait before the next event, counting it.
    pub fn take(&mut self) -> Duration {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * Self::RATE).min(Self::BURST);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / Self::RATE)
        }
    }
}

#[cfg(test)]
mod tests {
    use sonde_protocol::sonde::SessionId;

    use super::*;

    fn d(state: SessionState, id: &str, lease_until: u64) -> SessionDirective {
        SessionDirective { state, id: SessionId(id.into()), interval_ms: 1000, lease_until, for_socket: None }
    }

    #[test]
    fn follows_the_agents_rules() {
        let mut s = Session::default();
        assert_eq!(s.on_directive(&d(SessionState::Started, "a", 30_000), 0), Step::Start);
        assert_eq!(s.on_directive(&d(SessionState::Started, "a", 40_000), 1), Step::Nothing);
        assert!(s.streaming(35_000));
        let bf = SessionDirective { for_socket: Some("1.2".into()), ..d(SessionState::Backfill, "b", 50_000) };
        assert_eq!(s.on_directive(&bf, 36_000), Step::Backfill { for_socket: Some("1.2".into()) });
        assert_eq!(s.id(), Some("b"));
        assert_eq!(s.on_directive(&d(SessionState::Stopped, "b", 0), 37_000), Step::Nothing);
        assert!(!s.streaming(37_000));
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "b", 90_000), 38_000), Step::Nothing, "stopped by the relay stays stopped");
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "c", 90_000), 38_000), Step::Start, "a session the relay holds starts again");
        assert!(!s.streaming(90_000), "the lease ran out");
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_allows_a_burst_then_eighty_a_second() {
        let mut p = Pacer::default();
        assert!((0..100).all(|_| p.take().is_zero()));
        let wait = p.take();
        assert!(wait > Duration::from_millis(10) && wait < Duration::from_millis(15), "{wait:?}");
    }
}
