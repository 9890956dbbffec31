//! A realtime session through node crashes, joins, restarts and a Redis outage: real relay
//! processes, the real agent, viewers that move to a surviving node as a load balancer would
//! send them. Node ids are given, so each ordering of ids is covered every run. Each scenario
//! checks the longest gap between samples a viewer saw, that one session id was ever used,
//! one backfill per subscription, renewals still coming, and that every node lists the session.

use std::time::{Duration, Instant};

use sonde_tests::cluster::{NodeAgent, RedisServer, RelayNode, Watch, What, HEARTBEAT_MS, NODE_TIMEOUT_MS};

const HOST: &str = "web1";
/// Session timing of `CLUSTER_TOML`.
const LEASE: Duration = Duration::from_millis(4000);
const RENEW: Duration = Duration::from_millis(1000);
const INTERVAL: Duration = Duration::from_millis(1000);
/// The relay's session ticker.
const TICK: Duration = Duration::from_millis(250);
/// The agent's first retry after losing a connection it had.
const AGENT_RETRY: Duration = Duration::from_secs(1);

/// The longest sample gap when a node carrying the agent or the viewer dies: the agent (or
/// viewer) reconnects within `AGENT_RETRY`; a node that restarts with a new id waits for the
/// dead one's key for at most the node timeout plus a heartbeat before it serves; the new
/// leader's takeover (node timeout + heartbeat + tick) runs meanwhile, covered by the lease.
/// Then the next sample comes within an interval.
fn failover_gap() -> Duration {
    Duration::from_millis(NODE_TIMEOUT_MS + HEARTBEAT_MS) + TICK + AGENT_RETRY + INTERVAL
}

/// With no node of the agent or the viewer failing: an interval, and its jitter.
const STEADY_GAP: Duration = Duration::from_millis(2000);

fn urls(nodes: &[&RelayNode]) -> Vec<String> {
    nodes.iter().map(|n| n.ws_url()).collect()
}

async fn leader(redis: &RedisServer, prefix: &str) -> String {
    let v = redis.get(&format!("{prefix}:leader")).await.expect("a node holds the leader lease");
    v.split_once(':').map(|(_, node)| node.to_owned()).expect("term:node")
}

/// The session the viewer sees once it streams.
async fn session(w: &Watch) -> String {
    w.samples(2).await;
    let ids = w.ids();
    assert_eq!(ids.len(), 1, "one session: {ids:?}");
    ids.into_iter().next().expect("one id")
}

