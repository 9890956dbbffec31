//! Leadership: who starts sessions, which table wins, and what a node taking over continues.

use super::*;

const V: SocketId = SocketId { high: 9, low: 9 };
const AGENT: SocketId = SocketId { high: 1, low: 1 };

fn clock(t0: Instant, secs: f64) -> Clock {
    Clock { now: t0 + Duration::from_secs_f64(secs), now_ms: 1_000_000 + (secs * 1000.0) as u64 }
}

fn rec(host: &str, id: &str, lease_until_ms: u64) -> SessionInfo {
    SessionInfo { host: host.into(), id: id.into(), started_ms: 1_000_000, viewers: 1, lease_until_ms, until_ms: None, started_by: Default::default() }
}

fn table(term: u64, seq: u64, sessions: Vec<SessionInfo>) -> Table {
    Table { term, seq, sessions }
}

/// (state, id, term) of each action.
fn said(actions: &[Action]) -> Vec<(SessionState, String, u64)> {
    actions
        .iter()
        .map(|a| match a {
            Action::Publish { directive, term, .. } | Action::Send { directive, term, .. } => (directive.state, directive.id.0.clone(), *term),
        })
        .collect()
}

fn ids(s: &Sessions, c: Clock) -> Vec<(String, String)> {
    s.list(c).iter().map(|i| (i.host.to_string(), i.id.clone())).collect()
}

fn follower(t0: Instant) -> Sessions {
    let s = Sessions::new(SessionTiming::default());
    s.follow(clock(t0, 0.0));
    s
}

#[test]
fn a_follower_answers_from_the_leaders_table_and_never_starts_or_stops() {
    let t0 = Instant::now();
    let s = follower(t0);
    assert!(s.viewer_joined("db1", V, clock(t0, 0.0)).is_empty(), "no session in the table: the leader starts it");
    s.accept(table(5, 1, vec![rec("web1", "a", 1_030_000)]), clock(t0, 0.0));
    assert_eq!(said(&s.agent_joined("web1", AGENT)), [(SessionState::Started, "a".into(), 5)]);
    assert_eq!(said(&s.viewer_joined("web1", V, clock(t0, 1.0))), [(SessionState::Backfill, "a".into(), 5)]);
    s.viewer_left("web1", clock(t0, 2.0));
    assert!(s.tick(clock(t0, 60.0)).is_empty(), "a follower renews and stops nothing");
    assert_eq!(ids(&s, clock(t0, 60.0)), [("web1".into(), "a".into())]);
    assert!(!s.is_leader());
}

#[test]
fn a_table_never_replaces_a_newer_one() {
    let t0 = Instant::now();
    let s = follower(t0);
    let c = clock(t0, 0.0);
    s.accept(table(5, 2, vec![rec("web1", "a", 1_030_000)]), c);
    for older in [table(5, 1, vec![]), table(4, 9, vec![rec("web1", "old", 1_030_000)]), table(0, 0, vec![rec("web1", "alone", 1_030_000)])] {
        s.accept(older, c);
        assert_eq!(ids(&s, c), [("web1".into(), "a".into())]);
    }
    s.accept(table(6, 1, vec![]), c);
    assert!(ids(&s, c).is_empty(), "a newer term's table wins");
    assert!(s.stale(5) && !s.stale(6));
}

#[test]
fn a_new_leader_continues_the_sessions_with_their_ids_and_renews_them_at_once() {
    let t0 = Instant::now();
    let s = follower(t0);
    let n2: NodeId = "n2".into();
    s.remote_host(&n2, "web1", 1, vec![AGENT], clock(t0, 0.0));
    s.accept(table(5, 3, vec![rec("web1", "a", 1_004_000)]), clock(t0, 0.0));
    let took = s.lead(9, t0 + Duration::from_secs(60), clock(t0, 3.0));
    assert_eq!(said(&took), [(SessionState::Renewed, "a".into(), 9)]);
    let Action::Publish { directive, .. } = &took[0] else { panic!() };
    assert_eq!(directive.lease_until, 1_003_000 + 30_000, "the lease runs from the takeover");
    assert_eq!(said(&s.viewer_joined("web1", V, clock(t0, 4.0))), [(SessionState::Backfill, "a".into(), 9)], "no second session");
    assert!(s.lead(9, t0 + Duration::from_secs(90), clock(t0, 5.0)).is_empty(), "a renewal of the lease changes nothing");
    let t = s.take_changes(clock(t0, 5.0)).expect("the new leader announces its table");
    assert_eq!((t.term, t.sessions.len(), t.sessions[0].id.as_str()), (9, 1, "a"));
}

