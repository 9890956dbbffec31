//! Three relay nodes sharing a real Redis: whatever node a client lands on, it sees the same.

#[path = "cluster/failover.rs"]
mod failover;

use std::time::{Duration, Instant};

use serde_json::json;
use sonde_tests::cluster::{RedisServer, RelayNode};
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Client, Frame};

async fn cluster(prefix: &str) -> (RedisServer, Vec<RelayNode>) {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(RelayNode::start(&redis, prefix).await);
    }
    (redis, nodes)
}

fn presence(api: &sonde_tests::Api, c: &Client, ch: &str, user: &str) -> (String, String) {
    let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    (api.auth(&c.socket_id, ch, Some(&data)), data)
}

async fn join(node: &RelayNode, ch: &str, user: &str) -> (Client, Frame) {
    let mut c = node.client().await;
    let (auth, data) = presence(&node.api(), &c, ch, user);
    c.subscribe_auth(ch, &auth, Some(&data)).await;
    let ok = c.expect_next("pusher_internal:subscription_succeeded").await;
    (c, ok)
}

/// A viewer of `host` connected to `node`, subscribed.
async fn viewer_on(node: &RelayNode, host: &str) -> Client {
    let mut c = Client::connect(&node.ws_url()).await;
    c.subscribe_auth(&format!("private-sonde-host.{host}"), &hs256(&viewer("1"), "secret"), None).await;
    c.expect("pusher_internal:subscription_succeeded").await;
    c
}

/// Waits until `node` counts `n` subscribers of `channel`, its own and other nodes'.
async fn subscribers_seen(node: &RelayNode, channel: &str, n: u64, what: &str) {
    eventually(what, || async {
        let (_, b) = node.api().request("GET", &format!("/channels/{channel}"), None, &[("info", "subscription_count")]).await;
        b["subscription_count"] == n
    })
    .await;
}

/// Polls until `check` holds (cluster state travels asynchronously).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl FnMut() -> F) {
    sonde_tests::eventually(what, Duration::from_secs(8), check).await;
}

#[tokio::test]
async fn publishes_and_client_events_reach_every_node_once() {
    let (_redis, nodes) = cluster("t1").await;
    let mut subs = Vec::new();
    for n in &nodes {
        let mut c = n.client().await;
        let auth = n.api().auth(&c.socket_id, "private-news", None);
        c.subscribe_auth("private-news", &auth, None).await;
        c.expect_next("pusher_internal:subscription_succeeded").await;
        subs.push(c);
    }
    eventually("counts from every node", || async {
        let (_, b) = nodes[0].api().request("GET", "/channels/private-news", None, &[("info", "subscription_count")]).await;
        b["subscription_count"] == 3
    })
    .await;
    let (status, _) = nodes[1].api().trigger(&["private-news"], "headline", "1").await;
    assert_eq!(status, 200);
    for c in subs.iter_mut() {
        c.expect("headline").await;
    }
    subs[2].trigger("private-news", "client-typing", json!({"from": 2})).await;
    for c in subs.iter_mut().take(2) {
        assert_eq!(c.expect("client-typing").await.data, json!({"from": 2}));
    }
    // Exactly once: after a marker, nothing else is queued.
    nodes[0].api().trigger(&["private-news"], "marker", "x").await;
    for c in subs.iter_mut() {
        let mut seen = Vec::new();
        loop {
            let f = c.next_frame().await.unwrap();
            if f.event == "marker" {
                break;
            }
            seen.push(f.event);
        }
        assert!(seen.iter().all(|e| e == "pusher_internal:subscription_count"), "duplicates or echoes: {seen:?}");
    }
}

