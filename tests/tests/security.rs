//! Tokens and abuse limits, tried over real sockets with the exact outcome checked.

use serde_json::json;
use sonde_relay::config::AppConfig;
use sonde_tests::client::Ended;
use sonde_tests::tokens::{self, agent, expiring_in, forged, hs256, signed_with, viewer};
use sonde_tests::{Client, TestRelay};

fn app(spec: &str) -> AppConfig {
    let mut a = AppConfig::from_flag(spec).unwrap();
    a.public_keys = tokens::public_keys();
    a
}

async fn relay() -> TestRelay {
    TestRelay::with_apps(vec![app("1:key:secret"), AppConfig::from_flag("2:key2:secret2").unwrap()]).await
}

async fn subscribe_with(c: &mut Client, channel: &str, token: &str) -> sonde_tests::Frame {
    c.subscribe_auth(channel, token, None).await;
    // Directives of the sessions these subscriptions start are not what these tests check.
    loop {
        let f = c.next_frame().await.expect("a reply");
        if f.event == "sonde:session" {
            continue;
        }
        assert_eq!(f.channel.as_deref(), Some(channel), "{f:?}");
        return f;
    }
}

#[tokio::test]
async fn every_token_rejection_fails_only_that_subscription() {
    let relay = relay().await;
    let host = "private-sonde-host.web1";
    let mut other_app = viewer("2");
    other_app.app = "2".into();
    let mut not_yet = viewer("1");
    not_yet.nbf = Some(sonde_relay::tokens::now_s() + 600);
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", forged(r#"{"alg":"none","typ":"JWT"}"#, &viewer("1"), ""), "none"),
        ("unregistered alg", forged(r#"{"alg":"HS512","typ":"JWT"}"#, &viewer("1"), "x"), "not registered"),
        ("alg confusion", tokens::hs256_with_public_key(&viewer("1")), "signature"),
        ("bad signature", hs256(&viewer("1"), "not-the-secret"), "signature"),
        ("foreign key", signed_with(&viewer("1"), "attacker-rsa"), "signature"),
        ("expired", hs256(&expiring_in(viewer("1"), -3600), "secret"), "expired"),
        ("not yet valid", hs256(&not_yet, "secret"), "not valid yet"),
        ("another app", hs256(&other_app, "secret2"), "app 2"),
        ("malformed", "a.b.c".to_owned(), "malformed"),
    ];
    let mut c = relay.client().await;
    for (what, token, message) in &cases {
        let f = subscribe_with(&mut c, host, token).await;
        assert_eq!(f.event, "pusher:subscription_error", "{what}");
        assert_eq!(f.data["status"], 401, "{what}");
        let error = f.data["error"].as_str().unwrap().to_lowercase();
        assert!(error.contains(message), "{what}: {error}");
    }
    // The socket is still fine, and a good token works on it.
    let f = subscribe_with(&mut c, host, &hs256(&viewer("1"), "secret")).await;
    assert_eq!(f.event, "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn public_key_tokens_are_accepted() {
    let relay = relay().await;
    let mut c = relay.client().await;
    for key in ["rsa", "ec", "ed"] {
        let ch = format!("private-sonde-host.{key}");
        let f = subscribe_with(&mut c, &ch, &signed_with(&viewer("1"), key)).await;
        assert_eq!(f.event, "pusher_internal:subscription_succeeded", "{key}");
    }
}

#[tokio::test]
async fn capabilities_isolate_hosts_apps_and_roles() {
    let relay = relay().await;
    // web1's agent token on web2's channel.
    let mut c = relay.client().await;
    let f = subscribe_with(&mut c, "private-sonde-host.web2", &hs256(&agent("1", "web1"), "secret")).await;
    assert_eq!(f.event, "pusher:subscription_error");
    assert!(f.data["error"].as_str().unwrap().contains("does not allow subscribing"));
    // App 1's token on app 2 (even one signed with app 2's secret but naming app 1).
    let mut c2 = Client::connect(&relay.ws_url("key2")).await;
    let f = subscribe_with(&mut c2, "private-sonde-host.web1", &hs256(&viewer("1"), "secret")).await;
    assert!(f.data["error"].as_str().unwrap().contains("app 1"), "{f:?}");
    let f = subscribe_with(&mut c2, "private-sonde-host.web1", &hs256(&viewer("1"), "secret2")).await;
    assert_eq!(f.event, "pusher:subscription_error");
    // A viewer may not publish, even where the app allows client events.
    let mut v = relay.client().await;
    subscribe_with(&mut v, "private-sonde-host.web1", &hs256(&viewer("1"), "secret")).await;
    v.trigger("private-sonde-host.web1", "client-sonde-sample", json!({})).await;
    let f = v.expect("pusher:error").await;
    assert_eq!(f.data["code"], 4301);
    assert!(f.data["message"].as_str().unwrap().contains("does not allow publishing"));
}

#[tokio::test]
async fn agent_token_on_the_url_streams_even_without_client_events() {
    let mut a = app("1:key:secret");
    a.client_events = false;
    let relay = TestRelay::with_apps(vec![a]).await;
    let token = hs256(&agent("1", "web1"), "secret");
    let mut agent = Client::connect(&format!("{}&token={token}", relay.ws_url("key"))).await;
    agent.subscribe("private-sonde-host.web1").await;
    agent.send(json!({"event":"pusher:subscribe","data":{"channel":"private-sonde-host.web2"}})).await;
    let f = agent.expect_next("pusher:subscription_error").await;
    assert_eq!(f.channel.as_deref(), Some("private-sonde-host.web2"));
    let mut viewer_c = relay.client().await;
    subscribe_with(&mut viewer_c, "private-sonde-host.web1", &hs256(&viewer("1"), "secret")).await;
    // A burst above the plain 10/s limit: the token's own limit (100/s, burst 200) applies.
    for seq in 0..50 {
        agent.trigger("private-sonde-host.web1", "client-sonde-backfill", json!({"seq": seq})).await;
    }
    for seq in 0..50 {
        assert_eq!(viewer_c.expect("client-sonde-backfill").await.data["seq"], seq);
    }
    // HMAC-authorised clients still follow the app switch.
    let mut plain = relay.client().await;
    let auth = relay.api().auth(&plain.socket_id, "private-room", None);
    plain.subscribe_auth("private-room", &auth, None).await;
    plain.expect_next("pusher_internal:subscription_succeeded").await;
    plain.trigger("private-room", "client-x", json!({})).await;
    assert!(plain.expect_next("pusher:error").await.data["message"].as_str().unwrap().contains("not enabled"));
}

#[tokio::test]
async fn bad_url_tokens_are_refused_with_4009() {
    let relay = relay().await;
    for token in [hs256(&viewer("1"), "wrong"), hs256(&expiring_in(viewer("1"), -3600), "secret"), "junk".to_owned()] {
        let (first, ended) = Client::connect_refused(&format!("{}&token={token}", relay.ws_url("key"))).await;
        assert_eq!(first.unwrap().data["code"], 4009);
        assert!(matches!(ended, Ended::Closed(4009, _)), "{ended:?}");
    }
}

#[tokio::test]
async fn presence_user_comes_from_the_token() {
    let relay = relay().await;
    let mut claims = viewer("1");
    claims.sub = "alice".into();
    claims.subscribe.push("presence-ops".into());
    claims.user_info = Some(json!({"name":"Alice"}));
    let token = hs256(&claims, "secret");
    let mut c = relay.client().await;
    c.subscribe_auth("presence-ops", &token, Some(r#"{"user_id":"mallory"}"#)).await;
    let f = c.expect_next("pusher:subscription_error").await;
    assert!(f.data["error"].as_str().unwrap().contains("does not match the token subject"), "{f:?}");
    c.subscribe_auth("presence-ops", &token, None).await;
    let f = c.expect_next("pusher_internal:subscription_succeeded").await;
    assert_eq!(f.data["presence"]["hash"], json!({"alice":{"name":"Alice"}}), "the member is the token's subject");
    let mut d = relay.client().await;
    d.subscribe_auth("presence-ops", &token, Some(r#"{"user_id":"alice","user_info":{"name":"ignored"}}"#)).await;
    d.expect_next("pusher_internal:subscription_succeeded").await;
}

#[tokio::test]
async fn signin_with_a_token() {
    let relay = relay().await;
    let mut claims = viewer("1");
    claims.sub = "42".into();
    let token = hs256(&claims, "secret");
    let mut c = relay.client().await;
    c.send(json!({"event":"pusher:signin","data":{"auth": token, "user_data": "{\"id\":\"42\"}"}})).await;
    c.expect_next("pusher:signin_success").await;
    let mut d = relay.client().await;
    d.send(json!({"event":"pusher:signin","data":{"auth": token, "user_data": "{\"id\":\"43\"}"}})).await;
    assert_eq!(d.expect_next("pusher:error").await.data["code"], 4009);
    d.expect_close(4009).await;
}

#[tokio::test]
async fn an_expiring_token_closes_with_4102_and_is_refused_from_then_on() {
    let mut a = app("1:key:secret");
    a.token_leeway_s = 0;
    let relay = TestRelay::with_apps(vec![a]).await;
    let mut c = relay.client().await;
    let token = hs256(&expiring_in(viewer("1"), 2), "secret");
    subscribe_with(&mut c, "private-sonde-host.web1", &token).await;
    let started = std::time::Instant::now();
    c.expect_close(4102).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "closed at expiry, not at once");
    // Reconnecting with the same token gets nowhere: no storm of accepted-then-closed connections.
    let mut again = relay.client().await;
    again.subscribe_auth("private-sonde-host.web1", &token, None).await;
    let err = again.expect("pusher:subscription_error").await;
    assert!(err.data.to_string().contains("expired"), "{err:?}");
    let (first, ended) = Client::connect_refused(&format!("{}&token={token}", relay.ws_url("key"))).await;
    assert_eq!(first.unwrap().data["code"], 4009);
    assert!(matches!(ended, Ended::Closed(4009, _)), "{ended:?}");
}

#[tokio::test]
async fn abuse_limits() {
    let mut a = app("1:key:secret");
    a.limits.max_channels_per_connection = 2;
    a.limits.new_connections_per_second_per_ip = 3;
    a.limits.http_requests_per_second = 2;
    a.allowed_origins = vec!["https://ok.example".into()];
    let relay = TestRelay::with_apps(vec![a]).await;
    let url = relay.ws_url("key");
    // Origin: a browser from elsewhere is refused with 4009; allowed origin passes.
    let bad = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).map(|mut r| {
        r.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
        r
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(bad.unwrap()).await.unwrap();
    use futures_util::StreamExt;
    let mut closed = None;
    while let Some(Ok(m)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(Some(f)) = m {
            closed = Some(u16::from(f.code));
        }
    }
    assert_eq!(closed, Some(4009));
    let good = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).map(|mut r| {
        r.headers_mut().insert("origin", "https://ok.example".parse().unwrap());
        r
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(good.unwrap()).await.unwrap();
    let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(first.contains("connection_established"), "{first}");
    // Connections per IP per second: 3 allowed (the two above used two), the next refused.
    let mut refused = 0;
    for _ in 0..3 {
        let good = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).map(|mut r| {
            r.headers_mut().insert("origin", "https://ok.example".parse().unwrap());
            r
        });
        let (mut ws, _) = tokio_tungstenite::connect_async(good.unwrap()).await.unwrap();
        let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
        if first.contains("4100") {
            refused += 1;
        }
    }
    assert!(refused >= 1, "the per-IP connection rate must refuse with 4100");
    // HTTP API: 2/s, then 429 with a JSON error.
    let api = relay.api();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.request("GET", "/channels", None, &[]).await);
    }
    assert!(statuses.iter().any(|(s, b)| *s == 429 && b["error"].is_string()), "{statuses:?}");
    let (_, metrics) = api.raw("GET", "/metrics", vec![]).await;
    let text = metrics.as_str().unwrap();
    for limit in ["allowed_origins", "connections_per_ip", "http_requests"] {
        assert!(text.contains(&format!("sonde_limit_rejections_total{{app=\"1\",limit=\"{limit}\"}}")), "{limit}: {text}");
    }
}

#[tokio::test]
async fn channels_per_connection_limit() {
    let mut a = app("1:key:secret");
    a.limits.max_channels_per_connection = 2;
    let relay = TestRelay::with_apps(vec![a]).await;
    let mut c = relay.client().await;
    c.subscribe("a").await;
    c.subscribe("b").await;
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"c"}})).await;
    let f = c.expect_next("pusher:subscription_error").await;
    assert!(f.data["error"].as_str().unwrap().contains("at most 2"));
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"a"}})).await;
    c.subscribe("c").await;
}

