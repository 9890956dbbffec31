//! The websocket protocol, over real sockets against a real relay.

use serde_json::json;
use sonde_relay::config::AppConfig;
use sonde_tests::client::Ended;
use sonde_tests::{Client, TestRelay};

#[tokio::test]
async fn handshake_sends_socket_id_and_activity_timeout() {
    let relay = TestRelay::spawn().await;
    let c = relay.client().await;
    let (a, b) = c.socket_id.split_once('.').expect("two parts");
    assert!(!a.is_empty() && a.bytes().all(|x| x.is_ascii_digit()) && b.bytes().all(|x| x.is_ascii_digit()));
    assert_eq!(c.activity_timeout, 120);
}

#[tokio::test]
async fn refusals_close_with_the_protocol_codes() {
    let mut disabled = AppConfig::from_flag("2:off:secret").unwrap();
    disabled.enabled = false;
    let mut full = AppConfig::from_flag("3:full:secret").unwrap();
    full.limits.max_connections = 1;
    let relay = TestRelay::with_apps(vec![AppConfig::from_flag("1:key:secret").unwrap(), disabled, full]).await;
    let _occupant = Client::connect(&relay.ws_url("full")).await;
    let base = format!("ws://{}", relay.addr);
    let cases = [
        (format!("{base}/app/nope?protocol=7"), 4001),
        (format!("{base}/app/off?protocol=7"), 4003),
        (format!("{base}/app/full?protocol=7"), 4004),
        (format!("{base}/app/key"), 4008),
        (format!("{base}/app/key?protocol=3"), 4007),
        (format!("{base}/app/key?protocol=abc"), 4007),
        (format!("{base}/elsewhere?protocol=7"), 4005),
    ];
    for (url, code) in cases {
        let (first, ended) = Client::connect_refused(&url).await;
        let first = first.unwrap_or_else(|| panic!("{url}: no error frame"));
        assert_eq!(first.event, "pusher:error", "{url}");
        assert_eq!(first.data["code"], code, "{url}");
        assert!(matches!(ended, Ended::Closed(c, _) if c == code), "{url}: {ended:?}");
    }
}

#[tokio::test]
async fn public_channel_delivery_and_unsubscribe() {
    let relay = TestRelay::spawn().await;
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    let ok = a.subscribe("news").await;
    assert_eq!(ok.channel.as_deref(), Some("news"));
    b.subscribe("news").await;
    let (status, body) = relay.api().trigger(&["news"], "headline", r#"{"t":"hi"}"#).await;
    assert_eq!((status, body), (200, json!({})));
    for c in [&mut a, &mut b] {
        let f = c.expect_next("headline").await;
        assert!(f.data_was_string);
        assert_eq!(f.data, json!({"t":"hi"}));
    }
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"news"}})).await;
    b.subscribe("marker").await;
    relay.api().trigger(&["news"], "second", "x").await;
    relay.api().trigger(&["marker"], "marker", "x").await;
    b.expect_only("marker").await;
    a.expect_next("second").await;
}

#[tokio::test]
async fn bad_auth_fails_only_that_subscription() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut c = relay.client().await;
    c.subscribe_auth("private-a", "key:0000", None).await;
    let err = c.expect_next("pusher:subscription_error").await;
    assert_eq!(err.channel.as_deref(), Some("private-a"));
    assert_eq!(err.data["status"], 401);
    c.subscribe_auth("private-b", "otherkey:0000", None).await;
    assert!(c.expect_next("pusher:subscription_error").await.data["error"].as_str().unwrap().contains("key"));
    c.subscribe_auth("private-c", &api.auth(&c.socket_id, "private-c", None), None).await;
    c.expect_next("pusher_internal:subscription_succeeded").await;
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-d"}})).await;
    c.expect_next("pusher:subscription_error").await;
    api.trigger(&["private-c", "private-a"], "ev", "1").await;
    let f = c.expect_next("ev").await;
    assert_eq!(f.channel.as_deref(), Some("private-c"), "private-a must not deliver");
}

