//! The edge through real sockets: the socket cap and the health sockets beyond it,
//! per-address limits, deadlines on slow and silent clients, failed authentications per
//! address, trusted proxies, and the app's rate limit charged only after authentication.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sonde_relay::config::{AppConfig, Config, EdgeConfig};
use sonde_tests::raw::{http_exchange, metric, sockets_open, upgrade_request, RawWs};
use sonde_tests::TestRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn relay_with(edge: EdgeConfig, trusted: &[&str]) -> TestRelay {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.http_requests_per_second = 3;
    let trusted_proxies = trusted.iter().map(|s| (*s).to_owned()).collect();
    TestRelay::with_config(Config { apps: vec![app], edge, trusted_proxies, io_threads: Some(1), ..Config::default() }).await
}

async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// What the relay answers on `tcp` within a second: its first bytes, or "" when it closed
/// or said nothing.
async fn answer(tcp: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn at_the_socket_cap_health_and_metrics_still_answer_and_others_are_refused() {
    let edge = EdgeConfig { max_sockets: 4, health_sockets: 2, max_sockets_per_ip: 0, max_handshakes_per_ip: 0, ..EdgeConfig::default() };
    let relay = relay_with(edge, &[]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(RawWs::open(relay.addr, "key").await);
    }
    // Past the cap: a websocket is refused with 503 ...
    let refused = http_exchange(relay.addr, upgrade_request("key", "").as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("connection capacity"), "{refused}");
    // ... while health and metrics are served on the sockets kept for them.
    let health = http_exchange(relay.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok"), "{health}");
    let metrics = http_exchange(relay.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(metrics.contains("sonde_edge_refused_total{reason=\"socket_cap\"}"), "{metrics}");
    // Established clients keep working.
    for ws in &mut held {
        ws.ping_pusher().await;
    }
    // Slots come back when connections end.
    drop(held);
    sockets_open(relay.addr, 1, "the four websockets closed").await;
    let mut again = RawWs::open(relay.addr, "key").await;
    again.ping_pusher().await;
}

#[tokio::test]
async fn the_metrics_listener_answers_whatever_the_public_one_faces() {
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.max_connections = 0;
    let edge = EdgeConfig { max_sockets: 2, health_sockets: 0, max_sockets_per_ip: 0, max_handshakes_per_ip: 0, ..EdgeConfig::default() };
    let relay = TestRelay::with_config(Config { apps: vec![app], edge, metrics_bind: Some(metrics_addr), io_threads: Some(1), ..Config::default() }).await;
    // The public listener is full, with no health sockets beyond its cap.
    let _held = [RawWs::open(relay.addr, "key").await, RawWs::open(relay.addr, "key").await];
    let refused = http_exchange(relay.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // The metrics listener serves health, readiness and metrics, and nothing else.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = http_exchange(metrics_addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    let metrics = http_exchange(metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(metrics.contains("sonde_connections{app=\"1\"} 2"), "{metrics}");
    for request in ["GET /app/key?protocol=7 HTTP/1.1", "GET /apps/1/channels HTTP/1.1", "GET / HTTP/1.1"] {
        let answer = http_exchange(metrics_addr, format!("{request}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{request}: {answer}");
    }
}

#[tokio::test]
async fn per_address_socket_and_handshake_limits() {
    let edge = EdgeConfig { max_sockets_per_ip: 3, max_handshakes_per_ip: 2, ..EdgeConfig::default() };
    let relay = relay_with(edge, &[]).await;
    // Two silent sockets from one address are two handshakes in progress: a third is refused.
    let mut silent = vec![connect_from("127.0.0.21", relay.addr).await, connect_from("127.0.0.21", relay.addr).await];
    sockets_open(relay.addr, 3, "both silent sockets admitted").await;
    let mut third = connect_from("127.0.0.21", relay.addr).await;
    assert!(answer(&mut third).await.starts_with("HTTP/1.1 429"), "handshakes per address");
    // Another address is not affected.
    let mut other = RawWs::open(relay.addr, "key").await;
    other.ping_pusher().await;
    // Finished handshakes no longer count, but sockets do: 3 per address.
    for s in &mut silent {
        s.write_all(upgrade_request("key", "").as_bytes()).await.unwrap();
        assert!(answer(s).await.starts_with("HTTP/1.1 101"));
    }
    let mut ok = connect_from("127.0.0.21", relay.addr).await;
    ok.write_all(upgrade_request("key", "").as_bytes()).await.unwrap();
    assert!(answer(&mut ok).await.starts_with("HTTP/1.1 101"));
    let mut fourth = connect_from("127.0.0.21", relay.addr).await;
    let refused = answer(&mut fourth).await;
    assert!(refused.starts_with("HTTP/1.1 429") && refused.contains("too many connections from this address"), "{refused}");
    assert!(metric(relay.addr, "sonde_edge_refused_total{reason=\"sockets_per_ip\"}").await >= 1.0);
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_by_one_deadline() {
    let edge = EdgeConfig { head_timeout_ms: 600, request_timeout_ms: 800, ..EdgeConfig::default() };
    let relay = relay_with(edge, &[]).await;
    let started = Instant::now();
    // An upgrade head trickled a byte every 100 ms never completes within the deadline.
    let mut slow = TcpStream::connect(relay.addr).await.unwrap();
    let head = upgrade_request("key", "");
    let mut cut = false;
    for b in head.as_bytes() {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickled head is cut off");
    assert!(started.elapsed() < Duration::from_secs(3), "by its deadline, not by the last byte: {:?}", started.elapsed());
    // A silent socket and an unfinished HTTP request head are closed too.
    for opening in [&b""[..], b"GET /healthz HTTP/1.1\r\nHost:"] {
        let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
        tcp.write_all(opening).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "closed within the deadline ({opening:?})");
    }
    // A promised body that never comes gets 408.
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"POST /apps/1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // A kept-alive HTTP connection left idle is closed.
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let first = answer(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let mut rest = Vec::new();
    assert!(tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await.is_ok(), "idle keep-alive closed");
    sockets_open(relay.addr, 1, "only the metrics request itself").await;
    assert!(metric(relay.addr, "sonde_edge_refused_total{reason=\"head_timeout\"}").await >= 1.0);
}

#[tokio::test]
async fn unsigned_requests_neither_spend_the_apps_budget_nor_go_on_forever() {
    let edge = EdgeConfig { auth_failures_per_second_per_ip: 1, ..EdgeConfig::default() };
    let relay = relay_with(edge, &["127.0.0.30"]).await;
    let api = relay.api();
    // Unsigned requests from one address: the first ten (the burst) are 401, then 429.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let mut tcp = connect_from("127.0.0.31", relay.addr).await;
        tcp.write_all(b"POST /apps/1/events?auth_key=key HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").await.unwrap();
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.unwrap();
        statuses.push(String::from_utf8_lossy(&buf[9..12]).into_owned());
    }
    // (A token may come back if the machine is slow: one more 401 at most.)
    let unauthorized = statuses.iter().filter(|s| *s == "401").count();
    assert!((10..=11).contains(&unauthorized), "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("429"), "{statuses:?}");
    // The signed client (another address) still has its whole budget of 3 a second.
    for _ in 0..3 {
        let (status, body) = api.request("POST", "/events", Some(&serde_json::json!({ "name": "e", "channel": "c", "data": "{}" })), &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    // Behind a trusted proxy, the forwarded address is the one limited.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let mut tcp = connect_from("127.0.0.30", relay.addr).await;
        tcp.write_all(b"GET /apps/1/channels?auth_key=key HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.unwrap();
        statuses.push(String::from_utf8_lossy(&buf[9..12]).into_owned());
    }
    assert_eq!(statuses.last().map(String::as_str), Some("429"), "{statuses:?}");
    let mut tcp = connect_from("127.0.0.30", relay.addr).await;
    tcp.write_all(b"GET /apps/1/channels?auth_key=key HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.8\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 401"), "another client behind the same proxy is not limited");
}