#[test]
fn the_leader_adopts_only_missing_live_sessions_from_older_terms() {
    let t0 = Instant::now();
    let s = follower(t0);
    s.lead(7, t0 + Duration::from_secs(60), clock(t0, 0.0));
    let started = said(&s.viewer_joined("web1", V, clock(t0, 0.0)));
    let own = started[0].1.clone();
    let c = clock(t0, 1.0);
    let older = table(3, 40, vec![rec("web1", "old", 1_030_000), rec("db1", "orphan", 1_030_000), rec("db2", "dead", 1_000_500)]);
    assert_eq!(said(&s.accept(older, c)), [(SessionState::Renewed, "orphan".into(), 7)]);
    assert_eq!(ids(&s, c), [("db1".into(), "orphan".into()), ("web1".into(), own.clone())]);
    assert!(s.accept(table(7, 99, vec![]), c).is_empty(), "its own term, repeated: nothing changes");
    assert_eq!(ids(&s, c).len(), 2);
}

#[test]
fn a_newer_term_deposes_the_leader() {
    let t0 = Instant::now();
    let s = follower(t0);
    s.lead(7, t0 + Duration::from_secs(60), clock(t0, 0.0));
    s.viewer_joined("web1", V, clock(t0, 0.0));
    s.accept(table(8, 1, vec![rec("web1", "b", 1_030_000)]), clock(t0, 1.0));
    assert_eq!(s.role(), Role::Follower);
    assert_eq!(ids(&s, clock(t0, 1.0)), [("web1".into(), "b".into())]);
    assert!(s.tick(clock(t0, 30.0)).is_empty());
}

#[test]
fn a_leader_unsure_of_its_lease_holds_still() {
    let t0 = Instant::now();
    let s = follower(t0);
    s.remote_host(&"n2".into(), "web1", 1, Vec::new(), clock(t0, 0.0));
    s.accept(table(5, 1, vec![rec("web1", "a", 1_030_000)]), clock(t0, 0.0));
    s.lead(6, t0 + Duration::from_secs(1), clock(t0, 0.0));
    assert!(s.tick(clock(t0, 20.0)).is_empty(), "no renewal past the sure part of the lease");
    assert!(s.viewer_joined("db1", V, clock(t0, 20.0)).is_empty(), "and no start");
    assert_eq!(said(&s.agent_joined("web1", AGENT)), [(SessionState::Started, "a".into(), 6)], "agents still hear the running session");
    s.lead(6, t0 + Duration::from_secs(60), clock(t0, 21.0));
    assert_eq!(said(&s.tick(clock(t0, 21.0))), [(SessionState::Renewed, "a".into(), 6)]);
}

#[test]
fn running_alone_continues_the_followed_sessions_and_hands_them_back() {
    let t0 = Instant::now();
    let s = follower(t0);
    s.accept(table(5, 4, vec![rec("web1", "a", 1_030_000)]), clock(t0, 0.0));
    assert_eq!(said(&s.alone(clock(t0, 1.0))), [(SessionState::Renewed, "a".into(), 0)]);
    assert!(s.is_leader());
    let started = said(&s.viewer_joined("db1", V, clock(t0, 2.0)));
    assert_eq!((started[0].0, started[0].2), (SessionState::Started, 0));
    s.follow(clock(t0, 3.0));
    let t = s.table(clock(t0, 3.0));
    assert_eq!((t.term, t.seq, t.sessions.len()), (0, 0, 2), "what it ran alone, offered as the oldest version");
    s.accept(table(6, 1, vec![rec("web1", "a", 1_040_000)]), clock(t0, 4.0));
    assert_eq!(ids(&s, clock(t0, 4.0)), [("web1".into(), "a".into())]);
}

#[test]
fn the_leader_announces_starts_at_once_and_other_changes_at_most_every_250_ms() {
    let t0 = Instant::now();
    let s = follower(t0);
    assert!(s.take_changes(clock(t0, 0.0)).is_none(), "followers announce nothing");
    s.lead(3, t0 + Duration::from_secs(60), clock(t0, 0.0));
    assert_eq!(s.take_changes(clock(t0, 0.0)).map(|t| t.seq), Some(1));
    s.viewer_joined("web1", V, clock(t0, 0.1));
    assert_eq!(s.take_changes(clock(t0, 0.1)).map(|t| (t.seq, t.sessions.len())), Some((2, 1)), "a start goes out at once");
    s.viewer_joined("web1", V, clock(t0, 0.2));
    assert!(s.take_changes(clock(t0, 0.2)).is_none(), "a viewer count waits");
    assert_eq!(s.take_changes(clock(t0, 0.4)).map(|t| (t.seq, t.sessions[0].viewers)), Some((3, 2)));
    assert!(s.take_changes(clock(t0, 1.0)).is_none(), "nothing changed");
    assert_eq!(s.table(clock(t0, 1.0)).seq, 3);
}