/// Watches for a lease's length after `event` (a dead leader's lease runs out meanwhile),
/// then checks what the viewers saw since `from`, and every node's list.
async fn holds(viewers: &[(&Watch, Duration)], nodes: &[&RelayNode], id: &str, from: Instant, event: Instant) {
    let end = event + LEASE + Duration::from_secs(1);
    tokio::time::sleep_until(end.into()).await;
    for (n, (w, max_gap)) in viewers.iter().enumerate() {
        let gap = w.longest_gap(from, Instant::now());
        let renewed_after =
            w.log().iter().find(|s| s.at > event && matches!(&s.what, What::Directive { state, .. } if state == "renewed")).map(|s| s.at - event);
        eprintln!(
            "{}: viewer {n}: longest sample gap {gap:?}, first renewal {renewed_after:?} after the event",
            std::thread::current().name().unwrap_or_default()
        );
        assert!(gap <= *max_gap, "viewer {n}: a {gap:?} gap between samples (at most {max_gap:?}): {:?}", w.log());
        assert_eq!(w.ids().into_iter().collect::<Vec<_>>(), [id], "viewer {n}: one session id throughout");
        assert!(w.backfills().iter().all(|b| *b == 1), "viewer {n}: one backfill per subscription: {:?}", w.backfills());
        assert!(w.directives("stopped") == 0 && w.directives("started") <= 1, "viewer {n}: no stop, no second start: {:?}", w.log());
        let renewed = w.last_renewal().expect("renewals");
        assert!(renewed.elapsed() <= RENEW + TICK + Duration::from_millis(750), "viewer {n}: renewals stopped {:?} ago", renewed.elapsed());
    }
    let want = vec![(HOST.to_owned(), id.to_owned())];
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let got = node.sessions().await;
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "node {} lists {got:?}, the cluster runs {want:?}", node.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The agent's node leads; it is SIGKILLed and a supervisor starts it again on its port.
async fn leader_killed_and_restarted(prefix: &str, restarted_as: &str) {
    let redis = RedisServer::start().await;
    let mut lead = RelayNode::start_as(&redis, prefix, Some("n5")).await;
    let other = RelayNode::start_as(&redis, prefix, Some("n3")).await;
    assert_eq!(leader(&redis, prefix).await, "n5", "the first node to be ready leads");
    let _agent = NodeAgent::spawn(&lead, HOST);
    let w = Watch::start(urls(&[&other, &lead]), HOST).await;
    let id = session(&w).await;
    let from = Instant::now();
    lead.kill();
    let killed = Instant::now();
    lead.restart(Some(restarted_as)).await;
    holds(&[(&w, failover_gap())], &[&lead, &other], &id, from, killed).await;
}

#[tokio::test]
async fn the_leader_killed_and_restarted_with_its_id_keeps_the_session() {
    leader_killed_and_restarted("f1", "n5").await;
}

#[tokio::test]
async fn the_leader_killed_and_restarted_with_a_smaller_new_id_keeps_the_session() {
    leader_killed_and_restarted("f2", "n1").await;
}

/// A node joins a running session: it takes nothing over, whatever its id.
async fn a_node_joins(prefix: &str, ids: [&str; 2], joining: &str) {
    let redis = RedisServer::start().await;
    let a = RelayNode::start_as(&redis, prefix, Some(ids[0])).await;
    let b = RelayNode::start_as(&redis, prefix, Some(ids[1])).await;
    let _agent = NodeAgent::spawn(&a, HOST);
    let w = Watch::start(urls(&[&b]), HOST).await;
    let id = session(&w).await;
    let from = Instant::now();
    let c = RelayNode::start_as(&redis, prefix, Some(joining)).await;
    let joined = Instant::now();
    // Ready means synced: the newcomer already knows the session, and nobody took its table.
    for node in [&a, &b, &c] {
        assert_eq!(node.sessions().await, [(HOST.to_owned(), id.clone())], "node {} as the node joins", node.addr);
    }
    let late = Watch::start(urls(&[&c]), HOST).await;
    late.until("its backfill", |l| l.iter().any(|s| matches!(s.what, What::Backfill { .. }))).await;
    assert_eq!(leader(&redis, prefix).await, ids[0], "a node joining never takes the lease");
    holds(&[(&w, STEADY_GAP), (&late, STEADY_GAP)], &[&a, &b, &c], &id, from, joined).await;
}

#[tokio::test]
async fn a_node_with_a_smaller_id_joining_keeps_the_session() {
    a_node_joins("f3", ["n5", "n7"], "n1").await;
}

#[tokio::test]
async fn a_node_with_an_id_between_two_others_joining_keeps_the_session() {
    a_node_joins("f4", ["n1", "n9"], "n5").await;
}

#[tokio::test]
async fn the_viewers_node_killed_and_the_viewer_moving_to_a_survivor_keeps_the_session() {
    let redis = RedisServer::start().await;
    let mut first = RelayNode::start_as(&redis, "f5", Some("n2")).await;
    let agents = RelayNode::start_as(&redis, "f5", Some("n4")).await;
    let third = RelayNode::start_as(&redis, "f5", Some("n6")).await;
    let _agent = NodeAgent::spawn(&agents, HOST);
    // The viewer is on the leader's node.
    let w = Watch::start(urls(&[&first, &third, &agents]), HOST).await;
    let id = session(&w).await;
    let from = Instant::now();
    first.kill();
    let killed = Instant::now();
    holds(&[(&w, failover_gap())], &[&agents, &third], &id, from, killed).await;
    assert_eq!(w.backfills(), [1, 1], "the move is a second subscription, with its own backfill");
}

#[tokio::test]
async fn redis_killed_and_restarted_during_a_session_keeps_it() {
    let mut redis = RedisServer::start().await;
    let a = RelayNode::start_as(&redis, "f6", Some("n1")).await;
    let b = RelayNode::start_as(&redis, "f6", Some("n2")).await;
    let _agent = NodeAgent::spawn(&a, HOST);
    let near = Watch::start(urls(&[&a]), HOST).await;
    let id = session(&near).await;
    let far = Watch::start(urls(&[&b]), HOST).await;
    far.samples(1).await;
    let from = Instant::now();
    let outage = Duration::from_secs(2);
    redis.kill();
    tokio::time::sleep(outage).await;
    redis.restart().await;
    let back = Instant::now();
    // A viewer on the agent's node sees no gap: that node runs the session alone meanwhile. One
    // elsewhere sees none of the agent's samples until the nodes are back on Redis: their
    // retries double from 100 ms, so the one after the outage comes within the outage again.
    let far_gap = outage * 2 + Duration::from_millis(NODE_TIMEOUT_MS) + INTERVAL;
    holds(&[(&near, STEADY_GAP), (&far, far_gap)], &[&a, &b], &id, from, back).await;
}

#[tokio::test]
async fn a_three_node_rolling_restart_keeps_the_session() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(RelayNode::start_as(&redis, "f7", Some(id)).await);
    }
    let _agent = NodeAgent::spawn(&nodes[1], HOST);
    let w1 = Watch::start(urls(&[&nodes[0], &nodes[1], &nodes[2]]), HOST).await;
    let id = session(&w1).await;
    let w2 = Watch::start(urls(&[&nodes[2], &nodes[0], &nodes[1]]), HOST).await;
    w2.samples(1).await;
    let from = Instant::now();
    for (i, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
        nodes[i].stop().await;
        nodes[i].restart(Some(name)).await;
        w1.samples(2).await;
        w2.samples(2).await;
    }
    let last = Instant::now();
    let all: Vec<&RelayNode> = nodes.iter().collect();
    holds(&[(&w1, failover_gap()), (&w2, failover_gap())], &all, &id, from, last).await;
}