#[tokio::test]
async fn invalid_names_and_reserved_events_get_errors_not_relays() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let mut a = relay.client().await;
    let mut b = relay.client().await;
    a.subscribe_auth("private-x", &api.auth(&a.socket_id, "private-x", None), None).await;
    a.expect_next("pusher_internal:subscription_succeeded").await;
    b.subscribe_auth("private-x", &api.auth(&b.socket_id, "private-x", None), None).await;
    b.expect_next("pusher_internal:subscription_succeeded").await;
    for bad in ["bad name", "#server-to-user-1x", &"a".repeat(201)] {
        a.send(json!({"event":"pusher:subscribe","data":{"channel":bad}})).await;
        let f = a.expect_next("pusher:subscription_error").await;
        assert_eq!(f.data["status"], if bad.starts_with('#') { 403 } else { 400 }, "{bad}");
    }
    for ev in ["pusher_internal:member_added", "pusher:connection_established", "hello"] {
        a.trigger("private-x", ev, json!({})).await;
        a.expect_next("pusher:error").await;
    }
    a.send_text("not json").await;
    a.expect_next("pusher:error").await;
    a.trigger("private-x", "client-ok", json!({"n":1})).await;
    let f = b.expect_next("client-ok").await;
    assert_eq!(f.data, json!({"n":1}));
}

#[tokio::test]
async fn client_events_rules() {
    let mut no_client = AppConfig::from_flag("2:k2:s2").unwrap();
    no_client.client_events = false;
    let relay = TestRelay::with_apps(vec![AppConfig::from_flag("1:key:secret").unwrap(), no_client]).await;
    let api = relay.api();
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    for c in [&mut a, &mut b] {
        let auth = api.auth(&c.socket_id, "private-room", None);
        c.subscribe_auth("private-room", &auth, None).await;
        c.expect_next("pusher_internal:subscription_succeeded").await;
        c.subscribe("public").await;
    }
    a.trigger("private-room", "client-typing", json!({"who":"a"})).await;
    assert_eq!(b.expect_next("client-typing").await.data, json!({"who":"a"}));
    a.trigger("public", "client-x", json!({})).await;
    assert_eq!(a.expect_next("pusher:error").await.data["code"], 4301);
    a.trigger("private-other", "client-x", json!({})).await;
    assert_eq!(a.expect_next("pusher:error").await.data["code"], 4301, "not subscribed");
    // Never echoed: the sender's next frame is the marker.
    api.trigger(&["public"], "marker", "x").await;
    a.expect_only("marker").await;
    b.expect_only("marker").await;

    // The rate limit: 10/s per connection (burst 10), then 4301 without closing. Sent as fast
    // as the socket takes them; a refill during the burst may let one or two more through.
    for i in 0..20 {
        a.trigger("private-room", "client-burst", json!({"i": i})).await;
    }
    // The relay handles a connection's frames in order: the pong comes after every verdict.
    a.send(json!({"event":"pusher:ping","data":{}})).await;
    let mut rejected = 0;
    loop {
        let f = a.next_frame().await.expect("open");
        match f.event.as_str() {
            "pusher:error" => {
                assert_eq!(f.data["code"], 4301);
                rejected += 1;
            }
            "pusher:pong" => break,
            other => panic!("unexpected {other}"),
        }
    }
    api.trigger(&["public"], "marker", "x").await;
    assert!((9..=11).contains(&rejected), "past the burst of 10, the rest is refused: {rejected}");
    let mut delivered = 0;
    while b.expect("client-burst").await.data["i"].is_number() {
        delivered += 1;
        if delivered == 20 - rejected {
            break;
        }
    }
    b.expect_only("marker").await;

    let mut c2 = Client::connect(&relay.ws_url("k2")).await;
    let api2 = relay.api_for("2");
    c2.subscribe_auth("private-room", &api2.auth(&c2.socket_id, "private-room", None), None).await;
    c2.expect_next("pusher_internal:subscription_succeeded").await;
    c2.trigger("private-room", "client-x", json!({})).await;
    assert!(c2.expect_next("pusher:error").await.data["message"].as_str().unwrap().contains("not enabled"));
}