#[tokio::test]
async fn presence_is_cluster_wide_with_member_events_once_per_user() {
    let (_redis, nodes) = cluster("t2").await;
    let ch = "presence-ops";
    let (mut a1, ok) = join(&nodes[0], ch, "alice").await;
    assert_eq!(ok.data["presence"]["count"], 1);
    eventually("alice known on node 2", || async {
        let (_, b) = nodes[1].api().request("GET", &format!("/channels/{ch}/users"), None, &[]).await;
        b["users"].as_array().is_some_and(|u| u.len() == 1)
    })
    .await;
    let (mut a2, ok) = join(&nodes[1], ch, "alice").await;
    assert_eq!(ok.data["presence"]["ids"], json!(["alice"]), "a second tab on another node is the same member");
    let (mut b, ok) = join(&nodes[2], ch, "bob").await;
    let ids: Vec<String> = ok.data["presence"]["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert!(ids.contains(&"alice".to_owned()) && ids.contains(&"bob".to_owned()), "{ids:?}");
    for c in [&mut a1, &mut a2] {
        let added = c.expect("pusher_internal:member_added").await;
        assert_eq!(added.data["user_id"], "bob");
    }
    let (_, body) = nodes[0].api().request("GET", "/channels", None, &[("filter_by_prefix", "presence-"), ("info", "user_count")]).await;
    assert_eq!(body, json!({"channels": {"presence-ops": {"user_count": 2}}}));
    // alice's first tab leaves: nobody hears anything (her tab on node 2 remains).
    a1.close().await;
    nodes[2].api().trigger(&[ch], "marker", "1").await;
    b.expect_only("marker").await;
    a2.close().await;
    let removed = b.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data, json!({"user_id": "alice"}));
    nodes[2].api().trigger(&[ch], "marker", "2").await;
    b.expect_only("marker").await;
}

#[tokio::test]
async fn users_cache_and_queries_across_nodes() {
    let (_redis, nodes) = cluster("t3").await;
    let api = nodes[0].api();
    let mut alice = nodes[0].client().await;
    let ud = json!({"id": "alice", "watchlist": ["bob"]}).to_string();
    alice.send(json!({"event":"pusher:signin","data":{"auth": api.user_auth(&alice.socket_id, &ud), "user_data": ud}})).await;
    alice.expect("pusher:signin_success").await;
    let mut bob = nodes[1].client().await;
    let ud = json!({"id": "bob"}).to_string();
    bob.send(json!({"event":"pusher:signin","data":{"auth": api.user_auth(&bob.socket_id, &ud), "user_data": ud}})).await;
    bob.expect("pusher:signin_success").await;
    let w = alice.expect("pusher_internal:watchlist_events").await;
    assert_eq!(w.data, json!({"events":[{"name":"online","user_ids":["bob"]}]}));
    // sendToUser from node 3 reaches alice on node 1; terminate from node 3 closes bob on node 2.
    nodes[2].api().trigger(&["#server-to-user-alice"], "dm", "hi").await;
    assert_eq!(alice.expect("dm").await.data, json!("hi"));
    let (status, _) = nodes[2].api().request("POST", "/users/bob/terminate_connections", Some(&json!({})), &[]).await;
    assert_eq!(status, 200);
    bob.expect_close(4009).await;
    let w = alice.expect("pusher_internal:watchlist_events").await;
    assert_eq!(w.data, json!({"events":[{"name":"offline","user_ids":["bob"]}]}));
    // A cache channel's last event reaches a subscriber on another node.
    nodes[1].api().trigger(&["cache-price"], "price", "42").await;
    let mut late = nodes[2].client().await;
    let mut got = None;
    for _ in 0..40 {
        late.subscribe("cache-price").await;
        let f = late.next_frame().await.unwrap();
        if f.event == "price" {
            got = Some(f);
            break;
        }
        late.send(json!({"event":"pusher:unsubscribe","data":{"channel":"cache-price"}})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.expect("the cached event").data, json!(42));
}

#[tokio::test]
async fn one_session_per_host_cluster_wide() {
    let (_redis, nodes) = cluster("t4").await;
    let token = hs256(&agent("1", "web1"), "secret");
    let mut agent_c = Client::connect(&format!("{}&token={token}", nodes[0].ws_url())).await;
    agent_c.subscribe("private-sonde-host.web1").await;
    let v2 = viewer_on(&nodes[1], "web1").await;
    let d = agent_c.expect("sonde:session").await;
    assert_eq!(d.data["state"], "started", "the viewer on node 2 starts the agent on node 1");
    let id = d.data["id"].clone();
    let v3 = viewer_on(&nodes[2], "web1").await;
    for n in &nodes {
        eventually("every node lists the one session", || async {
            let (_, b) = n.api().request("GET", "/sessions", None, &[]).await;
            b["sessions"].as_array().is_some_and(|s| s.len() == 1 && s[0]["id"] == id)
        })
        .await;
    }
    v2.close().await;
    // One viewer remains on node 3: the session goes on, always the same one. (The leader may
    // repeat `started` for the same id when it hears of the agent after starting the session:
    // the protocol makes that a lease extension, not a second session.)
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let d = agent_c.expect("sonde:session").await;
        assert_eq!(d.data["id"], id, "no second session");
        assert_ne!(d.data["state"], "stopped", "no stop while a viewer remains on another node");
    }
    v3.close().await;
    loop {
        let d = agent_c.expect("sonde:session").await;
        if d.data["state"] == "stopped" {
            break;
        }
    }
    // A server-side directive sent to any node reaches the agent.
    let (status, body) = nodes[2].api().request("POST", "/sessions", Some(&json!({"host": "web1", "duration_s": 5})), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_c.expect("sonde:session").await.data["state"], "started");
}

