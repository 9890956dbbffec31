//! The Pusher HTTP API, signed like the official SDKs sign it, over real HTTP.

use serde_json::json;
use sonde_protocol::sign;
use sonde_relay::config::AppConfig;
use sonde_tests::relay::now;
use sonde_tests::TestRelay;

#[tokio::test]
async fn events_to_many_channels_with_exclusion_and_info() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    a.subscribe("c1").await;
    b.subscribe("c1").await;
    b.subscribe("c2").await;
    let body = json!({"name":"e","channels":["c1","c2"],"data":"{}","socket_id": a.socket_id, "info":"subscription_count"});
    let (status, resp) = api.request("POST", "/events", Some(&body), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"channels":{"c1":{"subscription_count":2},"c2":{"subscription_count":1}}}));
    b.expect_next("e").await;
    b.expect_next("e").await;
    api.trigger(&["c1"], "marker", "x").await;
    a.expect_only("marker").await;

    let data = json!({"user_id":"u1"}).to_string();
    let mut p = relay.client().await;
    p.subscribe_auth("presence-r", &api.auth(&p.socket_id, "presence-r", Some(&data)), Some(&data)).await;
    p.expect_next("pusher_internal:subscription_succeeded").await;
    let body = json!({"name":"e","channel":"presence-r","data":"x","info":"user_count,subscription_count"});
    let (_, resp) = api.request("POST", "/events", Some(&body), &[]).await;
    assert_eq!(resp, json!({"channels":{"presence-r":{"user_count":1,"subscription_count":1}}}));
}

#[tokio::test]
async fn batch_events() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut a = relay.client().await;
    a.subscribe("c1").await;
    let batch = json!({"batch":[{"name":"one","channel":"c1","data":"1"},{"name":"two","channel":"c1","data":"2","info":"subscription_count"}]});
    let (status, resp) = api.request("POST", "/batch_events", Some(&batch), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"batch":[{},{"subscription_count":1}]}));
    a.expect_next("one").await;
    a.expect_next("two").await;
    let too_many: Vec<_> = (0..11).map(|i| json!({"name":"x","channel":"c1","data":i.to_string()})).collect();
    let (status, resp) = api.request("POST", "/batch_events", Some(&json!({"batch": too_many})), &[]).await;
    assert_eq!(status, 400, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("1 to 10"));
}