#[tokio::test]
async fn an_agent_backfill_reaches_only_a_viewer_of_its_own_host() {
    let relay = relay().await;
    let token = hs256(&agent("1", "web1"), "secret");
    let mut agent = Client::connect(&format!("{}&token={token}", relay.ws_url("key"))).await;
    agent.subscribe("private-sonde-host.web1").await;
    let mut other = relay.client().await;
    subscribe_with(&mut other, "private-sonde-host.web2", &hs256(&viewer("1"), "secret")).await;
    let mut mine = relay.client().await;
    subscribe_with(&mut mine, "private-sonde-host.web1", &hs256(&viewer("1"), "secret")).await;
    // Addressed to a socket that watches another host: refused, nothing delivered.
    let stray = json!({ "for": other.socket_id, "samples": [] }).to_string();
    agent.trigger("private-sonde-host.web1", "client-sonde-backfill", json!(stray)).await;
    let f = agent.expect("pusher:error").await;
    assert_eq!(f.data["code"], 4301);
    assert!(f.data["message"].as_str().unwrap().contains("not subscribed"), "{f:?}");
    relay.api().request("POST", "/events", Some(&json!({ "name": "marker", "channel": "private-sonde-host.web2", "data": "{}" })), &[]).await;
    loop {
        let f = other.next_frame().await.expect("a frame");
        assert_ne!(f.event, "client-sonde-backfill", "a backfill reached a viewer of another host");
        if f.event == "marker" {
            break;
        }
    }
    // Addressed to a viewer of its own host: delivered to that viewer.
    let own = json!({ "for": mine.socket_id, "samples": [] }).to_string();
    agent.trigger("private-sonde-host.web1", "client-sonde-backfill", json!(own)).await;
    let f = mine.expect("client-sonde-backfill").await;
    assert_eq!(f.channel.as_deref(), Some("private-sonde-host.web1"));
}