#[tokio::test]
async fn a_dead_node_leaves_no_phantom_members() {
    let (_redis, mut nodes) = cluster("t5").await;
    let ch = "presence-room";
    let (mut watcher, _) = join(&nodes[0], ch, "watcher").await;
    let (_ghost, _) = join(&nodes[2], ch, "ghost").await;
    assert_eq!(watcher.expect("pusher_internal:member_added").await.data["user_id"], "ghost");
    nodes[2].kill();
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data["user_id"], "ghost", "dropped within the node timeout (1.5 s here)");
    let killed = Instant::now();
    eventually("node 2 drops the ghost too", || async {
        let (_, b) = nodes[1].api().request("GET", &format!("/channels/{ch}/users"), None, &[]).await;
        b == json!({"users": [{"id": "watcher"}]})
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(3), "within the node timeout plus a heartbeat");
}

#[tokio::test]
async fn redis_dying_keeps_local_service_and_the_cluster_converges_when_it_returns() {
    let (mut redis, nodes) = cluster("t6").await;
    let mut local = nodes[0].client().await;
    local.subscribe("news").await;
    let mut remote = nodes[1].client().await;
    remote.subscribe("news").await;
    let (mut watcher, _) = join(&nodes[1], "presence-r", "watcher").await;
    let (leaver, _) = join(&nodes[0], "presence-r", "leaver").await;
    assert_eq!(watcher.expect("pusher_internal:member_added").await.data["user_id"], "leaver");
    redis.kill();
    eventually("the adapter reports Redis down", || async {
        let (_, m) = nodes[0].api().raw("GET", "/metrics", vec![]).await;
        m.as_str().unwrap_or_default().contains("sonde_cluster_adapter_up 0")
    })
    .await;
    // Local subscribers are still served.
    let (status, _) = nodes[0].api().trigger(&["news"], "local", "1").await;
    assert_eq!(status, 200);
    local.expect("local").await;
    // This leave happens while Redis is away: node 2 never hears it directly.
    leaver.close().await;
    eventually("node 1 to see the leaver's connection end", || async {
        let (_, m) = nodes[0].api().raw("GET", "/metrics", vec![]).await;
        m.as_str().unwrap_or_default().lines().any(|l| l == "sonde_connections{app=\"1\"} 1")
    })
    .await;
    redis.restart().await;
    for n in &nodes {
        eventually("every adapter back on Redis and synced", || async { n.api().try_get("/readyz").await == Some(200) }).await;
    }
    nodes[2].api().trigger(&["news"], "final", "1").await;
    local.expect("final").await;
    remote.expect("final").await;
    // The resync removed what node 1 no longer has.
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data["user_id"], "leaver");
    let (_, b) = nodes[2].api().request("GET", "/channels/presence-r/users", None, &[]).await;
    assert_eq!(b, json!({"users": [{"id": "watcher"}]}));
}

#[tokio::test]
async fn a_node_that_says_ready_is_already_a_full_member() {
    let redis = RedisServer::start().await;
    let first = RelayNode::start(&redis, "t7").await;
    let (mut member, _) = join(&first, "presence-x", "old").await;
    let mut listener = first.client().await;
    listener.subscribe("news").await;
    // RelayNode::start returns as soon as /readyz answers 200.
    let fresh = RelayNode::start(&redis, "t7").await;
    let (mut newcomer, ok) = join(&fresh, "presence-x", "new").await;
    assert_eq!(ok.data["presence"]["count"], 2, "the new node knew the cluster's members at once: {:?}", ok.data);
    assert_eq!(member.expect("pusher_internal:member_added").await.data["user_id"], "new");
    let mut sub = fresh.client().await;
    sub.subscribe("news").await;
    fresh.api().trigger(&["news"], "from-new", "1").await;
    first.api().trigger(&["news"], "from-old", "1").await;
    listener.expect("from-new").await;
    sub.expect("from-new").await;
    sub.expect("from-old").await;
    newcomer.trigger("presence-x", "client-hi", json!({})).await;
    assert_eq!(member.expect("client-hi").await.user_id.as_deref(), Some("new"));
}

