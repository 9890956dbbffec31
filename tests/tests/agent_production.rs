//! The real agent process under the loads and outages of a production server: custom metrics
//! that would crowd out the host metrics, a flood of tag values, StatsD bursts the kernel
//! drops, exact timer percentiles, a relay and an agent frozen past the session lease.
//! (Expired tokens and rotation: `agent_tokens.rs`.)

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sonde_relay::config::{AppConfig, Config, SessionsConfig};
use sonde_tests::agent::{AgentProcess, RelayProcess};
use sonde_tests::tokens::{hs256, viewer};
use sonde_tests::{Client, Frame, TestRelay};
use tokio::net::UdpSocket;

/// What every sample of this machine carries, whatever custom metrics there are.
const ALWAYS: [&str; 8] =
    ["cpu.user_pct", "cpu.idle_pct", "mem.used_bytes", "mem.available_bytes", "system.load1", "procs.total", "procs.running", "agent.custom_omitted"];

/// How long a relay or an agent stays frozen: past any lease the agent holds (the relay's 4 s,
/// or the agent's floor of 5 s from a renewal's arrival; the last renewal arrived before the
/// freeze), with room for a loaded machine. Nothing shows the lease running out while one side
/// is frozen, so this is a wait, and no longer than the lease needs.
const PAST_THE_LEASE: Duration = Duration::from_millis(6_500);

fn config() -> Config {
    let sessions = SessionsConfig { grace_ms: 1000, lease_ms: 4000, renew_ms: 1000, interval_ms: 1000 };
    Config { apps: vec![AppConfig::from_flag("1:key:secret").unwrap()], sessions, ..Config::default() }
}

async fn viewer_of(relay: &TestRelay, channel: &str) -> Client {
    let mut c = relay.client().await;
    c.subscribe_auth(channel, &hs256(&viewer("1"), "secret"), None).await;
    c.expect_next("pusher_internal:subscription_succeeded").await;
    c
}