#[tokio::test]
async fn channel_queries() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut a = relay.client().await;
    a.subscribe("news").await;
    let mut members = Vec::new();
    for user in ["u1", "u2"] {
        let mut c = relay.client().await;
        let data = json!({"user_id": user}).to_string();
        c.subscribe_auth("presence-room", &api.auth(&c.socket_id, "presence-room", Some(&data)), Some(&data)).await;
        c.expect_next("pusher_internal:subscription_succeeded").await;
        members.push(c);
    }
    let (s, r) = api.request("GET", "/channels", None, &[]).await;
    assert_eq!((s, r), (200, json!({"channels":{"news":{},"presence-room":{}}})));
    let (s, r) = api.request("GET", "/channels", None, &[("filter_by_prefix", "presence-"), ("info", "user_count")]).await;
    assert_eq!((s, r), (200, json!({"channels":{"presence-room":{"user_count":2}}})));
    let (s, r) = api.request("GET", "/channels", None, &[("info", "user_count")]).await;
    assert_eq!(s, 400, "{r}");
    let (s, r) = api.request("GET", "/channels/news", None, &[("info", "subscription_count")]).await;
    assert_eq!((s, r), (200, json!({"occupied":true,"subscription_count":1})));
    let (s, r) = api.request("GET", "/channels/empty", None, &[]).await;
    assert_eq!((s, r), (200, json!({"occupied":false})));
    let (s, _) = api.request("GET", "/channels/news", None, &[("info", "user_count")]).await;
    assert_eq!(s, 400);
    let (s, r) = api.request("GET", "/channels/presence-room/users", None, &[]).await;
    assert_eq!((s, r), (200, json!({"users":[{"id":"u1"},{"id":"u2"}]})));
    let (s, _) = api.request("GET", "/channels/news/users", None, &[]).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn signing_failures_and_limits() {
    let mut disabled = AppConfig::from_flag("2:k2:s2").unwrap();
    disabled.enabled = false;
    let relay = TestRelay::with_apps(vec![AppConfig::from_flag("1:key:secret").unwrap(), disabled]).await;
    let api = relay.api();
    let ev = json!({"name":"e","channel":"c","data":"x"});

    let (s, r) = api.request_at("POST", "/events", Some(&ev), &[], now() - 601).await;
    assert_eq!(s, 401, "stale timestamp: {r}");
    assert!(r["error"].as_str().unwrap().contains("auth_timestamp"));
    let (s, _) = api.request_at("POST", "/events", Some(&ev), &[], now() + 700).await;
    assert_eq!(s, 401, "future timestamp");
    let (s, _) = api.request_at("POST", "/events", Some(&ev), &[], now() - 500).await;
    assert_eq!(s, 200, "within tolerance");

    let body = ev.to_string().into_bytes();
    let q = sign::sign_request("POST", "/apps/1/events", "key", "wrong-secret", now(), &body, &[]);
    let (s, r) = api.raw("POST", &format!("/apps/1/events?{q}"), body.clone()).await;
    assert_eq!(s, 401);
    assert!(r["error"].as_str().unwrap().contains("signature"));

    let q = sign::sign_request("POST", "/apps/1/events", "key", "secret", now(), &body, &[]);
    let (s, r) = api.raw("POST", &format!("/apps/1/events?{q}"), br#"{"name":"e","channel":"c","data":"y"}"#.to_vec()).await;
    assert_eq!(s, 401, "body changed after signing");
    assert!(r["error"].as_str().unwrap().contains("body_md5"));

    let (s, _) = api.raw("POST", "/apps/1/events", body.clone()).await;
    assert_eq!(s, 401, "unsigned");

    let q = sign::sign_request("POST", "/apps/9/events", "key", "secret", now(), &body, &[]);
    let (s, r) = api.raw("POST", &format!("/apps/9/events?{q}"), body).await;
    assert_eq!(s, 404, "{r}");

    let (s, _) = relay.api_for("2").request("POST", "/events", Some(&ev), &[]).await;
    assert_eq!(s, 403, "disabled app");

    let big = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024 + 1)});
    let (s, _) = api.request("POST", "/events", Some(&big), &[]).await;
    assert_eq!(s, 413);
    let channels: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let (s, _) = api.request("POST", "/events", Some(&json!({"name":"e","channels":channels,"data":"x"})), &[]).await;
    assert_eq!(s, 400);
    let (s, _) = api.request("POST", "/events", Some(&json!({"name":"e","channels":["bad name"],"data":"x"})), &[]).await;
    assert_eq!(s, 400);
    let (s, _) = api.request("POST", "/events", Some(&json!({"name":"pusher:x","channel":"c","data":"x"})), &[]).await;
    assert_eq!(s, 400);
    let (s, _) = api.request("POST", "/events", Some(&json!({"name":"e","channel":"c","data":"x","socket_id":"abc"})), &[]).await;
    assert_eq!(s, 400);
    let (s, r) = api.request("POST", "/events", Some(&json!({"nope":1})), &[]).await;
    assert_eq!(s, 400);
    assert!(r["error"].is_string());
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let (s, r) = api.raw("POST", "/apps/1/events", huge).await;
    assert_eq!(s, 413, "{r}");
    assert!(r["error"].is_string());
}

#[tokio::test]
async fn get_with_md5_of_an_empty_body_is_accepted() {
    let relay = TestRelay::spawn().await;
    let md5 = sign::body_md5(b"");
    let (s, r) = relay.api().request("GET", "/channels", None, &[("body_md5", &md5)]).await;
    assert_eq!((s, r), (200, json!({"channels":{}})));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut c = relay.client().await;
    c.subscribe("m").await;
    api.trigger(&["m"], "e", "x").await;
    c.expect_next("e").await;
    let (s, _) = api.raw("GET", "/healthz", vec![]).await;
    assert_eq!(s, 200);
    let (s, _) = api.raw("GET", "/readyz", vec![]).await;
    assert_eq!(s, 200);
    let (s, body) = api.raw("GET", "/metrics", vec![]).await;
    assert_eq!(s, 200);
    let text = body.as_str().unwrap().to_owned();
    assert!(text.contains("sonde_connections{app=\"1\"} 1"), "{text}");
    assert!(text.contains("sonde_subscriptions{app=\"1\"} 1"), "{text}");
    assert!(text.contains("sonde_messages_out_total{app=\"1\"} 1"), "{text}");
    assert!(text.contains("sonde_http_requests_total{app=\"1\",endpoint=\"events\",status=\"200\"} 1"), "{text}");
    assert!(!text.contains("channel="), "never labelled by channel");
    let (s, r) = api.raw("GET", "/nowhere", vec![]).await;
    assert_eq!(s, 404);
    assert!(r["error"].is_string());
}