#[tokio::test]
async fn presence_two_tabs_one_user() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let ch = "presence-room";
    let join = |c: &Client, id: &str| {
        let data = json!({"user_id": id, "user_info": {"name": id}}).to_string();
        (api.auth(&c.socket_id, ch, Some(&data)), data)
    };
    let mut a1 = relay.client().await;
    let (auth, data) = join(&a1, "alice");
    a1.subscribe_auth(ch, &auth, Some(&data)).await;
    let ok = a1.expect_next("pusher_internal:subscription_succeeded").await;
    assert_eq!(ok.data["presence"]["count"], 1);
    let mut a2 = relay.client().await;
    let (auth, data) = join(&a2, "alice");
    a2.subscribe_auth(ch, &auth, Some(&data)).await;
    assert_eq!(a2.expect_next("pusher_internal:subscription_succeeded").await.data["presence"]["ids"], json!(["alice"]));
    let mut b = relay.client().await;
    let (auth, data) = join(&b, "bob");
    b.subscribe_auth(ch, &auth, Some(&data)).await;
    let ok = b.expect_next("pusher_internal:subscription_succeeded").await;
    assert_eq!(ok.data["presence"]["count"], 2);
    assert_eq!(ok.data["presence"]["hash"]["alice"], json!({"name":"alice"}));
    let added = a1.expect_next("pusher_internal:member_added").await;
    assert_eq!(added.data, json!({"user_id":"bob","user_info":{"name":"bob"}}));
    a2.expect_next("pusher_internal:member_added").await;

    let (status, users) = api.request("GET", &format!("/channels/{ch}/users"), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    // Client events on presence carry user_id.
    b.trigger(ch, "client-hi", json!({})).await;
    assert_eq!(a1.expect_next("client-hi").await.user_id.as_deref(), Some("bob"));
    a2.expect_next("client-hi").await;

    a1.close().await;
    api.trigger(&[ch], "marker", "x").await;
    b.expect_only("marker").await;
    a2.close().await;
    let removed = b.expect_next("pusher_internal:member_removed").await;
    assert_eq!(removed.data, json!({"user_id":"alice"}));
}

#[tokio::test]
async fn presence_caps() {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.max_presence_members = 1;
    app.limits.max_presence_member_info_bytes = 10;
    let relay = TestRelay::with_apps(vec![app]).await;
    let api = relay.api();
    let mut a = relay.client().await;
    let big = json!({"user_id":"a","user_info":{"name":"0123456789"}}).to_string();
    a.subscribe_auth("presence-x", &api.auth(&a.socket_id, "presence-x", Some(&big)), Some(&big)).await;
    assert!(a.expect_next("pusher:subscription_error").await.data["error"].as_str().unwrap().contains("larger"));
    let ok = json!({"user_id":"a"}).to_string();
    a.subscribe_auth("presence-x", &api.auth(&a.socket_id, "presence-x", Some(&ok)), Some(&ok)).await;
    a.expect_next("pusher_internal:subscription_succeeded").await;
    let mut b = relay.client().await;
    let other = json!({"user_id":"b"}).to_string();
    b.subscribe_auth("presence-x", &api.auth(&b.socket_id, "presence-x", Some(&other)), Some(&other)).await;
    assert!(b.expect_next("pusher:subscription_error").await.data["error"].as_str().unwrap().contains("full"));
}

#[tokio::test]
async fn cache_channels_replay_or_miss() {
    let relay = TestRelay::spawn().await;
    let mut a = relay.client().await;
    a.subscribe("cache-price").await;
    a.expect_next("pusher:cache_miss").await;
    relay.api().trigger(&["cache-price"], "price", "1").await;
    relay.api().trigger(&["cache-price"], "price", "2").await;
    let mut b = relay.client().await;
    b.subscribe("cache-price").await;
    let f = b.expect_next("price").await;
    assert_eq!(f.data, json!(2));
}

