//! The real agent process against a real relay: the directive starts the stream, no viewer
//! no stream.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sonde_relay::config::{AppConfig, Config, SessionsConfig};
use sonde_tests::agent::AgentProcess;
use sonde_tests::tokens::{hs256, viewer};
use sonde_tests::{eventually, Client, Frame, TestRelay};

/// How long a wait for something that must happen may take: generous, since the agent, the
/// relay and the test share two busy cores, and the wait ends as soon as it happens.
const PATIENCE: Duration = Duration::from_secs(15);

/// A session streams a sample every second (`interval_ms` 1000), so this long without a
/// message from the agent shows that it is not streaming: a whole interval, and half of one
/// for the sample to land. Checking that nothing happens can only wait; no longer than this.
const QUIET: Duration = Duration::from_millis(1500);

fn quick_sessions() -> SessionsConfig {
    SessionsConfig { grace_ms: 1000, lease_ms: 4000, renew_ms: 1000, interval_ms: 1000 }
}

fn config() -> Config {
    Config { apps: vec![AppConfig::from_flag("1:key:secret").unwrap()], sessions: quick_sessions(), ..Config::default() }
}

async fn viewer_of(relay: &TestRelay, channel: &str) -> Client {
    let mut c = relay.client().await;
    c.subscribe_auth(channel, &hs256(&viewer("1"), "secret"), None).await;
    c.expect_next("pusher_internal:subscription_succeeded").await;
    c
}

/// The next Sonde stream event (backfill or sample), skipping directives and snapshots.
async fn next_data(c: &mut Client) -> Frame {
    loop {
        let f = c.next_frame().await.expect("stream ended");
        if f.event == "client-sonde-backfill" || f.event == "client-sonde-sample" {
            return f;
        }
    }
}

/// Waits until the agent is subscribed to its channel (it shows up online in the inventory).
async fn wait_online(relay: &TestRelay, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
        let online = body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["online"] == true));
        if online {
            return;
        }
        assert!(Instant::now() < deadline, "agent {host} never came online: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn messages_in(relay: &TestRelay) -> u64 {
    let (_, body) = relay.api().raw("GET", "/metrics", vec![]).await;
    let text = body.as_str().unwrap_or_default().to_owned();
    text.lines().find(|l| l.starts_with("sonde_messages_in_total{app=\"1\"}")).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn sessions(relay: &TestRelay) -> serde_json::Value {
    relay.api().request("GET", "/sessions", None, &[]).await.1["sessions"].clone()
}

/// Waits until the relay holds no session.
async fn no_session_left(relay: &TestRelay, why: &str) {
    eventually(&format!("the session to end ({why})"), PATIENCE, || async { sessions(relay).await == json!([]) }).await;
}

/// Asserts that no message reaches the relay for [`QUIET`]; returns the unchanged count.
async fn stays_quiet(relay: &TestRelay, what: &str) -> u64 {
    let before = messages_in(relay).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(messages_in(relay).await, before, "{what}");
    before
}

/// Waits until the agent's ring holds three ticks: a session's backfill carries all but the
/// newest (which goes at once as the first live sample), and the test wants two. The ring is
/// seen only once a session starts, which is what the test checks, so: the agent sends its
/// first snapshot once it is online with two ticks in its ring (rates need two), and the
/// sampler records a tick on each whole second of the wall clock, in well under a second.
/// Once the second whole second after the snapshot begins, the first one's tick is in too.
async fn three_ticks_in_the_ring(relay: &TestRelay, host: &str) {
    eventually(&format!("the first snapshot of {host}"), PATIENCE, || async {
        let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
        body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["snapshot"].is_object()))
    })
    .await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
    tokio::time::sleep(Duration::from_millis((now / 1000 + 2) * 1000 - now)).await;
}

/// Whether `f` is a live sample numbered `seq` or later (numbers count the agent's ticks from
/// 1, and the ring keeps the last 300: a sample numbered n means n ticks in the ring).
fn sample_from(f: &Frame, seq: u64) -> bool {
    f.event == "client-sonde-sample" && f.data["seq"].as_u64().is_some_and(|s| s >= seq)
}

