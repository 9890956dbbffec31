//! A dashboard subscribing to an inventory many times larger than its connection's outbox
//! gets the whole list, page by page as it reads, the last page marked; then only updates.
//! (Queued at once, such a list overflowed the outbox and the relay closed the dashboard.)

use std::time::Duration;

use serde_json::{json, Value};
use sonde_relay::config::AppConfig;
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Client, TestRelay};

const AGENTS: usize = 300;
/// Far below the list: ~300 snapshots of ~8 KB.
const OUTBOX: usize = 128 * 1024;

/// A snapshot of about 8 KB (an agent with many custom metrics).
fn snapshot(host: &str) -> Value {
    let custom: serde_json::Map<String, Value> = (0..300).map(|i| (format!("app.metric_{i:03}.count"), json!(i))).collect();
    json!({"install_id": "0".repeat(32), "host": host,
        "facts": {"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0", "cores": 4, "mem_total_bytes": 8_000_000_000u64, "agent_version": "0.1.0"},
        "summary": {"cpu_pct": 12.5, "load1": 0.3, "mem_used_pct": 40.0}, "custom": custom})
}

async fn connect_agent(relay: &TestRelay, host: &str) -> Client {
    let token = hs256(&agent("1", host), "secret");
    let mut c = Client::connect(&format!("{}&token={token}", relay.ws_url("key"))).await;
    let channel = format!("private-sonde-host.{host}");
    c.subscribe(&channel).await;
    c.send(json!({"event": "client-sonde-snapshot", "channel": channel, "data": snapshot(host)})).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_the_outbox_arrives_whole_in_pages() {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.max_outbox_bytes = OUTBOX;
    let relay = TestRelay::with_apps(vec![app]).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(connect_agent(&relay, &format!("host-{i:03}")).await);
    }
    let token = hs256(&viewer("1"), "secret");
    let mut dash = Client::connect(&relay.ws_url("key")).await;
    // Everything is listed with its snapshot before the dashboard subscribes.
    let api = relay.api();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = api.request("GET", "/agents", None, &[]).await;
        let with = body["agents"].as_array().map_or(0, |a| a.iter().filter(|e| e["snapshot"].is_object()).count());
        if with == AGENTS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{with} of {AGENTS} snapshots recorded: {}", body.to_string().chars().take(300).collect::<String>());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dash.subscribe_auth("private-sonde-inventory", &token, None).await;
    // A slow reader: the whole list is ready long before it reads anything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut hosts, mut pages, mut bytes) = (std::collections::BTreeSet::new(), 0, 0);
    loop {
        let f = dash.next_frame().await.expect("the relay kept the dashboard");
        // Updates of the last second may come between pages: the list is what is checked.
        if f.event != "sonde:inventory" || f.data["full"] != true {
            continue;
        }
        pages += 1;
        let len = f.data.to_string().len();
        assert!(len < OUTBOX / 4 + 10 * 1024, "a page of {len} B: pages are bounded in bytes too");
        bytes += len;
        for a in f.data["agents"].as_array().unwrap() {
            assert!(a["online"] == true && a["snapshot"]["custom"].is_object(), "{}", a["host"]);
            hosts.insert(a["host"].as_str().unwrap().to_owned());
        }
        if f.data["last"] == true {
            break;
        }
    }
    assert!(bytes > 4 * OUTBOX, "the list ({bytes} B) is much larger than the outbox");
    assert_eq!(hosts.len(), AGENTS, "every host listed once");
    assert!(pages > AGENTS.div_ceil(100), "{pages} pages: more than 100 hosts a page would need");
    // After the list, an agent leaving is an update naming it.
    agents.pop().unwrap().close().await;
    loop {
        let f = dash.expect("sonde:inventory").await;
        assert_eq!(f.data["full"], false, "no full list again");
        // Snapshots recorded just before still trickle out, half an outbox a flush.
        assert!(f.data.to_string().len() < OUTBOX / 2 + 10 * 1024, "an update is bounded too");
        let named = f.data["agents"].as_array().unwrap();
        if let Some(a) = named.iter().find(|a| a["host"] == "host-299") {
            assert_eq!(a["online"], false);
            break;
        }
    }
    // Every agent sends a new snapshot at once: ~2.4 MB of updates, 38 times what one flush
    // may queue (half the outbox). A dashboard that reads gets them flush after flush as its
    // outbox empties, not one flush a second (which would take 38 s).
    let started = tokio::time::Instant::now();
    let mut burst = 0;
    for (i, a) in agents.iter_mut().enumerate() {
        let host = format!("host-{i:03}");
        let mut snap = snapshot(&host);
        snap["summary"]["cpu_pct"] = json!(99.0);
        let msg = json!({"event": "client-sonde-snapshot", "channel": format!("private-sonde-host.{host}"), "data": snap});
        burst += msg.to_string().len();
        a.send(msg).await;
    }
    let mut updated = std::collections::BTreeSet::new();
    while updated.len() < agents.len() {
        let f = dash.expect("sonde:inventory").await;
        assert!(f.data.to_string().len() < OUTBOX / 2 + 10 * 1024, "an update is bounded");
        for a in f.data["agents"].as_array().unwrap() {
            if a["snapshot"]["summary"]["cpu_pct"] == 99.0 {
                updated.insert(a["host"].as_str().unwrap().to_owned());
            }
        }
    }
    let one_flush_a_second = Duration::from_secs((burst / (OUTBOX / 2)) as u64);
    let took = started.elapsed();
    assert!(took < one_flush_a_second / 2, "{burst} B of updates took {took:?} (one flush a second: {one_flush_a_second:?})");
}