async fn wait_online(relay: &TestRelay, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
        if body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["online"] == true)) {
            return;
        }
        assert!(Instant::now() < deadline, "agent {host} never came online: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next live sample, skipping backfill, directives and snapshots.
async fn next_sample(c: &mut Client) -> Frame {
    loop {
        let f = c.next_frame().await.expect("stream ended");
        if f.event == "client-sonde-sample" {
            return f;
        }
    }
}

fn metric(s: &Frame, name: &str) -> Option<f64> {
    s.data["metrics"][name].as_f64()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Bytes of the sample's `data` as it travelled: a JSON string.
fn wire_len(s: &Frame) -> usize {
    serde_json::to_string(&Value::String(s.data.to_string())).unwrap().len()
}

#[tokio::test]
async fn host_metrics_and_the_top_list_stay_in_every_sample_under_a_flood_of_custom_names() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "busy1", &["--disable-usage-statistics"]);
    wait_online(&relay, "busy1").await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut v = viewer_of(&relay, &agent.channel()).await;
    next_sample(&mut v).await;
    // One name of 65,000 characters: rejected, counted, and it takes nothing from the sample.
    udp.send_to(format!("{}:1|c", "n".repeat(65_000)).as_bytes(), agent.statsd).await.unwrap();
    let statsd = agent.statsd;
    let sender = tokio::spawn(async move {
        // 250 new counter names every second, more than a sample holds, all sorting before the
        // host metrics (`app.` < `cpu.`).
        for tenth in 0..120u32 {
            let lines: Vec<String> = (0..25).map(|i| format!("checkout.requests.by_route.r{:05}:1|c", tenth * 25 + i)).collect();
            udp.send_to(lines.join("\n").as_bytes(), statsd).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (mut most_custom, mut most_omitted, mut rejected) = (0, 0.0, 0.0);
    for _ in 0..8 {
        let s = next_sample(&mut v).await;
        for name in ALWAYS {
            assert!(metric(&s, name).is_some(), "{name} missing from {}", s.data["metrics"]);
        }
        assert!(s.data["top"].as_array().is_some_and(|t| !t.is_empty()), "the top list stays: {}", s.data);
        assert!(wire_len(&s) <= 10_240, "{} bytes", wire_len(&s));
        let custom = s.data["metrics"].as_object().unwrap().keys().filter(|k| k.starts_with("app.")).count();
        most_custom = most_custom.max(custom);
        most_omitted = f64::max(most_omitted, metric(&s, "agent.custom_omitted").unwrap());
        rejected += metric(&s, "agent.custom_rejected_ps").unwrap_or(0.0);
    }
    sender.abort();
    assert!(most_custom > 50, "custom metrics share the rest of the budget: at most {most_custom} in a sample");
    assert!(most_omitted >= 50.0, "the sample says what it left out: {most_omitted}");
    assert_eq!(rejected, 1.0, "the long name was rejected and counted");
}

#[tokio::test]
async fn ten_thousand_tag_values_of_one_name_leave_room_for_a_new_name_and_are_counted() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "tags1", &["--disable-usage-statistics"]);
    wait_online(&relay, "tags1").await;
    let mut v = viewer_of(&relay, &agent.channel()).await;
    next_sample(&mut v).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    agent.statsd_lines(&udp, (0..10_000).map(|i| format!("requests:1|c|#user:{i}"))).await;
    agent.statsd_lines(&udp, ["orders.placed:1|c".to_owned()]).await;
    let sent = now_ms();
    let mut dropped = 0.0;
    let mut seen_at = None;
    for _ in 0..3 {
        let s = next_sample(&mut v).await;
        dropped += metric(&s, "agent.custom_dropped_ps").unwrap();
        if metric(&s, "app.orders.placed.count_ps") == Some(1.0) {
            seen_at = Some(s.data["ts"].as_u64().unwrap());
            break;
        }
    }
    let ts = seen_at.expect("the new name was locked out by the tag values of another");
    assert!(ts <= sent + 2000, "it shows up in the sample of the second it was sent in");
    assert!(dropped >= 9_000.0, "the refused tag values are counted: {dropped}");
    for _ in 0..2 {
        let s = next_sample(&mut v).await;
        assert!(metric(&s, "agent.custom_series").unwrap() <= 1024.0);
    }
}

/// The latest snapshot the relay holds for `host`, once `ready` accepts it.
async fn snapshot_where(relay: &TestRelay, host: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
        let snap = body["agents"].as_array().and_then(|a| a.iter().find(|e| e["host"] == host)).map(|e| e["snapshot"].clone());
        if let Some(snap) = snap.filter(|s| ready(s)) {
            return snap;
        }
        assert!(Instant::now() < deadline, "no such snapshot of {host}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn what_the_custom_metric_path_refused_is_in_the_snapshot_too() {
    let relay = TestRelay::with_config(config()).await;
    let addr = relay.addr;
    let agent = AgentProcess::spawn(&relay, "snap1", &[]);
    snapshot_where(&relay, "snap1", |s| s.is_object()).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    agent.statsd_lines(&udp, (0..2_000).map(|i| format!("requests:1|c|#user:{i}"))).await;
    udp.send_to(format!("{}:1|c", "n".repeat(1000)).as_bytes(), agent.statsd).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A relay restart makes the agent send its snapshot at once, instead of within a minute.
    relay.stop().await;
    let relay = TestRelay::on(config(), addr).await;
    let snap = snapshot_where(&relay, "snap1", |s| s["custom"]["agent.custom_dropped"].as_f64().is_some_and(|d| d > 0.0)).await;
    let custom = &snap["custom"];
    assert_eq!(custom["agent.custom_dropped"], 2_000 - 128, "{custom}");
    assert_eq!(custom["agent.custom_rejected"], 1, "{custom}");
    assert_eq!(custom["agent.custom_series"], 128, "{custom}");
    assert_eq!(custom["app.requests{user:0}.count"], 1, "the oldest series first, tag values included: {custom}");
}

#[tokio::test]
async fn datagrams_the_kernel_drops_are_counted_in_the_samples() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "burst1", &["--disable-usage-statistics"]);
    wait_online(&relay, "burst1").await;
    let mut v = viewer_of(&relay, &agent.channel()).await;
    next_sample(&mut v).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Far more than any receive buffer holds, as fast as this process can send.
    let packet = vec!["burst:1|c"; 140].join("\n");
    for _ in 0..40_000 {
        udp.send_to(packet.as_bytes(), agent.statsd).await.unwrap();
    }
    let mut drops = 0.0;
    let mut counted = 0.0;
    for _ in 0..4 {
        let s = next_sample(&mut v).await;
        drops += metric(&s, "agent.statsd_kernel_drops_ps").unwrap();
        counted += metric(&s, "app.burst.count_ps").unwrap_or(0.0);
    }
    assert!(drops > 0.0, "kernel drops counted ({counted} of {} lines arrived)", 40_000 * 140);
    assert!(counted > 0.0 && counted < (40_000 * 140) as f64);
}