#[tokio::test]
async fn encrypted_channels_relay_ciphertext_and_refuse_client_events() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let ch = "private-encrypted-vault";
    let mut a = relay.client().await;
    a.subscribe_auth(ch, &api.auth(&a.socket_id, ch, None), None).await;
    a.expect_next("pusher_internal:subscription_succeeded").await;
    let payload = r#"{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}"#;
    api.trigger(&[ch], "secret", payload).await;
    assert_eq!(a.expect_next("secret").await.data, json!({"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}));
    a.trigger(ch, "client-x", json!({})).await;
    assert_eq!(a.expect_next("pusher:error").await.data["code"], 4301);
    let (status, _) = api.trigger(&[ch, "other"], "x", "1").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn signin_send_to_user_watchlist_and_terminate() {
    let relay = TestRelay::spawn().await;
    let api = relay.api();
    let signin = |c: &Client, data: &str| json!({"event":"pusher:signin","data":{"auth": api.user_auth(&c.socket_id, data), "user_data": data}});
    let mut alice = relay.client().await;
    let ud = json!({"id":"alice","watchlist":["bob"]}).to_string();
    alice.send(signin(&alice, &ud)).await;
    let ok = alice.expect_next("pusher:signin_success").await;
    assert_eq!(ok.data["user_data"], json!(ud));
    assert_eq!(alice.expect_next("pusher_internal:subscription_succeeded").await.channel.as_deref(), Some("#server-to-user-alice"));
    // pusher-js then subscribes to its server-to-user channel itself: that must succeed.
    alice.send(json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-alice","auth":""}})).await;
    alice.expect_next("pusher_internal:subscription_succeeded").await;
    let mut bob = relay.client().await;
    let ud = json!({"id":"bob"}).to_string();
    bob.send(signin(&bob, &ud)).await;
    bob.expect_next("pusher:signin_success").await;
    let w = alice.expect_next("pusher_internal:watchlist_events").await;
    assert_eq!(w.data, json!({"events":[{"name":"online","user_ids":["bob"]}]}));
    let (status, _) = api.trigger(&["#server-to-user-alice"], "dm", r#"{"from":"server"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(alice.expect_next("dm").await.data, json!({"from":"server"}));
    let (status, _) = api.request("POST", "/users/bob/terminate_connections", Some(&json!({})), &[]).await;
    assert_eq!(status, 200);
    bob.expect_close(4009).await;
    let w = alice.expect_next("pusher_internal:watchlist_events").await;
    assert_eq!(w.data, json!({"events":[{"name":"offline","user_ids":["bob"]}]}));

    let mut mallory = relay.client().await;
    let forged = json!({"event":"pusher:signin","data":{"auth":"key:00","user_data":"{\"id\":\"x\"}"}});
    mallory.send(forged).await;
    assert_eq!(mallory.expect_next("pusher:error").await.data["code"], 4009);
    mallory.expect_close(4009).await;
}

#[tokio::test]
async fn subscription_count_is_opt_in() {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.subscription_count = true;
    let relay = TestRelay::with_apps(vec![app]).await;
    let mut a = relay.client().await;
    a.subscribe("room").await;
    assert_eq!(a.expect_next("pusher_internal:subscription_count").await.data, json!({"subscription_count":1}));
    let mut b = relay.client().await;
    b.subscribe("room").await;
    assert_eq!(a.expect_next("pusher_internal:subscription_count").await.data, json!({"subscription_count":2}));
    let off = TestRelay::spawn().await;
    let mut c = off.client().await;
    c.subscribe("room").await;
    off.api().trigger(&["room"], "marker", "x").await;
    c.expect_only("marker").await;
}

#[tokio::test]
async fn pings_and_oversized_messages() {
    let relay = TestRelay::spawn().await;
    let mut c = relay.client().await;
    c.send(json!({"event":"pusher:ping","data":{}})).await;
    c.expect_next("pusher:pong").await;
    c.send_text(&format!("{{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":\"{}\"}}", "x".repeat(40 * 1024))).await;
    c.expect_close(1009).await;
    let mut d = relay.client().await;
    d.send_raw(tokio_tungstenite::tungstenite::Message::binary(vec![1, 2, 3])).await;
    d.expect_close(1003).await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_4200() {
    let relay = TestRelay::spawn().await;
    let mut c = relay.client().await;
    c.subscribe("x").await;
    let stopping = tokio::spawn(relay.stop());
    c.expect_close(4200).await;
    stopping.await.unwrap();
}

#[tokio::test]
async fn activity_timeout_pings_then_closes_with_4201() {
    use sonde_relay::config::Config;
    let config = Config { apps: vec![AppConfig::from_flag("1:key:secret").unwrap()], activity_timeout_s: 1, pong_timeout_s: 1, ..Config::default() };
    let relay = TestRelay::with_config(config).await;
    let mut silent = relay.client().await;
    let mut polite = relay.client().await;
    assert_eq!(silent.activity_timeout, 1);
    silent.expect_next("pusher:ping").await;
    polite.expect_next("pusher:ping").await;
    polite.send(json!({"event":"pusher:pong","data":{}})).await;
    silent.expect_close(4201).await;
    // The polite client is pinged again rather than closed.
    polite.expect_next("pusher:ping").await;
}