#[tokio::test]
async fn backfill_first_then_a_sample_every_second() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "web1", &[]);
    wait_online(&relay, "web1").await;
    three_ticks_in_the_ring(&relay, "web1").await;
    let mut v = viewer_of(&relay, &agent.channel()).await;
    let first = next_data(&mut v).await;
    assert_eq!(first.event, "client-sonde-backfill", "the backfill comes first");
    let parts = first.data["parts"].as_u64().unwrap();
    let mut backfilled = first.data["samples"].as_array().unwrap().len();
    for _ in 1..parts {
        let f = next_data(&mut v).await;
        assert_eq!(f.event, "client-sonde-backfill");
        backfilled += f.data["samples"].as_array().unwrap().len();
    }
    assert!(backfilled >= 2, "the ring held the last seconds: {backfilled}");
    let mut last: Option<(u64, u64)> = None;
    for _ in 0..4 {
        let s = next_data(&mut v).await;
        assert_eq!(s.event, "client-sonde-sample");
        let (ts, seq) = (s.data["ts"].as_u64().unwrap(), s.data["seq"].as_u64().unwrap());
        for name in ["cpu.user_pct", "cpu.idle_pct", "mem.used_bytes", "mem.available_bytes", "system.load1"] {
            assert!(s.data["metrics"][name].is_number(), "{name} missing in {}", s.data["metrics"]);
        }
        assert!(s.data["top"].as_array().is_some_and(|t| !t.is_empty()), "top processes");
        if let Some((pts, pseq)) = last {
            assert!(seq > pseq, "sequence grows");
            assert!((900..=2100).contains(&(ts - pts)), "one sample per second: {} ms", ts - pts);
        }
        last = Some((ts, seq));
    }
}

#[tokio::test]
async fn two_viewers_one_leaves_the_stream_goes_on_the_last_leaves_it_stops() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "web2", &["--disable-usage-statistics"]);
    wait_online(&relay, "web2").await;
    let mut a = viewer_of(&relay, &agent.channel()).await;
    let b = viewer_of(&relay, &agent.channel()).await;
    while next_data(&mut a).await.event != "client-sonde-sample" {}
    b.close().await;
    for _ in 0..3 {
        assert_eq!(next_data(&mut a).await.event, "client-sonde-sample", "one viewer remains: samples go on");
    }
    a.close().await;
    // After the grace (1 s) the relay stops the session and the agent stops sending.
    no_session_left(&relay, "the last viewer left").await;
    stays_quiet(&relay, "no viewer, no stream").await;
}

#[tokio::test]
async fn a_server_side_directive_streams_with_no_viewer_for_its_duration() {
    let relay = TestRelay::with_config(config()).await;
    let _agent = AgentProcess::spawn(&relay, "db1", &["--disable-usage-statistics"]);
    wait_online(&relay, "db1").await;
    let idle = stays_quiet(&relay, "nothing flows before the directive").await;
    let (status, body) = relay.api().request("POST", "/sessions", Some(&json!({"host":"db1","duration_s":3})), &[]).await;
    assert_eq!(status, 200, "{body}");
    eventually("backfill and samples to flow with no viewer", PATIENCE, || async { messages_in(&relay).await >= idle + 2 }).await;
    // Duration 3 s + grace 1 s, then silence.
    no_session_left(&relay, "its duration passed").await;
    stays_quiet(&relay, "the session ended with its duration").await;
}

