//! The relay's own state on `private-sonde-relay`: published once a second only while an
//! operator is subscribed, like an agent that streams only while a viewer watches.

use std::time::{Duration, Instant};

use sonde_tests::{Api, Client, TestRelay};

const CHANNEL: &str = "private-sonde-relay";
const PUBLISHED: &str = "sonde_relay_states_published_total";
/// The relay publishes its state once a second while watched, so this long without a new one
/// shows that it publishes none: a whole second, and half of one for the state to be counted.
/// Checking that nothing happens can only wait; no longer than this.
const QUIET: Duration = Duration::from_millis(1_500);

async fn published(api: &Api) -> f64 {
    let (_, body) = api.raw("GET", "/metrics", vec![]).await;
    let text = body.as_str().expect("text").to_owned();
    text.lines().find_map(|l| l.strip_prefix(PUBLISHED).and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("{PUBLISHED} missing:\n{text}"))
}

fn operator(app: &str, secret: &str) -> String {
    let claims = sonde_relay::tokens::role_claims(app, "operator", None, None, Duration::from_secs(600)).unwrap();
    sonde_relay::tokens::mint_hs256(&claims, secret)
}

/// Waits until the relay's subscription gauge for app 1 says `n`.
async fn subscriptions_are(api: &Api, n: u32) {
    let want = format!("sonde_subscriptions{{app=\"1\"}} {n}");
    let deadline = Instant::now() + sonde_tests::WAIT;
    loop {
        let (_, body) = api.raw("GET", "/metrics", vec![]).await;
        if body.as_str().is_some_and(|t| t.lines().any(|l| l == want)) {
            return;
        }
        assert!(Instant::now() < deadline, "never {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_relay_publishes_its_state_only_while_an_operator_watches() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    // A tick with nobody watching: nothing is published.
    tokio::time::sleep(QUIET).await;
    assert_eq!(published(&api).await, 0.0, "unwatched");

    let mut op = Client::connect(&format!("{}&token={}", relay.ws_url("key"), operator("1", "secret"))).await;
    op.subscribe_auth(CHANNEL, &operator("1", "secret"), None).await;
    op.expect_next("pusher_internal:subscription_succeeded").await;
    let first = op.expect("sonde:relay").await;
    let second = op.expect("sonde:relay").await;
    assert_eq!(first.data["node"], "local");
    assert_eq!(first.data["cluster_nodes"], 1);
    assert!(first.data["connections"].as_i64().unwrap() >= 1, "{:?}", first.data);
    assert!(second.data["ts_ms"].as_u64() > first.data["ts_ms"].as_u64(), "a new state each second");

    // The app's HMAC signature is not enough for the relay's own channel.
    let mut plain = relay.client().await;
    let auth = api.auth(&plain.socket_id, CHANNEL, None);
    plain.subscribe_auth(CHANNEL, &auth, None).await;
    plain.expect_next("pusher:subscription_error").await;

    op.close().await;
    subscriptions_are(&api, 0).await;
    let stopped = published(&api).await;
    assert!(stopped >= 2.0);
    tokio::time::sleep(QUIET).await;
    assert_eq!(published(&api).await, stopped, "the last watcher gone, publishing stopped");
}

/// In a cluster every node publishes its own line while an operator on any node watches.
#[tokio::test]
async fn each_cluster_node_publishes_its_own_line() {
    use sonde_tests::cluster::{RedisServer, RelayNode};
    let redis = RedisServer::start().await;
    let a = RelayNode::start_as(&redis, "page", Some("node-a")).await;
    let _b = RelayNode::start_as(&redis, "page", Some("node-b")).await;
    let token = operator("1", "secret");
    let mut op = Client::connect(&format!("{}&token={token}", a.ws_url())).await;
    op.subscribe_auth(CHANNEL, &token, None).await;
    op.expect_next("pusher_internal:subscription_succeeded").await;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "lines from {seen:?} only");
        let state = op.expect("sonde:relay").await;
        assert_eq!(state.data["cluster_nodes"], 2, "{:?}", state.data);
        seen.insert(state.data["node"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["node-a", "node-b"]);
}
