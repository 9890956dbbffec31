//! The relay over TLS, through real sockets: wss:// and https:// with a CA made at test
//! time, every kind of key, plaintext and stalled clients on the TLS port, resumption, and
//! certificates renewed on disk while clients stay connected.

use std::time::Duration;

use serde_json::json;
use sonde_relay::config::EdgeConfig;
use sonde_tests::tls::{connect_tls, served_leaf, KeyKind, TlsRelay};
use sonde_tests::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sum of the `/metrics` lines starting with `line_start`, read over https.
async fn metric(relay: &TlsRelay, line_start: &str) -> f64 {
    let api = relay.api();
    let text =
        api.http.get(format!("{}/metrics", api.base)).header("connection", "close").send().await.expect("metrics over https").text().await.expect("body");
    text.lines().filter(|l| l.starts_with(line_start)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Waits until `check` holds (polling), failing after `WAIT`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl FnMut() -> F) {
    sonde_tests::eventually(what, WAIT, check).await;
}

#[tokio::test]
async fn wss_subscribers_get_what_the_https_api_publishes() {
    let relay = TlsRelay::spawn(|_| {}).await;
    let mut a = relay.client().await;
    let mut b = relay.client().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    let api = relay.api();
    for i in 0..20 {
        let (status, body) = api.trigger(&["room"], "tick", &json!({ "i": i }).to_string()).await;
        assert_eq!(status, 200, "{body}");
    }
    for c in [&mut a, &mut b] {
        for i in 0..20 {
            let f = c.expect("tick").await;
            assert_eq!(f.data["i"], i, "in order, none lost");
        }
    }
    // Client events between two TLS sockets, the other way round.
    let (status, _) = api.request("GET", "/channels/room", None, &[("info", "subscription_count")]).await;
    assert_eq!(status, 200);
    assert!(metric(&relay, "sonde_tls_handshake_seconds_count").await >= 3.0);
    assert!(metric(&relay, "sonde_ws_handshake_seconds_count").await >= 2.0);
}

#[tokio::test]
async fn the_dashboard_and_metrics_are_served_over_https_with_alpn_http1() {
    let relay = TlsRelay::spawn(|_| {}).await;
    let api = relay.api();
    let index = api.http.get(format!("{}/", api.base)).send().await.expect("dashboard");
    assert_eq!(index.status(), 200);
    assert!(index.headers().get("content-security-policy").is_some());
    assert!(index.text().await.unwrap().contains("Sonde"), "the dashboard page");
    assert_eq!(api.try_get("/healthz").await, Some(200));
    // A client offering h2 first is answered with http/1.1, the one protocol served.
    let mut config = (*relay.ca.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = relay.connect(std::sync::Arc::new(config)).await.expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn every_supported_kind_of_key_serves_wss_over_tls_1_2_and_1_3() {
    for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384Sec1, KeyKind::Ed25519, KeyKind::Rsa2048, KeyKind::Rsa2048Pkcs1] {
        let relay = TlsRelay::with_key(kind, |_| {}).await;
        let mut c = relay.client().await;
        c.subscribe("room").await;
        let (status, _) = relay.api().trigger(&["room"], "hello", "{}").await;
        assert_eq!(status, 200, "{kind:?}");
        c.expect("hello").await;
        // Ed25519 certificates exist in TLS 1.3 only for most clients; rustls offers them in 1.2 too.
        let tls12 = relay.ca.client_config_for(&[&rustls::version::TLS12]);
        let stream = relay.connect(tls12).await.unwrap_or_else(|e| panic!("{kind:?} over TLS 1.2: {e}"));
        assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    }
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_400_and_is_closed_at_once() {
    let relay = TlsRelay::spawn(|_| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(relay.relay.addr).await.unwrap();
    tcp.write_all(b"GET /app/key HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(2), tcp.read_to_string(&mut reply)).await.expect("closed at once, not at a deadline").unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("TLS"), "{reply}");
    assert_eq!(metric(&relay, "sonde_tls_handshake_failures_total{reason=\"plaintext\"}").await, 1.0);
}

#[tokio::test]
async fn a_handshake_that_stalls_is_cut_at_the_head_deadline_and_its_slot_returned() {
    let relay = TlsRelay::spawn(|c| c.edge = EdgeConfig { head_timeout_ms: 400, max_handshakes_per_ip: 2, ..EdgeConfig::default() }).await;
    // The start of a ClientHello record, and then nothing.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(relay.relay.addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
        stalled.push(tcp);
    }
    // Both hold this address's handshakes: a third socket is refused at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(relay.relay.addr).await.unwrap();
    let mut reply = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), third.read_to_string(&mut reply)).await.expect("refused at once");
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    for mut tcp in stalled {
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await.expect("cut by the relay");
        assert!(read.is_err() || rest.is_empty() || rest[0] == 0x15, "nothing but an alert: {rest:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(metric(&relay, "sonde_tls_handshake_failures_total{reason=\"timeout\"}").await, 2.0);
    // Only the metrics request's own socket is open: the stalled ones gave their slots back.
    eventually("slots back", || async { metric(&relay, "sonde_edge_sockets ").await == 1.0 }).await;
    let mut c = relay.client().await;
    c.subscribe("room").await;
}

#[tokio::test]
async fn a_second_connection_resumes_the_session_over_tls_1_3_and_1_2() {
    let relay = TlsRelay::spawn(|_| {}).await;
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let config = relay.ca.client_config_for(versions);
        let first = relay.connect(config.clone()).await.expect("first handshake");
        assert_eq!(first.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
        // TLS 1.3 tickets arrive after the handshake: let the client read them.
        let mut first = first;
        first.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, first.read_to_end(&mut reply)).await.expect("answer").ok();
        assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
        let second = connect_tls(relay.relay.addr, config).await.expect("second handshake");
        assert_eq!(second.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Resumed), "{versions:?}");
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_handshakes_and_a_broken_one_is_refused() {
    let relay = TlsRelay::spawn(|c| c.tls.as_mut().unwrap().reload_poll_ms = 100).await;
    let config = relay.ca.client_config();
    let first = served_leaf(relay.relay.addr, config.clone()).await;
    let mut held = relay.client().await;
    held.subscribe("room").await;
    // A renewal that does not parse: the current certificate stays.
    sonde_tests::tls::replace_file(&relay.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    eventually("the broken renewal is seen", || async { metric(&relay, "sonde_tls_certificate_reload_failures_total").await == 1.0 }).await;
    assert_eq!(served_leaf(relay.relay.addr, config.clone()).await, first, "still the old certificate");
    // A key that does not belong to the certificate is refused too.
    let other = relay.ca.issue(KeyKind::EcdsaP256);
    sonde_tests::tls::replace_file(&relay.key, other.key_pem.as_bytes());
    eventually("the mismatched key is seen", || async { metric(&relay, "sonde_tls_certificate_reload_failures_total").await == 2.0 }).await;
    assert_eq!(served_leaf(relay.relay.addr, config.clone()).await, first);
    // A good renewal takes effect for new handshakes; the connected client is untouched.
    let renewed = relay.ca.issue(KeyKind::Ed25519);
    renewed.write_to(&relay.dir.0);
    eventually("the renewal is loaded", || async { metric(&relay, "sonde_tls_certificate_reloads_total").await >= 1.0 }).await;
    assert_eq!(served_leaf(relay.relay.addr, config).await, renewed.leaf);
    relay.api().trigger(&["room"], "after", "{}").await;
    held.expect("after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_certificate_under_a_broadcast_to_1000_subscribers_drops_nothing() {
    const SUBSCRIBERS: usize = 1000;
    const MESSAGES: u64 = 40;
    let relay = TlsRelay::spawn(|c| {
        c.edge = EdgeConfig { max_sockets_per_ip: 0, max_handshakes_per_ip: 0, ..EdgeConfig::default() };
        c.tls.as_mut().unwrap().reload_poll_ms = 100;
    })
    .await;
    let mut clients = Vec::new();
    while clients.len() < SUBSCRIBERS {
        let batch = futures_util::future::join_all((0..50).map(|_| async {
            let mut c = relay.client().await;
            c.subscribe("broadcast").await;
            c
        }));
        clients.extend(batch.await);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..MESSAGES {
                    got.push(c.expect("tick").await.data["i"].as_u64().expect("i"));
                }
                (got, c)
            })
        })
        .collect();
    let config = relay.ca.client_config();
    let old = served_leaf(relay.relay.addr, config.clone()).await;
    let renewed = relay.ca.issue(KeyKind::EcdsaP256);
    let api = relay.api();
    for i in 0..MESSAGES {
        if i == MESSAGES / 2 {
            renewed.write_to(&relay.dir.0);
        }
        let (status, body) = api.trigger(&["broadcast"], "tick", &json!({ "i": i }).to_string()).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kept = Vec::new();
    for r in readers {
        let (got, c) = r.await.expect("a subscriber's reader");
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>(), "every message, in order");
        kept.push(c);
    }
    assert_eq!(metric(&relay, "sonde_connections{app=\"1\"}").await, SUBSCRIBERS as f64, "no established connection dropped");
    let now = served_leaf(relay.relay.addr, config).await;
    assert_ne!(now, old);
    assert_eq!(now, renewed.leaf, "a new handshake gets the new certificate");
}

/// Starts the relay binary with `args`, returning it and the address it printed.
fn start_binary(args: &[String]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(sonde_tests::agent::workspace_bin("sonde-relay"))
        .args(args)
        .env_remove("SONDE_APP")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("relay binary");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("text");
    let addr = first.strip_prefix("Sonde relay listening on https://").unwrap_or_else(|| panic!("{first}")).to_owned();
    // The rest of the banner is read too: a closed pipe would fail the relay's prints.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_relay_binary() {
    let ca = sonde_tests::tls::TestCa::new();
    let dir = sonde_tests::agent::TempDir::new("tls-hup");
    let (cert, key) = ca.issue(KeyKind::EcdsaP256).write_to(&dir.0);
    let toml = dir.0.join("relay.toml");
    let text = format!(
        "bind = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nreload_poll_ms = 0\n[[apps]]\nid = \"1\"\nkey = \"key\"\nsecret = \"secret\"\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    std::fs::write(&toml, text).unwrap();
    let (mut child, addr) = start_binary(&["--config".into(), toml.display().to_string()]);
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let config = ca.client_config();
    let old = served_leaf(addr, config.clone()).await;
    let renewed = ca.issue(KeyKind::Rsa2048);
    renewed.write_to(&dir.0);
    // Without polling, nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_leaf(addr, config.clone()).await, old);
    std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    let until = tokio::time::Instant::now() + WAIT;
    while served_leaf(addr, config.clone()).await != renewed.leaf {
        assert!(tokio::time::Instant::now() < until, "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop the relay");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_unusable_certificate_or_key_exits_2_before_binding_without_showing_the_key() {
    let ca = sonde_tests::tls::TestCa::new();
    let dir = sonde_tests::agent::TempDir::new("tls-bad");
    let (cert, key) = ca.issue(KeyKind::EcdsaP256).write_to(&dir.0);
    let other = ca.issue(KeyKind::EcdsaP256);
    let other_key = dir.0.join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let p = |p: &std::path::Path| p.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls-cert".into(), p(&cert)], "needs --tls-key"),
        (vec!["--tls-cert".into(), p(&cert), "--tls-key".into(), p(&other_key)], "does not belong"),
        (vec!["--tls-cert".into(), p(&garbage), "--tls-key".into(), p(&key)], "no CERTIFICATE"),
        (vec!["--tls-cert".into(), p(&cert), "--tls-key".into(), p(&garbage)], "private key"),
        (vec!["--tls-cert".into(), p(&cert), "--tls-key".into(), p(&dir.0.join("missing.pem"))], "missing.pem"),
    ];
    for (mut args, want) in cases {
        args.extend(["--bind".into(), "127.0.0.1:0".into()]);
        let out = std::process::Command::new(sonde_tests::agent::workspace_bin("sonde-relay")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing was started: {args:?}");
        for line in other.key_pem.lines().chain(std::fs::read_to_string(&key).unwrap().lines().collect::<Vec<_>>()).filter(|l| !l.starts_with("-----")) {
            assert!(!err.contains(line), "key material in the message: {err}");
        }
    }
}

#[tokio::test]
async fn failed_handshakes_are_counted_by_reason() {
    let relay = TlsRelay::spawn(|_| {}).await;
    // A client that does not trust the relay's CA refuses its certificate.
    let stranger = sonde_tests::tls::TestCa::named("Another CA");
    assert!(relay.connect(stranger.client_config()).await.is_err());
    // A record that claims to be a handshake and is not.
    let mut tcp = tokio::net::TcpStream::connect(relay.relay.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0, 0, 4, 1, 2, 3, 4]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await.expect("closed");
    // A client that leaves in the middle.
    let mut tcp = tokio::net::TcpStream::connect(relay.relay.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    drop(tcp);
    for reason in ["bad_certificate", "protocol", "eof"] {
        let line = format!("sonde_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        eventually(reason, || async { metric(&relay, &line).await == 1.0 }).await;
    }
}

#[tokio::test]
async fn a_wss_subscriber_that_stops_reading_is_cut_and_the_others_get_everything() {
    let relay = TlsRelay::spawn(|c| c.apps[0].limits.max_outbox_bytes = 64 * 1024).await;
    let mut reader = relay.client().await;
    reader.subscribe("firehose").await;
    // A TLS client with a small receive buffer that subscribes and then reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(relay.relay.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut stalled = tokio_rustls::TlsConnector::from(relay.ca.client_config()).connect(name, tcp).await.unwrap();
    stalled.write_all(b"GET /app/key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"firehose"}}"#;
    let mut frame = vec![0x81, 0x80 | subscribe.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(subscribe);
    stalled.write_all(&frame).await.unwrap();
    eventually("both subscribed", || async { metric(&relay, "sonde_subscriptions{app=\"1\"}").await == 2.0 }).await;
    let api = relay.api();
    let payload = "x".repeat(8 * 1024);
    let mut sent = 0u64;
    while metric(&relay, "sonde_connections{app=\"1\"}").await > 1.0 {
        assert!(sent < 2_000, "the stalled subscriber was never cut");
        let (status, body) = api.trigger(&["firehose"], "bulk", &json!({ "n": sent, "pad": payload }).to_string()).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
    }
    for n in 0..sent {
        assert_eq!(reader.expect("bulk").await.data["n"], n, "the reading subscriber gets everything, in order");
    }
}