#[tokio::test]
async fn timer_percentiles_of_a_thousand_known_values_are_within_one_percent() {
    let relay = TestRelay::with_config(config()).await;
    let agent = AgentProcess::spawn(&relay, "timer1", &["--disable-usage-statistics"]);
    wait_online(&relay, "timer1").await;
    let mut v = viewer_of(&relay, &agent.channel()).await;
    next_sample(&mut v).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for attempt in 0..5 {
        // All 1,000 values inside one second: start just after a second boundary.
        let into_second = now_ms() % 1000;
        tokio::time::sleep(Duration::from_millis((1100 - into_second) % 1000)).await;
        let sent_in = now_ms() / 1000;
        // 1..=1000 ms in a scrambled order.
        agent.statsd_lines(&udp, (0..1000u64).map(|i| format!("checkout.latency:{}|ms", (i * 379) % 1000 + 1))).await;
        if now_ms() / 1000 != sent_in {
            continue;
        }
        let s = loop {
            let s = next_sample(&mut v).await;
            if s.data["ts"].as_u64().unwrap() >= (sent_in + 1) * 1000 {
                break s;
            }
        };
        if metric(&s, "app.checkout.latency.count_ps") != Some(1000.0) {
            assert!(attempt < 4, "the values never landed in one sample");
            continue;
        }
        for (stat, exact) in [("p50", 500.0), ("p90", 900.0), ("p99", 990.0), ("max", 1000.0)] {
            let got = metric(&s, &format!("app.checkout.latency.{stat}")).unwrap();
            assert!((got - exact).abs() <= exact * 0.01, "{stat}: {got}, exactly {exact}");
        }
        return;
    }
    panic!("no second carried all 1,000 values");
}

/// Waits for a live sample of a second at or after `from_ms`; returns it and how long it took.
async fn first_sample_from(v: &mut Client, from_ms: u64) -> (Frame, Duration) {
    let start = Instant::now();
    loop {
        let s = next_sample(v).await;
        if s.data["ts"].as_u64().unwrap() + 1000 >= from_ms {
            return (s, start.elapsed());
        }
    }
}

#[tokio::test]
async fn a_relay_frozen_past_the_lease_gets_samples_again_within_a_second_of_resuming() {
    let relay = RelayProcess::start("").await;
    let token = relay.mint_agent_token("stall1", "1h");
    let agent = AgentProcess::spawn_at(&relay.ws_url(), "stall1", &token, &["--disable-usage-statistics"]);
    relay.wait_online("stall1", Duration::from_secs(15)).await;
    let mut v = relay.viewer(&agent.channel()).await;
    next_sample(&mut v).await;
    relay.pause();
    // The agent's lease runs out while the relay is frozen: it stops on its own.
    tokio::time::sleep(PAST_THE_LEASE).await;
    let resumed = now_ms();
    relay.resume();
    let (s, took) = first_sample_from(&mut v, resumed).await;
    assert!(took <= Duration::from_millis(1500), "samples came back {took:?} after the relay resumed: {}", s.data["ts"]);
    let (_, body) = relay.api().request("GET", "/sessions", None, &[]).await;
    assert_eq!(body["sessions"][0]["viewers"], 1, "{body}");
    for _ in 0..2 {
        let next = next_sample(&mut v).await;
        assert!(next.data["ts"].as_u64().unwrap() > s.data["ts"].as_u64().unwrap(), "and they go on");
    }
}

#[tokio::test]
async fn an_agent_frozen_past_the_lease_streams_again_when_it_resumes() {
    let relay = RelayProcess::start("").await;
    let token = relay.mint_agent_token("stall2", "1h");
    let agent = AgentProcess::spawn_at(&relay.ws_url(), "stall2", &token, &["--disable-usage-statistics"]);
    relay.wait_online("stall2", Duration::from_secs(15)).await;
    let mut v = relay.viewer(&agent.channel()).await;
    next_sample(&mut v).await;
    agent.signal("STOP");
    tokio::time::sleep(PAST_THE_LEASE).await;
    let resumed = now_ms();
    agent.signal("CONT");
    let (_, took) = first_sample_from(&mut v, resumed).await;
    assert!(took <= Duration::from_millis(1500), "samples came back {took:?} after the agent resumed");
    next_sample(&mut v).await;
}