#[tokio::test]
async fn relay_restart_the_agent_honours_its_lease_and_comes_back() {
    let relay = TestRelay::with_config(config()).await;
    let addr = relay.addr;
    let agent = AgentProcess::spawn(&relay, "web3", &["--disable-usage-statistics"]);
    wait_online(&relay, "web3").await;
    let mut v = viewer_of(&relay, &agent.channel()).await;
    while next_data(&mut v).await.event != "client-sonde-sample" {}
    relay.stop().await;
    v.expect_close(4200).await;
    // The lease runs out while the relay is away: the agent must stop by itself. Its last
    // renewal came before the stop, and the agent holds a lease 5 s from a renewal's arrival
    // at most (the relay's 4 s, or its own floor of 5 s). Nothing shows the agent's lease from
    // outside while the relay is away, so the relay stays away that long and a margin.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let relay = TestRelay::on(config(), addr).await;
    wait_online(&relay, "web3").await;
    stays_quiet(&relay, "after its lease passed the agent streams nothing without a viewer").await;
    // A viewer resubscribes: the session resumes.
    let mut v = viewer_of(&relay, &agent.channel()).await;
    let mut got_sample = false;
    for _ in 0..20 {
        if next_data(&mut v).await.event == "client-sonde-sample" {
            got_sample = true;
            break;
        }
    }
    assert!(got_sample);
}

#[tokio::test]
async fn statsd_lines_appear_in_the_samples() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "app1", &[]);
    wait_online(&relay, "app1").await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut v = viewer_of(&relay, &agent.channel()).await;
    let sender = tokio::spawn(async move {
        for i in 0..60 {
            let lines = format!("checkout:1|c\nqueue.depth:{i}|g\nlatency:{}|ms|#env:test\nbad line\n", 10 + i % 5);
            udp.send_to(lines.as_bytes(), agent.statsd).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        agent
    });
    // The first samples may cover a second in which the sender had only just begun: look at a
    // few full seconds.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seen: Vec<Frame> = Vec::new();
    while Instant::now() < deadline && seen.len() < 3 {
        let s = next_data(&mut v).await;
        if s.event == "client-sonde-sample" && s.data["metrics"]["app.checkout.count_ps"].as_f64().unwrap_or(0.0) > 0.0 {
            seen.push(s);
        }
    }
    assert_eq!(seen.len(), 3, "statsd metrics reached the viewer");
    let s = seen.pop().unwrap();
    let m = &s.data["metrics"];
    assert!((5.0..=15.0).contains(&m["app.checkout.count_ps"].as_f64().unwrap()), "about 10/s: {m}");
    assert!(m["app.queue.depth"].is_number(), "{m}");
    let p50 = m.as_object().unwrap().iter().find(|(k, _)| k.starts_with("app.latency") && k.ends_with(".p50")).map(|(_, v)| v.as_f64().unwrap());
    assert!(p50.is_some_and(|p| (10.0..=14.0).contains(&p)), "timer percentiles: {m}");
    drop(sender);
}

#[tokio::test]
async fn a_viewer_joining_a_running_session_gets_the_history_alone() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "web5", &["--disable-usage-statistics"]);
    wait_online(&relay, "web5").await;
    let mut first = viewer_of(&relay, &agent.channel()).await;
    // Three ticks in the ring before the late viewer joins.
    while !sample_from(&next_data(&mut first).await, 3) {}
    let mut late = viewer_of(&relay, &agent.channel()).await;
    let f = next_data(&mut late).await;
    assert_eq!(f.event, "client-sonde-backfill", "the late viewer's history comes first");
    assert_eq!(f.data["for"], json!(late.socket_id));
    let parts = f.data["parts"].as_u64().unwrap();
    let mut seqs: Vec<u64> = f.data["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    for _ in 1..parts {
        let f = next_data(&mut late).await;
        assert_eq!(f.event, "client-sonde-backfill");
        seqs.extend(f.data["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()));
    }
    assert!(seqs.len() >= 3 && seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous history: {seqs:?}");
    let live = next_data(&mut late).await;
    assert_eq!(live.event, "client-sonde-sample");
    assert!(live.data["seq"].as_u64().unwrap() > *seqs.last().unwrap(), "live samples continue the history");
    // The first viewer never sees the late viewer's history.
    for _ in 0..2 {
        assert_eq!(next_data(&mut first).await.event, "client-sonde-sample");
    }
}
