use super::*;

const V: SocketId = SocketId { high: 9, low: 9 };
const AGENT: SocketId = SocketId { high: 1, low: 1 };

fn clock(t0: Instant, secs: f64) -> Clock {
    Clock { now: t0 + Duration::from_secs_f64(secs), now_ms: 1_000_000 + (secs * 1000.0) as u64 }
}

fn states(actions: &[Action]) -> Vec<SessionState> {
    actions
        .iter()
        .map(|a| match a {
            Action::Publish { directive, .. } | Action::Send { directive, .. } => directive.state,
        })
        .collect()
}

#[test]
fn first_viewer_starts_last_viewer_stops_after_grace() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    let a = s.viewer_joined("web1", V, clock(t0, 0.0));
    assert_eq!(states(&a), [SessionState::Started]);
    s.agent_joined("web1", AGENT);
    let second = s.viewer_joined("web1", V, clock(t0, 1.0));
    assert_eq!(states(&second), [SessionState::Backfill], "a second viewer gets the history, the session goes on");
    assert!(matches!(&second[0], Action::Publish { directive, .. } if directive.for_socket.as_deref() == Some("9.9")));
    s.viewer_left("web1", clock(t0, 2.0));
    assert!(s.tick(clock(t0, 5.0)).is_empty(), "one viewer remains");
    s.viewer_left("web1", clock(t0, 6.0));
    assert_eq!(states(&s.tick(clock(t0, 15.0))), [SessionState::Renewed], "within the grace: only the renewal");
    assert_eq!(states(&s.tick(clock(t0, 16.0))), [SessionState::Stopped]);
    assert_eq!(s.count(), 0);
}

#[test]
fn a_viewer_returning_within_the_grace_keeps_the_session() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    let started = s.viewer_joined("web1", V, clock(t0, 0.0));
    s.agent_joined("web1", AGENT);
    s.viewer_left("web1", clock(t0, 1.0));
    assert_eq!(states(&s.viewer_joined("web1", V, clock(t0, 5.0))), [SessionState::Backfill]);
    assert!(!states(&s.tick(clock(t0, 30.0))).contains(&SessionState::Stopped));
    let id = |a: &Action| match a {
        Action::Publish { directive, .. } | Action::Send { directive, .. } => directive.id.clone(),
    };
    assert_eq!(id(&s.tick(clock(t0, 40.0))[0]), id(&started[0]), "same session, renewed");
}

#[test]
fn leases_are_renewed_while_the_session_lives() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    let first = s.viewer_joined("web1", V, clock(t0, 0.0));
    let Action::Publish { directive, .. } = &first[0] else { panic!() };
    assert_eq!(directive.lease_until, 1_000_000 + 30_000);
    assert!(s.tick(clock(t0, 9.0)).is_empty());
    let renewed = s.tick(clock(t0, 10.0));
    let Action::Publish { directive, .. } = &renewed[0] else { panic!() };
    assert_eq!((directive.state, directive.lease_until), (SessionState::Renewed, 1_000_000 + 40_000));
}

#[test]
fn agents_joining_a_running_session_get_the_directive_at_once() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    let agent = SocketId::new(1, 1);
    assert!(s.agent_joined("web1", agent).is_empty(), "no viewer, no stream");
    s.agent_left("web1", agent);
    s.viewer_joined("web1", V, clock(t0, 0.0));
    let a = s.agent_joined("web1", agent);
    assert!(matches!(&a[..], [Action::Send { to, directive, .. }] if *to == agent && directive.state == SessionState::Started));
}

#[test]
fn server_side_sessions_run_for_their_duration_then_the_grace() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    let (info, a) = s.start_for("db1", Duration::from_secs(60), clock(t0, 0.0));
    assert_eq!(states(&a), [SessionState::Started]);
    assert_eq!(info.until_ms, Some(1_000_000 + 60_000));
    assert_eq!(info.viewers, 0);
    assert!(!states(&s.tick(clock(t0, 65.0))).contains(&SessionState::Stopped), "the grace counts from the end of the duration");
    assert_eq!(states(&s.tick(clock(t0, 70.0))), [SessionState::Stopped]);
    // An explicit duration keeps a viewer's session alive after it leaves, too.
    s.viewer_joined("db1", V, clock(t0, 100.0));
    s.start_for("db1", Duration::from_secs(60), clock(t0, 101.0));
    s.viewer_left("db1", clock(t0, 102.0));
    assert!(!states(&s.tick(clock(t0, 150.0))).contains(&SessionState::Stopped));
    assert_eq!(s.list(clock(t0, 150.0)).len(), 1);
    assert!(s.stop("db1").is_some());
    assert!(s.stop("db1").is_none());
    assert!(s.list(clock(t0, 151.0)).is_empty());
}

#[test]
fn a_viewer_joining_while_the_agent_is_away_gets_its_backfill_once_the_agent_streams_again() {
    let s = Sessions::new(SessionTiming::default());
    let t0 = Instant::now();
    s.viewer_joined("web1", V, clock(t0, 0.0));
    let late = SocketId::new(9, 10);
    assert!(s.viewer_joined("web1", late, clock(t0, 1.0)).is_empty(), "no agent to ask");
    assert!(s.owes());
    let asked = s.stream_seen("web1", Stream::Sample, clock(t0, 2.0), |_| true);
    assert!(
        matches!(&asked[..], [Action::Publish { directive, .. }] if directive.state == SessionState::Backfill && directive.for_socket.as_deref() == Some("9.10"))
    );
    assert!(s.stream_seen("web1", Stream::Sample, clock(t0, 3.0), |_| true).is_empty(), "asked already");
    assert_eq!(states(&s.stream_seen("web1", Stream::Sample, clock(t0, 4.0), |_| true)), [SessionState::Backfill], "no answer: asked again");
    s.backfilled(late);
    assert!(!s.owes() && s.stream_seen("web1", Stream::Sample, clock(t0, 9.0), |_| true).is_empty());
    // A backfill to the whole channel (an agent starting afresh) settles every debt.
    s.viewer_joined("web1", late, clock(t0, 10.0));
    assert!(s.stream_seen("web1", Stream::Backfill, clock(t0, 10.5), |_| true).is_empty());
    assert!(!s.owes());
    // A viewer that left is owed nothing; with the agent there, the ask goes at once.
    s.viewer_joined("web1", late, clock(t0, 11.0));
    assert!(s.stream_seen("web1", Stream::Sample, clock(t0, 12.0), |_| false).is_empty());
    assert!(!s.owes());
    s.agent_joined("web1", AGENT);
    assert_eq!(states(&s.viewer_joined("web1", late, clock(t0, 13.0))), [SessionState::Backfill]);
    assert!(s.stream_seen("web1", Stream::Sample, clock(t0, 13.5), |_| true).is_empty(), "the answer is on its way");
    // Never answered, and the host streams no more: forgotten after a minute.
    s.tick(clock(t0, 72.0));
    assert!(s.owes());
    s.tick(clock(t0, 74.0));
    assert!(!s.owes());
}
