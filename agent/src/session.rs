//! The session state machine: which directive starts, extends or ends streaming, and when a
//! lease runs out. Pure logic on unix milliseconds; the caller supplies the time.
//!
//! The relay is the authority on whether a host is watched. A lease that ran out here (the
//! relay stalled, or this agent did) does not end the session for good: the relay's next
//! renewal or backfill for it starts it again. Only the relay's own `stopped` is final.

use sonde_protocol::sonde::{SessionDirective, SessionId, SessionState, DEFAULT_INTERVAL_MS};

/// Lease used when a directive carries none.
pub const DEFAULT_LEASE_MS: u64 = 60_000;
/// A lease is never shorter than this from the moment it arrives, so an agent whose clock runs
/// ahead of the relay's does not stop a session the moment it starts.
pub const MIN_LEASE_MS: u64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub id: SessionId,
    pub interval_ms: u64,
    pub lease_until: u64,
}

/// What the caller must do after a directive or a clock check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new session: send the backfill, then live samples.
    Start(SessionId),
    /// The running session's lease moved; keep streaming.
    Extended,
    /// Stop streaming this session.
    Stop { id: SessionId, reason: StopReason },
    /// Send the history again for one viewer that joined the running session.
    Backfill { id: SessionId, for_socket: Option<String> },
    /// Nothing to do (a stop for another session, a late renewal of a stopped one).
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The relay said `stopped`.
    Directive,
    /// The lease passed without a renewal.
    LeaseExpired,
    /// A `started` for another session replaced it.
    Replaced,
    /// The agent is shutting down.
    Shutdown,
}

#[derive(Debug, Default)]
pub struct Sessions {
    active: Option<Active>,
    /// The last session the relay stopped: a renewal of it arriving late must not restart it.
    stopped: Option<SessionId>,
}

fn lease(d: &SessionDirective, now_ms: u64) -> u64 {
    let asked = if d.lease_until == 0 { now_ms + DEFAULT_LEASE_MS } else { d.lease_until };
    asked.max(now_ms + MIN_LEASE_MS)
}

impl Sessions {
    pub fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    /// Applies a directive. A `started` replacing another session yields that session's stop
    /// first (see [`Sessions::replaced`]), then `Start`.
    pub fn on_directive(&mut self, d: &SessionDirective, now_ms: u64) -> Step {
        let same = self.active.as_ref().is_some_and(|a| a.id == d.id);
        let running = self.active.is_some();
        let stopped_by_relay = self.stopped.as_ref() == Some(&d.id);
        match d.state {
            SessionState::Started if same => self.extend(d, now_ms),
            SessionState::Started => self.start(d, now_ms),
            SessionState::Renewed | SessionState::Backfill if stopped_by_relay => Step::Ignore,
            SessionState::Renewed if same => self.extend(d, now_ms),
            // The relay renews a session under another id (a new leader took over): follow it
            // without a new backfill; the stream goes on.
            SessionState::Renewed if running => self.adopt(d, now_ms),
            SessionState::Backfill if running => {
                self.adopt(d, now_ms);
                Step::Backfill { id: d.id.clone(), for_socket: d.for_socket.clone() }
            }
            // The relay holds a session this agent no longer runs (its lease ran out during a
            // stall on either side): start it again, history first.
            SessionState::Renewed | SessionState::Backfill => self.start(d, now_ms),
            SessionState::Stopped if same => {
                self.active = None;
                self.stopped = Some(d.id.clone());
                Step::Stop { id: d.id.clone(), reason: StopReason::Directive }
            }
            SessionState::Stopped => {
                self.stopped = Some(d.id.clone());
                Step::Ignore
            }
        }
    }

    fn start(&mut self, d: &SessionDirective, now_ms: u64) -> Step {
        let interval_ms = d.interval_ms.max(DEFAULT_INTERVAL_MS).div_ceil(1000) * 1000;
        self.active = Some(Active { id: d.id.clone(), interval_ms, lease_until: lease(d, now_ms) });
        Step::Start(d.id.clone())
    }

    fn adopt(&mut self, d: &SessionDirective, now_ms: u64) -> Step {
        if let Some(a) = self.active.as_mut() {
            a.id = d.id.clone();
        }
        self.extend(d, now_ms)
    }

    /// The session a `started` directive would replace, if any.
    pub fn replaced(&self, d: &SessionDirective) -> Option<SessionId> {
        let a = self.active.as_ref()?;
        (d.state == SessionState::Started && a.id != d.id).then(|| a.id.clone())
    }

    fn extend(&mut self, d: &SessionDirective, now_ms: u64) -> Step {
        let Some(a) = self.active.as_mut() else { return Step::Ignore };
        a.lease_until = a.lease_until.max(lease(d, now_ms));
        Step::Extended
    }

    /// Ends the session if its lease has passed.
    pub fn on_time(&mut self, now_ms: u64) -> Step {
        match &self.active {
            Some(a) if now_ms >= a.lease_until => {
                let id = a.id.clone();
                self.active = None;
                Step::Stop { id, reason: StopReason::LeaseExpired }
            }
            Some(_) | None => Step::Ignore,
        }
    }

    /// Ends the session because the agent stops.
    pub fn shutdown(&mut self) -> Step {
        match self.active.take() {
            Some(a) => Step::Stop { id: a.id, reason: StopReason::Shutdown },
            None => Step::Ignore,
        }
    }

