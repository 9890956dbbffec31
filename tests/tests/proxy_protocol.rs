//! The PROXY protocol through real sockets (`[edge] proxy_protocol = true`): a trusted proxy's
//! header names the client the per-address limits count; a trusted proxy without one is cut
//! off; an untrusted peer's header is just a bad request and changes nothing. With TLS the
//! header comes before the ClientHello, as load balancers passing TCP through send it.

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::ServerName;
use sonde_relay::config::{AppConfig, Config, EdgeConfig};
use sonde_tests::raw::{http_exchange, sockets_open, upgrade_request};
use sonde_tests::tls::TlsRelay;
use sonde_tests::TestRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PROXY: &str = "127.0.0.40";

/// One socket per client address, so the second from the same client is refused.
async fn relay() -> TestRelay {
    let app = AppConfig::from_flag("1:key:secret").unwrap();
    let edge = EdgeConfig { proxy_protocol: true, max_sockets_per_ip: 1, max_handshakes_per_ip: 0, ..EdgeConfig::default() };
    TestRelay::with_config(Config { apps: vec![app], edge, trusted_proxies: vec![PROXY.into()], io_threads: Some(1), ..Config::default() }).await
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 10.0.0.1 50000 443\r\n").into_bytes()
}

fn v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb]);
    h
}

/// Connects from `source`, sends `header` then a websocket upgrade, and returns the socket
/// and the relay's first answer ("" when it closed without one).
async fn upgrade_from(source: &str, server: SocketAddr, header: &[u8]) -> (TcpStream, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(server).await.unwrap();
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(upgrade_request("key", "").as_bytes());
    tcp.write_all(&bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = match tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    };
    (tcp, answer)
}

async fn refused(addr: SocketAddr, reason: &str) -> f64 {
    let text = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let line = format!("sonde_edge_refused_total{{reason=\"{reason}\"}} ");
    text.lines().filter_map(|l| l.strip_prefix(&line)?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_the_limits_count() {
    let relay = relay().await;
    let (_first, answer) = upgrade_from(PROXY, relay.addr, &v1("203.0.113.7")).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // The same client again, through the same proxy, in a v2 header: over its limit of one.
    let (_second, answer) = upgrade_from(PROXY, relay.addr, &v2([203, 0, 113, 7])).await;
    assert!(answer.starts_with("HTTP/1.1 429") && answer.contains("too many connections from this address"), "{answer}");
    // Another client behind the same proxy is its own address; the proxy itself, holding two
    // sockets now, is not limited.
    let (_third, answer) = upgrade_from(PROXY, relay.addr, &v2([203, 0, 113, 8])).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // From the trusted proxy the header is required: without one the socket is closed.
    let (_fourth, answer) = upgrade_from(PROXY, relay.addr, b"").await;
    assert_eq!(answer, "", "no header from a trusted proxy: closed without an answer");
    assert!(refused(relay.addr, "proxy_header").await >= 1.0);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_name_another_client() {
    let relay = relay().await;
    // Its header is not read as one: the bytes are its request, and a bad one.
    let (_spoof, answer) = upgrade_from("127.0.0.41", relay.addr, &v1("203.0.113.9")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    drop(_spoof);
    sockets_open(relay.addr, 1, "the refused socket closed").await;
    // Counted as itself: with its one socket held, a header naming someone else is refused
    // before anything is read.
    let (_held, answer) = upgrade_from("127.0.0.41", relay.addr, b"").await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let (_again, answer) = upgrade_from("127.0.0.41", relay.addr, &v1("203.0.113.10")).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert_eq!(refused(relay.addr, "proxy_header").await, 0.0, "nothing was taken for a header");
}

#[tokio::test]
async fn over_tls_the_header_comes_before_the_client_hello() {
    let relay = TlsRelay::spawn(|c| {
        c.edge = EdgeConfig { proxy_protocol: true, max_sockets_per_ip: 1, max_handshakes_per_ip: 0, ..EdgeConfig::default() };
        c.trusted_proxies = vec![PROXY.into()];
    })
    .await;
    let open = |client: [u8; 4]| {
        let config = relay.ca.client_config();
        let addr = relay.relay.addr;
        async move {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(format!("{PROXY}:0").parse().unwrap()).unwrap();
            let mut tcp = socket.connect(addr).await.unwrap();
            tcp.write_all(&v2(client)).await.unwrap();
            let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
            let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS after the header");
            tls.write_all(upgrade_request("key", "").as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await.map_or(0, |r| r.unwrap_or(0));
            (tls, String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    };
    let (_first, answer) = open([198, 51, 100, 20]).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let (_second, answer) = open([198, 51, 100, 20]).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "the header's client is the one counted: {answer}");
    let (_third, answer) = open([198, 51, 100, 21]).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

#[test]
fn the_setting_needs_trusted_proxies() {
    let edge = EdgeConfig { proxy_protocol: true, ..EdgeConfig::default() };
    let config = Config { apps: vec![AppConfig::from_flag("1:key:secret").unwrap()], edge, ..Config::default() };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("proxy_protocol needs trusted_proxies"), "{err}");
    let config = Config { trusted_proxies: vec!["10.0.0.0/8".into()], ..config };
    assert!(config.validate().is_ok());
}
