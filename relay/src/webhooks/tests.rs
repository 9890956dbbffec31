//! Routing, the cluster duty and delivery (through a real local HTTP receiver).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_protocol::webhook::signature;
use sonde_protocol::{ChannelName, SocketId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::hub::{Conn, Hub, HubOptions, Lanes, PresenceUser};

fn app(toml_targets: &str, batch_ms: u64) -> AppConfig {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    #[derive(serde::Deserialize)]
    struct T {
        webhooks: Vec<WebhookConfig>,
    }
    app.webhooks = toml::from_str::<T>(toml_targets).unwrap().webhooks;
    app.webhook_batch_ms = batch_ms;
    app
}

fn hub_with(w: &Arc<Webhooks>) -> Hub {
    let hub = Hub::new(HubOptions { subscription_count: false, max_presence_members: 10, cache_ttl: Duration::from_secs(60) }, Lanes::start(Some(1)).unwrap());
    hub.observe(w.clone());
    hub
}

/// The names (and channels) of what each target has queued, oldest first per lane.
fn queued(w: &Webhooks) -> Vec<Vec<String>> {
    w.targets
        .iter()
        .map(|t| {
            t.lanes
                .iter()
                .flat_map(|l| l.take(usize::MAX, usize::MAX))
                .map(|e| {
                    let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
                    let extra = v.get("user_id").or(v.get("subscription_count")).map(|x| format!(" {x}")).unwrap_or_default();
                    format!("{} {}{extra}", v["name"].as_str().unwrap(), v["channel"].as_str().unwrap())
                })
                .collect()
        })
        .collect()
}

fn member(id: &str) -> Option<PresenceUser> {
    Some(PresenceUser { user_id: id.into(), user_info: None })
}

const TWO_TARGETS: &str = r#"
[[webhooks]]
url = "http://127.0.0.1:9/a"
event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
channel_prefix = "presence-"
[[webhooks]]
url = "http://127.0.0.1:9/b"
event_types = ["subscription_count", "client_event", "cache_miss"]
"#;

#[test]
fn events_reach_the_targets_that_take_them_in_order() {
    let w = Webhooks::new(&app(TWO_TARGETS, 0), &WebhookSettings { connections_per_target: 1, ..Default::default() }, &Metrics::default()).unwrap();
    let hub = hub_with(&w);
    let room = ChannelName::parse("presence-room").unwrap();
    let plain = ChannelName::parse("cache-news").unwrap();
    let (a1, a2, b) = (Conn::new(SocketId::new(1, 1), 1 << 20, 0), Conn::new(SocketId::new(2, 2), 1 << 20, 0), Conn::new(SocketId::new(3, 3), 1 << 20, 0));
    hub.subscribe(&a1, &room, member("alice")).unwrap();
    hub.subscribe(&a2, &room, member("alice")).unwrap();
    hub.subscribe(&b, &plain, None).unwrap();
    w.client_event(&room, "client-typing", r#""{\"n\":1}""#, a1.socket_id, Some("alice"));
    w.client_event(&room, "client-sonde-sample", r#""{}""#, a1.socket_id, None);
    hub.unsubscribe(&a1, &room);
    hub.unsubscribe(&a2, &room);
    hub.unsubscribe(&b, &plain);
    let q = queued(&w);
    assert_eq!(
        q[0],
        ["channel_occupied presence-room", "member_added presence-room \"alice\"", "member_removed presence-room \"alice\"", "channel_vacated presence-room"],
        "one member for two tabs; cache-news is filtered out by the prefix"
    );
    assert_eq!(
        q[1],
        [
            "subscription_count presence-room 1",
            "subscription_count presence-room 2",
            "cache_miss cache-news",
            "subscription_count cache-news 1",
            "client_event presence-room \"alice\"",
            "subscription_count presence-room 1",
            "subscription_count presence-room 0",
            "subscription_count cache-news 0"
        ],
        "Sonde's own client events are left out"
    );
}

#[test]
fn a_follower_keeps_cluster_events_until_the_leader_has_them() {
    let w = Webhooks::new(&app(TWO_TARGETS, 0), &WebhookSettings::default(), &Metrics::default()).unwrap();
    let hub = hub_with(&w);
    let room = ChannelName::parse("presence-room").unwrap();
    let node: crate::hub::NodeId = "n2".into();
    w.set_role(Role::Follower);
    hub.remote_count(&node, &room, 1);
    hub.remote_join(&node, &room, "bob".into(), None);
    w.client_event(&room, "client-x", r#""{}""#, SocketId::new(1, 1), None);
    assert_eq!(queued(&w), [vec![], vec!["client_event presence-room".to_owned()]], "only what happened here goes out at once");
    w.leader_beat();
    w.leader_beat();
    assert_eq!(w.duty.lock().pending.len(), 0, "the leader had them");
    // The leader dies: its departure is seen here, and this node takes the lease.
    hub.drop_node(&node);
    assert_eq!(queued(&w), [Vec::<String>::new(), vec![]]);
    w.set_role(Role::Leader { term: 7, until: Instant::now() + Duration::from_secs(5) });
    assert_eq!(queued(&w)[0], ["member_removed presence-room \"bob\"", "channel_vacated presence-room"]);
    hub.remote_count(&node, &room, 2);
    assert_eq!(queued(&w)[0], ["channel_occupied presence-room"], "a leader sends at once");
    w.leave_cluster();
    hub.remote_count(&node, &room, 0);
    assert_eq!(queued(&w)[0], Vec::<String>::new(), "a leaving node leaves it to the next leader");
}

#[test]
fn what_a_syncing_node_learns_is_not_sent_when_it_leads() {
    let w = Webhooks::new(&app(TWO_TARGETS, 0), &WebhookSettings::default(), &Metrics::default()).unwrap();
    let hub = hub_with(&w);
    let room = ChannelName::parse("presence-room").unwrap();
    let node: crate::hub::NodeId = "n2".into();
    w.set_role(Role::Follower);
    // Joining: the others' state arrives as transitions.
    hub.remote_count(&node, &room, 3);
    hub.remote_join(&node, &room, "bob".into(), None);
    w.forget_pending();
    w.set_role(Role::Leader { term: 3, until: Instant::now() + Duration::from_secs(5) });
    assert_eq!(queued(&w)[0], Vec::<String>::new());
    hub.remote_leave(&node, &room, "bob");
    assert_eq!(queued(&w)[0], ["member_removed presence-room \"bob\""]);
}

/// A receiver answering each request with the next status of `script` (the last one again
/// when it runs out; 0 = never answer); every request (headers as sent, body) is sent to the
/// returned channel with the time it came.
async fn receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(Instant, Vec<(String, String)>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (tx, script, count) = (tx.clone(), script.clone(), count.clone());
            tokio::spawn(async move {
                while let Some((headers, body)) = read_request(&mut sock).await {
                    let _ = tx.send((Instant::now(), headers, body));
                    let i = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let status = *script.get(i).or(script.last()).unwrap();
                    if status == 0 {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

pub(super) async fn read_request<S: AsyncRead + Unpin>(sock: &mut S) -> Option<(Vec<(String, String)>, String)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> =
        head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, String::from_utf8(body).unwrap()))
}

/// A header by its exact name (Pusher's spelling, which the PHP SDK looks up).
pub(super) fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

pub(super) fn fast() -> WebhookSettings {
    WebhookSettings { timeout_ms: 300, initial_backoff_ms: 40, max_backoff_ms: 1000, retry_window_s: 5, ..Default::default() }
}

pub(super) async fn started(targets: &str, batch_ms: u64, settings: &WebhookSettings, metrics: &Metrics) -> (Arc<Webhooks>, CancellationToken) {
    let w = Webhooks::new(&app(targets, batch_ms), settings, metrics).unwrap();
    let stop = CancellationToken::new();
    w.start(&client(settings), &stop);
    (w, stop)
}

#[tokio::test]
async fn signed_requests_retried_with_growing_delays_then_delivered() {
    let (url, mut rx) = receiver(vec![500, 503, 0, 200]).await;
    let targets = format!("[[webhooks]]\nurl = \"{url}\"\nevent_types = [\"client_event\"]\nheaders = {{ \"X-Env\" = \"test\" }}\n");
    let metrics = Metrics::default();
    let (w, stop) = started(&targets, 0, &fast(), &metrics).await;
    let ch = ChannelName::parse("private-a").unwrap();
    w.client_event(&ch, "client-x", r#""{\"n\":1}""#, SocketId::new(1, 2), None);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
    }
    let (_, headers, body) = &seen[3];
    assert_eq!(header(headers, "X-Pusher-Key"), "key");
    assert_eq!(header(headers, "X-Pusher-Signature"), signature("secret", body));
    assert_eq!(header(headers, "Content-Type"), "application/json");
    assert_eq!(header(headers, "X-Env"), "test");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["events"], serde_json::json!([{"name":"client_event","channel":"private-a","event":"client-x","data":"{\"n\":1}","socket_id":"1.2"}]));
    let gaps: Vec<Duration> = seen.windows(2).map(|p| p[1].0 - p[0].0).collect();
    // Retry n waits within [40 ms × 2^(n-1) / 2, 40 ms × 2^(n-1)]; the third attempt hung
    // until the 300 ms timeout.
    assert!(gaps[0] >= Duration::from_millis(20) && gaps[1] >= Duration::from_millis(40), "growing delays: {gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(300 + 80), "the hung request timed out, then a longer delay: {gaps:?}");
    stop.cancel();
    let text = metrics.encode();
    assert!(text.contains(&format!("sonde_webhook_retries_total{{app=\"1\",target=\"{}\"}} 3", url_label(&url))), "{text}");
    assert!(text.contains("outcome=\"timeout\"} 1") && text.contains("outcome=\"http_5xx\"} 2"), "{text}");
}

fn url_label(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches("/hooks").to_owned()
}

#[tokio::test]
async fn events_close_together_share_a_request() {
    let (url, mut rx) = receiver(vec![200]).await;
    let targets = format!("[[webhooks]]\nurl = \"{url}\"\nevent_types = [\"client_event\"]\n");
    let (w, stop) = started(&targets, 100, &fast(), &Metrics::default()).await;
    for i in 0..5 {
        let ch = ChannelName::parse(&format!("private-{i}")).unwrap();
        w.client_event(&ch, "client-x", &format!("\"{i}\""), SocketId::new(1, 2), None);
    }
    let (_, _, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["0", "1", "2", "3", "4"], "one request for every channel, in order");
    stop.cancel();
}

#[tokio::test]
async fn a_target_failing_past_the_window_drops_and_counts() {
    let (url, mut rx) = receiver(vec![500]).await;
    let targets = format!("[[webhooks]]\nurl = \"{url}\"\nevent_types = [\"client_event\"]\n");
    let settings = WebhookSettings { retry_window_s: 0, ..fast() };
    let metrics = Metrics::default();
    let (w, stop) = started(&targets, 0, &settings, &metrics).await;
    let ch = ChannelName::parse("private-a").unwrap();
    w.client_event(&ch, "client-x", "\"1\"", SocketId::new(1, 2), None);
    w.client_event(&ch, "client-x", "\"2\"", SocketId::new(1, 2), None);
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    }
    let want = format!("sonde_webhook_dropped_events_total{{app=\"1\",target=\"{}\",reason=\"retry_window\"}} 2", url_label(&url));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics.encode().contains(&want) {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
}