    /// Whether the tick of second `ts` is due as a live sample.
    pub fn wants_sample(&self, ts: u64) -> bool {
        self.active.as_ref().is_some_and(|a| ts % a.interval_ms == 0)
    }

    /// When the running session's lease ends.
    pub fn deadline(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.lease_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(state: SessionState, id: &str, lease_until: u64) -> SessionDirective {
        SessionDirective { state, id: SessionId(id.into()), interval_ms: 1000, lease_until, for_socket: None }
    }

    #[test]
    fn start_renew_stop() {
        let mut s = Sessions::default();
        assert_eq!(s.on_directive(&d(SessionState::Started, "a", 30_000), 0), Step::Start(SessionId("a".into())));
        assert_eq!(s.deadline(), Some(30_000));
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "a", 60_000), 20_000), Step::Extended);
        assert_eq!(s.deadline(), Some(60_000));
        assert_eq!(s.on_directive(&d(SessionState::Stopped, "zzz", 0), 20_000), Step::Ignore);
        assert!(s.wants_sample(21_000));
        let stop = s.on_directive(&d(SessionState::Stopped, "a", 0), 21_000);
        assert_eq!(stop, Step::Stop { id: SessionId("a".into()), reason: StopReason::Directive });
        assert!(s.active().is_none() && !s.wants_sample(22_000));
        // What the relay stopped stays stopped, whatever arrives late for it.
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "a", 90_000), 22_000), Step::Ignore);
        assert_eq!(s.on_directive(&d(SessionState::Backfill, "a", 90_000), 22_000), Step::Ignore);
        assert_eq!(s.on_directive(&d(SessionState::Started, "a", 90_000), 22_000), Step::Start(SessionId("a".into())));
    }

    #[test]
    fn a_renewal_after_the_lease_ran_out_here_starts_again() {
        let mut s = Sessions::default();
        s.on_directive(&d(SessionState::Started, "a", 30_000), 0);
        assert!(matches!(s.on_time(30_000), Step::Stop { reason: StopReason::LeaseExpired, .. }));
        // The relay stalled past the lease; back, it renews: streaming resumes, history first.
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "a", 70_000), 40_000), Step::Start(SessionId("a".into())));
        assert_eq!(s.deadline(), Some(70_000));
        assert!(s.wants_sample(41_000));
        s.on_time(70_000);
        let backfill = SessionDirective { for_socket: Some("1.2".into()), ..d(SessionState::Backfill, "a", 99_000) };
        assert_eq!(s.on_directive(&backfill, 80_000), Step::Start(SessionId("a".into())), "any directive of a live session");
    }

    #[test]
    fn a_renewal_under_another_id_is_followed_without_a_new_backfill() {
        let mut s = Sessions::default();
        s.on_directive(&d(SessionState::Started, "a", 30_000), 0);
        assert_eq!(s.on_directive(&d(SessionState::Renewed, "b", 60_000), 20_000), Step::Extended);
        assert_eq!(s.active().unwrap().id, SessionId("b".into()));
        assert_eq!(s.deadline(), Some(60_000));
        let backfill = SessionDirective { for_socket: Some("1.2".into()), ..d(SessionState::Backfill, "c", 70_000) };
        assert_eq!(s.on_directive(&backfill, 21_000), Step::Backfill { id: SessionId("c".into()), for_socket: Some("1.2".into()) });
        assert_eq!(s.active().unwrap().id, SessionId("c".into()));
    }

    #[test]
    fn duplicate_start_only_extends() {
        let mut s = Sessions::default();
        s.on_directive(&d(SessionState::Started, "a", 30_000), 0);
        assert_eq!(s.on_directive(&d(SessionState::Started, "a", 45_000), 1_000), Step::Extended);
        assert_eq!(s.deadline(), Some(45_000));
        assert_eq!(s.replaced(&d(SessionState::Started, "b", 0)), Some(SessionId("a".into())));
        assert_eq!(s.on_directive(&d(SessionState::Started, "b", 50_000), 2_000), Step::Start(SessionId("b".into())));
    }

    #[test]
    fn lease_expiry_and_clock_skew() {
        let mut s = Sessions::default();
        s.on_directive(&d(SessionState::Started, "a", 10_000), 0);
        assert_eq!(s.on_time(9_999), Step::Ignore);
        assert_eq!(s.on_time(10_000), Step::Stop { id: SessionId("a".into()), reason: StopReason::LeaseExpired });
        // A lease already in the past by this agent's clock still runs for MIN_LEASE_MS.
        s.on_directive(&d(SessionState::Started, "b", 1_000), 50_000);
        assert_eq!(s.deadline(), Some(50_000 + MIN_LEASE_MS));
        s.shutdown();
        s.on_directive(&d(SessionState::Started, "c", 0), 50_000);
        assert_eq!(s.deadline(), Some(50_000 + DEFAULT_LEASE_MS));
    }

    #[test]
    fn intervals_round_to_whole_seconds() {
        let mut s = Sessions::default();
        let mut dir = d(SessionState::Started, "a", 60_000);
        dir.interval_ms = 2_500;
        s.on_directive(&dir, 0);
        assert_eq!(s.active().unwrap().interval_ms, 3_000);
        assert!(s.wants_sample(3_000) && !s.wants_sample(4_000) && s.wants_sample(6_000));
        dir.id = SessionId("b".into());
        dir.interval_ms = 100;
        s.on_directive(&dir, 0);
        assert!(s.wants_sample(1_000) && s.wants_sample(2_000));
    }
}
