//! The session controller and the inventory through real sockets, with a protocol-level
//! agent (the real agent process is driven in `agent_e2e.rs`).

use serde_json::json;
use sonde_relay::config::AppConfig;
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Client, TestRelay};

async fn agent_client(relay: &TestRelay, host: &str) -> Client {
    let token = hs256(&agent("1", host), "secret");
    let mut c = Client::connect(&format!("{}&token={token}", relay.ws_url("key"))).await;
    c.subscribe(&format!("private-sonde-host.{host}")).await;
    c
}

async fn viewer_client(relay: &TestRelay, host: &str) -> Client {
    let mut c = relay.client().await;
    let ch = format!("private-sonde-host.{host}");
    c.subscribe_auth(&ch, &hs256(&viewer("1"), "secret"), None).await;
    c.expect_next("pusher_internal:subscription_succeeded").await;
    c
}

#[tokio::test]
async fn a_viewer_starts_the_session_and_the_agent_gets_the_directive() {
    let relay = TestRelay::spawn().await;
    let mut agent = agent_client(&relay, "web1").await;
    let (status, body) = relay.api().request("GET", "/sessions", None, &[]).await;
    assert_eq!((status, body), (200, json!({"sessions": []})), "no viewer, no session");
    let mut v = viewer_client(&relay, "web1").await;
    let d = agent.expect_next("sonde:session").await;
    assert_eq!(d.data["state"], "started");
    assert_eq!(d.data["interval_ms"], 1000);
    assert!(d.data["lease_until"].as_u64().unwrap() > sonde_relay::tokens::now_s() * 1000);
    // Viewers see the directive too, and then the agent's samples.
    assert_eq!(v.expect_next("sonde:session").await.data["id"], d.data["id"]);
    agent.trigger("private-sonde-host.web1", "client-sonde-sample", json!({"ts": 1, "seq": 1, "metrics": {"cpu.user_pct": 3.5}})).await;
    let s = v.expect_next("client-sonde-sample").await;
    assert_eq!(s.data["metrics"]["cpu.user_pct"], 3.5);
    let (_, body) = relay.api().request("GET", "/sessions", None, &[]).await;
    assert_eq!(body["sessions"][0]["host"], "web1");
    assert_eq!(body["sessions"][0]["viewers"], 1);
    assert_eq!(body["sessions"][0]["id"], d.data["id"]);
}

#[tokio::test]
async fn an_agent_connecting_to_a_watched_host_gets_the_directive_at_once() {
    let relay = TestRelay::spawn().await;
    let _v = viewer_client(&relay, "web1").await;
    let mut agent = agent_client(&relay, "web1").await;
    assert_eq!(agent.expect_next("sonde:session").await.data["state"], "started");
}

#[tokio::test]
async fn server_side_directive_and_stop() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut agent = agent_client(&relay, "db1").await;
    let (status, body) = api.request("POST", "/sessions", Some(&json!({"host":"db1","duration_s":30})), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["host"], "db1");
    assert!(body["until"].as_u64().unwrap() >= body["started"].as_u64().unwrap() + 30_000);
    let d = agent.expect_next("sonde:session").await;
    assert_eq!((d.data["state"].as_str(), &d.data["id"]), (Some("started"), &body["id"]));
    let (status, _) = api.request("DELETE", "/sessions/db1", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(agent.expect_next("sonde:session").await.data["state"], "stopped");
    let (status, body) = api.request("DELETE", "/sessions/db1", None, &[]).await;
    assert_eq!(status, 404, "{body}");
    for (bad, want) in [(json!({"host":"bad host"}), 400), (json!({"host":"x","duration_s":0}), 400), (json!({"nohost":1}), 400)] {
        let (status, body) = api.request("POST", "/sessions", Some(&bad), &[]).await;
        assert_eq!(status, want, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn a_viewer_token_cannot_start_a_session_over_http() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let token = hs256(&viewer("1"), "secret");
    let url = format!("{}/apps/1/sessions", api.base);
    for req in [
        api.http.post(&url).bearer_auth(&token).json(&json!({"host":"web1"})),
        api.http.post(format!("{url}?token={token}")).json(&json!({"host":"web1"})),
        api.http.post(format!("{url}?auth_key=key&auth_signature={token}")).json(&json!({"host":"web1"})),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].is_string());
    }
    let (_, body) = api.request("GET", "/sessions", None, &[]).await;
    assert_eq!(body["sessions"], json!([]));
}

#[tokio::test]
async fn the_last_viewer_leaving_stops_the_session_after_the_grace() {
    // Grace, lease and renewal shortened through the app's timing to keep the test quick.
    let relay = TestRelay::with_session_timing(
        vec![AppConfig::from_flag("1:key:secret").unwrap()],
        sonde_relay::config::SessionsConfig { grace_ms: 600, lease_ms: 3000, renew_ms: 500, interval_ms: 1000 },
    )
    .await;
    let mut agent = agent_client(&relay, "web1").await;
    let v1 = viewer_client(&relay, "web1").await;
    let v2 = viewer_client(&relay, "web1").await;
    assert_eq!(agent.expect_next("sonde:session").await.data["state"], "started");
    let history = agent.expect_next("sonde:session").await;
    assert_eq!(history.data["state"], "backfill", "the second viewer asks for the history");
    assert_eq!(history.data["for"], json!(v2.socket_id));
    v1.close().await;
    let renewed = agent.expect_next("sonde:session").await;
    assert_eq!(renewed.data["state"], "renewed", "one viewer remains: the session goes on");
    v2.close().await;
    let mut states = Vec::new();
    loop {
        let d = agent.expect_next("sonde:session").await;
        states.push(d.data["state"].as_str().unwrap().to_owned());
        if d.data["state"] == "stopped" {
            break;
        }
    }
    assert!(states.len() <= 3, "stopped within the grace: {states:?}");
}

#[tokio::test]
async fn inventory_lists_agents_and_snapshots_for_dashboards() {
    let relay = TestRelay::spawn().await;
    let mut dash = relay.client().await;
    dash.subscribe_auth("private-sonde-inventory", &hs256(&viewer("1"), "secret"), None).await;
    dash.expect_next("pusher_internal:subscription_succeeded").await;
    let full = dash.expect_next("sonde:inventory").await;
    assert_eq!(full.data, json!({"full": true, "last": true, "agents": []}), "an empty list is one page, the last");
    let mut agent = agent_client(&relay, "web1").await;
    let snap = json!({"install_id":"00ff","host":"web1","facts":{"os":"linux"},"summary":{"cpu_pct":1.0,"load1":0.1,"mem_used_pct":20.0},"custom":{}});
    agent.trigger("private-sonde-host.web1", "client-sonde-snapshot", snap.clone()).await;
    let mut seen = None;
    for _ in 0..3 {
        let d = dash.expect_next("sonde:inventory").await;
        assert_eq!(d.data["full"], false);
        let e = d.data["agents"][0].clone();
        if e["snapshot"] != json!(null) {
            seen = Some(e);
            break;
        }
    }
    let e = seen.expect("the snapshot reaches the dashboard");
    assert_eq!((e["host"].as_str(), e["online"].as_bool(), &e["snapshot"]), (Some("web1"), Some(true), &snap));
    let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
    assert_eq!(body["agents"][0]["host"], "web1");
    agent.close().await;
    let d = dash.expect_next("sonde:inventory").await;
    assert_eq!(d.data["agents"][0]["online"], false);
}
