//! Seeing inside the relay through its real edges: the latency histograms on `/metrics`, the
//! flight recorder read per app (signed) and relay-wide (operator token), session starts, slow
//! consumers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sonde_relay::config::{AppConfig, Config};
use sonde_relay::insight::RecorderConfig;
use sonde_tests::raw::{Frame, RawWs};
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Api, Client, TestRelay};

fn apps() -> Vec<AppConfig> {
    vec![AppConfig::from_flag("1:key:secret").unwrap(), AppConfig::from_flag("2:key2:secret2").unwrap()]
}

/// Every publish is "slow": the recorder keeps them all.
fn recording_everything() -> RecorderConfig {
    RecorderConfig { slow_publish_ms: 0, ..RecorderConfig::default() }
}

async fn metrics(api: &Api) -> String {
    let (status, body) = api.raw("GET", "/metrics", vec![]).await;
    assert_eq!(status, 200);
    body.as_str().expect("text").to_owned()
}

/// The value of one sample line of `/metrics` (`name{labels}`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Waits until `series` on `/metrics` reaches `at_least`.
async fn metric_reaches(api: &Api, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + sonde_tests::WAIT;
    loop {
        let text = metrics(api).await;
        match sample(&text, series) {
            Some(v) if v >= at_least => return v,
            _ if Instant::now() > deadline => panic!("{series} never reached {at_least}:\n{text}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn subscribed(relay: &TestRelay, channel: &str, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = relay.client().await;
        c.subscribe(channel).await;
        out.push(c);
    }
    out
}

fn kinds(events: &Value) -> Vec<&str> {
    events["events"].as_array().expect("events").iter().map(|e| e["kind"].as_str().unwrap_or("")).collect()
}

#[tokio::test]
async fn publish_to_write_is_timed_per_pass_and_slow_publishes_are_kept_per_app() {
    let relay = TestRelay::with_config(Config { apps: apps(), recorder: recording_everything(), ..Config::default() }).await;
    let api = relay.api();
    let mut small = subscribed(&relay, "room", 3).await;
    // Past 16 subscribers a channel is written by the fan-out lanes.
    let mut large = subscribed(&relay, "hall", 20).await;
    assert_eq!(api.trigger(&["room"], "ev", "x").await.0, 200);
    assert_eq!(api.trigger(&["hall"], "ev", "y").await.0, 200);
    for c in small.iter_mut().chain(large.iter_mut()) {
        c.expect_next("ev").await;
    }
    metric_reaches(&api, r#"sonde_publish_write_seconds_count{app="1",pass="direct"}"#, 1.0).await;
    metric_reaches(&api, r#"sonde_publish_write_seconds_count{app="1",pass="lanes"}"#, 1.0).await;

    let (status, body) = api.request("GET", "/debug/slow", None, &[]).await;
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().expect("events");
    let room = events.iter().find(|e| e["channel"] == "room").expect("the small channel's publish");
    assert_eq!(
        (room["kind"].as_str(), room["pass"].as_str(), room["subscribers"].as_u64(), room["app"].as_str()),
        (Some("slow_publish"), Some("direct"), Some(3), Some("1"))
    );
    let hall: Vec<&Value> = events.iter().filter(|e| e["channel"] == "hall").collect();
    assert!(!hall.is_empty() && hall.iter().all(|e| e["pass"] == "lanes"), "{body}");
    assert_eq!(hall.iter().map(|e| e["subscribers"].as_u64().unwrap()).sum::<u64>(), 20, "the lanes' shares add up: {body}");

    let (status, other) = relay.api_for("2").request("GET", "/debug/slow", None, &[]).await;
    assert_eq!(status, 200);
    assert!(kinds(&other).iter().all(|k| *k != "slow_publish"), "app 2 sees none of app 1's events: {other}");
    let (status, _) = api.raw("GET", "/apps/1/debug/slow", vec![]).await;
    assert_eq!(status, 401, "unsigned");
    let (status, body) = api.request("GET", "/debug/slow", None, &[("limit", "1")]).await;
    assert_eq!((status, body["events"].as_array().map(Vec::len)), (200, Some(1)), "limit");
}

fn operator_token(app: &str, secret: &str) -> String {
    let claims = sonde_relay::tokens::role_claims(app, "operator", None, None, Duration::from_secs(600)).unwrap();
    sonde_relay::tokens::mint_hs256(&claims, secret)
}

async fn get_bearer(relay: &TestRelay, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("http://{}/debug/slow", relay.addr));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_operator_token_reads_every_apps_events() {
    let relay = TestRelay::with_config(Config { apps: apps(), recorder: recording_everything(), ..Config::default() }).await;
    let mut one = subscribed(&relay, "a", 1).await;
    let mut two = Client::connect(&relay.ws_url("key2")).await;
    two.subscribe("b").await;
    relay.api().trigger(&["a"], "ev", "1").await;
    relay.api_for("2").trigger(&["b"], "ev", "2").await;
    one[0].expect_next("ev").await;
    two.expect_next("ev").await;

    let (status, body) = get_bearer(&relay, Some(&operator_token("2", "secret2"))).await;
    assert_eq!(status, 200, "{body}");
    let apps: Vec<&str> = body["events"].as_array().unwrap().iter().filter_map(|e| e["app"].as_str()).collect();
    assert!(apps.contains(&"1") && apps.contains(&"2"), "relay-wide: {body}");

    assert_eq!(get_bearer(&relay, None).await.0, 401, "no token");
    assert_eq!(get_bearer(&relay, Some(&operator_token("2", "not-the-secret"))).await.0, 401, "forged");
    assert_eq!(get_bearer(&relay, Some(&hs256(&viewer("1"), "secret"))).await.0, 403, "a viewer is not an operator");
    assert_eq!(get_bearer(&relay, Some("junk")).await.0, 401);
}

/// Every handshake over the threshold (0 ms here: all of them) is kept, relay-wide.
#[tokio::test]
async fn a_slow_websocket_handshake_is_recorded() {
    let recorder = RecorderConfig { slow_handshake_ms: 0, ..RecorderConfig::default() };
    let relay = TestRelay::with_config(Config { apps: apps(), recorder, ..Config::default() }).await;
    let _one = subscribed(&relay, "a", 1).await;
    let (status, body) = get_bearer(&relay, Some(&operator_token("1", "secret"))).await;
    assert_eq!(status, 200, "{body}");
    let e = body["events"].as_array().unwrap().iter().find(|e| e["kind"] == "slow_handshake").cloned().unwrap_or_else(|| panic!("{body}"));
    assert_eq!((e["tls"].as_bool(), e["peer"].as_str()), (Some(false), Some("127.0.0.1")), "{e}");
}

#[tokio::test]
async fn a_session_start_is_timed_from_subscribe_to_the_first_sample() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let token = hs256(&agent("1", "web1"), "secret");
    let mut ag = Client::connect(&format!("{}&token={token}", relay.ws_url("key"))).await;
    ag.subscribe("private-sonde-host.web1").await;
    let mut v = relay.client().await;
    v.subscribe_auth("private-sonde-host.web1", &hs256(&viewer("1"), "secret"), None).await;
    v.expect_next("pusher_internal:subscription_succeeded").await;
    ag.expect_next("sonde:session").await;
    let series = r#"sonde_session_start_seconds_count{app="1"}"#;
    assert_eq!(sample(&metrics(&api).await, series).unwrap_or(0.0), 0.0, "no sample yet");
    for seq in 1..=2 {
        ag.trigger("private-sonde-host.web1", "client-sonde-sample", json!({"ts": seq, "seq": seq, "metrics": {"cpu.user_pct": 1.0}})).await;
        v.expect("client-sonde-sample").await;
    }
    assert_eq!(sample(&metrics(&api).await, series), Some(1.0), "one viewer, timed once");
}

/// A reader that stops reading while big events keep coming is closed, counted and recorded.
#[tokio::test]
async fn a_slow_consumer_is_counted_and_recorded_with_its_queue() {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.max_payload_bytes = 200 * 1024;
    app.limits.max_message_bytes = 256 * 1024;
    app.limits.max_outbox_bytes = 256 * 1024;
    let relay = TestRelay::with_apps(vec![app]).await;
    let api = relay.api();
    let mut ws = RawWs::open(relay.addr, "key").await;
    ws.send(&Frame::text(json!({"event": "pusher:subscribe", "data": {"channel": "firehose"}}).to_string())).await;
    // Subscribed once its count shows; from here on the socket is never read.
    metric_reaches(&api, r#"sonde_subscriptions{app="1"}"#, 1.0).await;
    let payload = "x".repeat(190 * 1024);
    let series = r#"sonde_slow_consumer_resets_total{app="1"}"#;
    let mut sent = 0;
    while sample(&metrics(&api).await, series).unwrap_or(0.0) < 1.0 {
        assert!(sent < 2_000, "never closed after {sent} events");
        let (status, body) = api.trigger(&["firehose"], "big", &payload).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
    }
    let (_, body) = api.request("GET", "/debug/slow", None, &[]).await;
    let e = body["events"].as_array().unwrap().iter().find(|e| e["kind"] == "slow_consumer").cloned().unwrap_or_else(|| panic!("{body}"));
    assert!(e["queued_bytes"].as_u64().unwrap() > 0 && e["socket"].as_str().is_some_and(|s| s.contains('.')), "{e}");
    drop(ws);
}

/// A message from one node is timed when another applies it; losing Redis is counted.
#[tokio::test]
async fn the_cluster_bus_is_timed_and_redis_reconnects_are_counted() {
    use sonde_tests::cluster::{RedisServer, RelayNode};
    let mut redis = RedisServer::start().await;
    let a = RelayNode::start(&redis, "obs").await;
    let b = RelayNode::start(&redis, "obs").await;
    let mut c = b.client().await;
    c.subscribe("room").await;
    assert_eq!(a.api().trigger(&["room"], "ev", "x").await.0, 200);
    c.expect("ev").await;
    metric_reaches(&b.api(), r#"sonde_cluster_bus_latency_seconds_count{app="1"}"#, 1.0).await;
    assert_eq!(sample(&metrics(&b.api()).await, "sonde_cluster_redis_reconnects_total"), Some(0.0));
    redis.kill();
    metric_reaches(&b.api(), "sonde_cluster_redis_reconnects_total", 1.0).await;
    redis.restart().await;
    b.wait_ready().await;
}

/// SIGUSR1 dumps the recorder to the log; without a handler it would end the process.
#[tokio::test]
async fn sigusr1_dumps_the_recorder_and_the_relay_keeps_serving() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(sonde_tests::agent::workspace_bin("sonde-relay"))
        .args(["--app", "1:key:secret", "--bind", &format!("127.0.0.1:{port}")])
        .env("SONDE_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn sonde-relay");
    let api = Api { base: format!("http://127.0.0.1:{port}"), id: "1".into(), key: "key".into(), secret: "secret".into(), http: reqwest::Client::new() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.try_get("/healthz").await != Some(200) {
        assert!(Instant::now() < deadline, "the relay never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        sonde_tests::agent::signal(child.id(), "USR1");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(child.try_wait().unwrap().is_none(), "SIGUSR1 ended the relay");
        assert_eq!(api.try_get("/healthz").await, Some(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}