#[tokio::test]
async fn apps_never_mix_across_nodes_and_the_inventory_is_cluster_wide() {
    let (_redis, nodes) = cluster("t8").await;
    let mut app1 = nodes[1].client().await;
    app1.subscribe("news").await;
    let mut app2 = Client::connect(&nodes[1].ws_url2()).await;
    app2.subscribe("news").await;
    nodes[0].api().trigger(&["news"], "for-app-1", "1").await;
    nodes[0].api2().trigger(&["news"], "for-app-2", "2").await;
    assert_eq!(app1.expect("for-app-1").await.data, json!(1));
    assert_eq!(app2.expect("for-app-2").await.data, json!(2));
    nodes[2].api().trigger(&["news"], "marker", "1").await;
    nodes[2].api2().trigger(&["news"], "marker", "2").await;
    app1.expect_only("marker").await;
    let (_, b) = nodes[2].api2().request("GET", "/channels/news", None, &[("info", "subscription_count")]).await;
    assert_eq!(b["subscription_count"], 1, "app 2 counts only its own subscriber: {b}");

    // An agent connected to node 1 is listed by node 3, with its snapshot.
    let token = hs256(&agent("1", "db9"), "secret");
    let mut agent_c = Client::connect(&format!("{}&token={token}", nodes[0].ws_url())).await;
    agent_c.subscribe("private-sonde-host.db9").await;
    let snap = json!({"install_id":"ab","host":"db9","facts":{},"summary":{"cpu_pct":1.0,"load1":0.1,"mem_used_pct":2.0},"custom":{}});
    agent_c.trigger("private-sonde-host.db9", "client-sonde-snapshot", snap.clone()).await;
    eventually("node 3 lists the agent of node 1 with its snapshot", || async {
        let (_, b) = nodes[2].api().request("GET", "/agents", None, &[]).await;
        b["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == "db9" && e["online"] == true && e["snapshot"] == snap))
    })
    .await;
    let (_, b) = nodes[2].api2().request("GET", "/agents", None, &[]).await;
    assert_eq!(b["agents"], json!([]), "another app's inventory stays empty");
    agent_c.close().await;
    eventually("node 3 sees it go offline", || async {
        let (_, b) = nodes[2].api().request("GET", "/agents", None, &[]).await;
        b["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == "db9" && e["online"] == false))
    })
    .await;
}

/// Everything published on a cluster's Redis bus, as raw text, read by a subscriber of it.
struct BusTap(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl BusTap {
    async fn start(redis: &RedisServer, prefix: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", redis.port)).await.expect("connect to redis");
        let channel = format!("{prefix}:bus");
        tcp.write_all(format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n", channel.len()).as_bytes()).await.expect("SUBSCRIBE");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        // Subscribed once Redis has confirmed it.
        let tap = Self(seen);
        eventually("the bus tap subscribed", || async { tap.count("subscribe") > 0 }).await;
        tap
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap()).matches(needle).count()
    }
}

/// A host channel's events cross the bus only while another node has a viewer of that host.
#[tokio::test]
async fn a_host_channel_crosses_the_bus_only_while_another_node_watches_it() {
    let (redis, nodes) = cluster("t9").await;
    let tap = BusTap::start(&redis, "t9").await;
    let token = hs256(&agent("1", "web7"), "secret");
    let mut agent_c = Client::connect(&format!("{}&token={token}", nodes[0].ws_url())).await;
    agent_c.subscribe("private-sonde-host.web7").await;
    let sample = |seq: u64| json!({"ts": seq, "seq": seq, "metrics": {"cpu.user_pct": 1.0}});
    let host_publishes = || tap.count(r#""t":"publish","channel":"private-sonde-host.web7""#);

    // A viewer on the agent's own node: samples reach it, none crosses the bus.
    let mut here = viewer_on(&nodes[0], "web7").await;
    assert_eq!(agent_c.expect("sonde:session").await.data["state"], "started");
    for seq in 1..=5 {
        agent_c.trigger("private-sonde-host.web7", "client-sonde-sample", sample(seq)).await;
        assert_eq!(here.expect("client-sonde-sample").await.data["seq"], seq);
    }
    // A marker on an ordinary channel, published after the samples, bounds the wait.
    let (status, _) = nodes[0].api().trigger(&["marker"], "m", "1").await;
    assert_eq!(status, 200);
    eventually("the marker on the bus", || async { tap.count(r#""channel":"marker""#) == 1 }).await;
    assert_eq!(host_publishes(), 0, "nobody on another node watches web7");

    // A viewer on another node: once node 1 has heard of it, every sample reaches it. (What
    // the agent sends in the moment before is in the history it sends the newcomer: see the
    // next test.)
    let mut there = viewer_on(&nodes[1], "web7").await;
    subscribers_seen(&nodes[0], "private-sonde-host.web7", 3, "node 1 to know node 2's viewer").await;
    for seq in 6..=10 {
        agent_c.trigger("private-sonde-host.web7", "client-sonde-sample", sample(seq)).await;
        here.expect("client-sonde-sample").await;
    }
    let mut got = Vec::new();
    while got.last() != Some(&json!(10)) {
        got.push(there.expect("client-sonde-sample").await.data["seq"].clone());
    }
    assert_eq!(got, (6..=10).map(|s| json!(s)).collect::<Vec<_>>(), "the viewer on node 2 misses nothing");
    // The tap reads the bus on its own time: wait for it to have seen the five.
    eventually("five samples on the bus", || async { host_publishes() >= 5 }).await;
    let crossed = host_publishes();
    assert_eq!(crossed, 5, "each sample crossed once");

    // It leaves: once node 1 knows, samples stay home again.
    there.close().await;
    subscribers_seen(&nodes[0], "private-sonde-host.web7", 2, "node 1 to know node 2 has no viewer").await;
    for seq in 11..=15 {
        agent_c.trigger("private-sonde-host.web7", "client-sonde-sample", sample(seq)).await;
        here.expect("client-sonde-sample").await;
    }
    let (status, _) = nodes[0].api().trigger(&["marker"], "m", "2").await;
    assert_eq!(status, 200);
    eventually("the second marker on the bus", || async { tap.count(r#""channel":"marker""#) == 2 }).await;
    assert_eq!(host_publishes(), crossed, "nothing more crossed after the remote viewer left");
}

/// A real agent streaming through node 1 to a viewer there; a viewer joining on node 2 gets
/// the history and then the live samples with no gap between them, though node 1 sent the
/// host's samples to the bus only from the moment it heard of node 2's viewer.
#[tokio::test]
async fn a_viewer_joining_on_another_node_gets_history_and_live_samples_without_a_gap() {
    let (_redis, nodes) = cluster("t10").await;
    let _agent = sonde_tests::cluster::NodeAgent::spawn(&nodes[0], "web8");
    eventually("the agent online", || async {
        let (_, b) = nodes[0].api().request("GET", "/agents", None, &[]).await;
        b["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == "web8" && e["online"] == true))
    })
    .await;
    let channel = "private-sonde-host.web8";
    let token = hs256(&viewer("1"), "secret");
    let mut first = nodes[0].client().await;
    first.subscribe_auth(channel, &token, None).await;
    for _ in 0..3 {
        first.expect("client-sonde-sample").await;
    }
    let mut late = nodes[1].client().await;
    late.subscribe_auth(channel, &token, None).await;
    let (mut history, mut live) = (Vec::new(), Vec::new());
    let mut parts = None;
    while parts.is_none_or(|p| history.len() < p) || live.len() < 3 {
        let f = late.next_frame().await.expect("the late viewer stays connected");
        match f.event.as_str() {
            "client-sonde-backfill" => {
                parts = f.data["parts"].as_u64().map(|p| p as usize);
                history.push(f.data["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect::<Vec<_>>());
            }
            "client-sonde-sample" => live.push(f.data["seq"].as_u64().unwrap()),
            _ => {}
        }
    }
    let mut seqs: Vec<u64> = history.concat().into_iter().chain(live.iter().copied()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert!(seqs.len() >= 5, "{history:?} {live:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "history {history:?} and live {live:?} leave no gap");
}
