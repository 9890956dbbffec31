//! RFC 6455 conformance of the websocket endpoint, case by case in the manner of the Autobahn
//! testsuite's sections 1-7 and 9, plus the handshake: a raw client composes every frame,
//! and each case asserts what the relay answers and the close code it ends with. After every
//! case the relay must hold no trace of the connection.

use sonde_relay::config::{AppConfig, Config};
use sonde_tests::raw::{http_exchange, upgrade_request, Frame, Got, RawWs};
use sonde_tests::TestRelay;

/// Largest message the relay under test accepts (the app's `max_message_bytes`).
const MAX_MESSAGE: usize = 70_000;

async fn relay() -> TestRelay {
    let mut app = AppConfig::from_flag("1:key:secret").unwrap();
    app.limits.max_message_bytes = MAX_MESSAGE;
    TestRelay::with_config(Config { apps: vec![app], io_threads: Some(1), ..Config::default() }).await
}

/// A `pusher:ping` padded with spaces to exactly `len` bytes (the relay answers it).
fn ping_of_len(len: usize) -> Vec<u8> {
    let mut m = br#"{"event":"pusher:ping","data":{}}"#.to_vec();
    assert!(len >= m.len());
    m.resize(len, b' ');
    m
}

async fn gauge(relay: &TestRelay, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", relay.addr)).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name) && !l.starts_with('#')).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Every connection of a finished case is gone from the relay's tables and sockets.
async fn no_connection_left(relay: &TestRelay) {
    for _ in 0..100 {
        if gauge(relay, "sonde_connections{").await == 0.0 && gauge(relay, "sonde_edge_sockets").await <= 1.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("connections left behind: sonde_connections {}, sockets {}", gauge(relay, "sonde_connections{").await, gauge(relay, "sonde_edge_sockets").await);
}

/// Sends `frames` and expects the relay to close with `code`.
async fn closes_with(relay: &TestRelay, what: &str, frames: &[Frame], code: u16) {
    let mut ws = RawWs::open(relay.addr, "key").await;
    for f in frames {
        ws.send(f).await;
    }
    assert_eq!(ws.close_code().await, Some(code), "{what}");
}

#[tokio::test]
async fn s1_framing_every_length_encoding_and_split_writes() {
    let relay = relay().await;
    let mut ws = RawWs::open(relay.addr, "key").await;
    // 7-bit, 16-bit and 64-bit lengths at their boundaries.
    for len in [33, 125, 126, 127, 128, 65_535, 65_536, MAX_MESSAGE] {
        ws.send(&Frame::text(ping_of_len(len))).await;
        ws.expect_pusher_pong().await;
    }
    // One frame written a byte at a time, then in odd-sized pieces.
    let frame = Frame::text(ping_of_len(300)).bytes();
    for chunk in [1, 3, 7, 64, 299] {
        ws.send_split(&frame, chunk).await;
        ws.expect_pusher_pong().await;
    }
    // Two frames in one write.
    let mut two = Frame::text(ping_of_len(40)).bytes();
    two.extend(Frame::text(ping_of_len(200)).bytes());
    ws.send_bytes(&two).await;
    ws.expect_pusher_pong().await;
    ws.expect_pusher_pong().await;
    drop(ws);
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s1_oversized_and_overflowing_lengths() {
    let relay = relay().await;
    closes_with(&relay, "one byte over the limit", &[Frame::text(ping_of_len(MAX_MESSAGE + 1))], 1009).await;
    closes_with(&relay, "a 64-bit length with the top bit set", &[Frame::text("x").claiming(1 << 63)], 1002).await;
    closes_with(&relay, "a 64-bit length of 2^64-1", &[Frame::text("x").claiming(u64::MAX)], 1002).await;
    closes_with(&relay, "a 64-bit length just below 2^63", &[Frame::text("x").claiming((1 << 63) - 1)], 1009).await;
    // A fragment, then a continuation claiming nearly 2^64 bytes: the sum must not wrap.
    let ghost = [Frame::text("abc").fragment(), Frame::new(0, "x").claiming(u64::MAX - 2)];
    closes_with(&relay, "a continuation whose length would wrap the sum", &ghost, 1002).await;
    let ghost = [Frame::text("abc").fragment(), Frame::new(0, "x").claiming((1 << 63) - 2)];
    closes_with(&relay, "a continuation far past the limit", &ghost, 1009).await;
    let parts = [Frame::text(vec![b' '; 40_000]).fragment(), Frame::new(0, vec![b' '; 40_000])];
    closes_with(&relay, "fragments adding up past the limit", &parts, 1009).await;
    closes_with(&relay, "an unmasked client frame", &[Frame::text(ping_of_len(40)).unmasked()], 1002).await;
    closes_with(&relay, "a binary message", &[Frame::new(2, vec![1, 2, 3])], 1003).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s2_pings_and_pongs() {
    let relay = relay().await;
    let mut ws = RawWs::open(relay.addr, "key").await;
    for payload in [Vec::new(), b"hello".to_vec(), vec![0xfe; 125], (0..=124).collect::<Vec<u8>>()] {
        ws.send(&Frame::new(9, payload.clone())).await;
        assert_eq!(ws.next().await, Got::Pong(payload));
    }
    // An unsolicited pong is ignored; ten pings get ten pongs in order.
    ws.send(&Frame::new(10, b"unasked".to_vec())).await;
    for i in 0..10u8 {
        ws.send(&Frame::new(9, vec![i])).await;
    }
    for i in 0..10u8 {
        assert_eq!(ws.next().await, Got::Pong(vec![i]));
    }
    ws.send_split(&Frame::new(9, b"split ping".to_vec()).bytes(), 1).await;
    assert_eq!(ws.next().await, Got::Pong(b"split ping".to_vec()));
    ws.ping_pusher().await;
    drop(ws);
    closes_with(&relay, "a ping of 126 bytes", &[Frame::new(9, vec![0; 126])], 1002).await;
    closes_with(&relay, "a fragmented ping", &[Frame::new(9, b"x".to_vec()).fragment()], 1002).await;
    closes_with(&relay, "a pong of 126 bytes", &[Frame::new(10, vec![0; 126])], 1002).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s3_reserved_bits() {
    let relay = relay().await;
    for rsv in 1..=7u8 {
        closes_with(&relay, &format!("text with reserved bits {rsv}"), &[Frame::text(ping_of_len(40)).rsv(rsv)], 1002).await;
    }
    closes_with(&relay, "a ping with a reserved bit", &[Frame::new(9, b"x".to_vec()).rsv(4)], 1002).await;
    closes_with(&relay, "a close with a reserved bit", &[Frame::new(8, 1000u16.to_be_bytes().to_vec()).rsv(2)], 1002).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s4_reserved_opcodes() {
    let relay = relay().await;
    for opcode in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        closes_with(&relay, &format!("opcode {opcode}"), &[Frame::new(opcode, b"x".to_vec())], 1002).await;
    }
    // After a valid message, too.
    closes_with(&relay, "opcode 5 after a message", &[Frame::text(ping_of_len(40)), Frame::new(5, Vec::new())], 1002).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s5_fragmentation() {
    let relay = relay().await;
    let mut ws = RawWs::open(relay.addr, "key").await;
    let msg = ping_of_len(100);
    // Two fragments; then a ping between fragments is answered at once.
    ws.send(&Frame::text(msg[..10].to_vec()).fragment()).await;
    ws.send(&Frame::new(0, msg[10..].to_vec())).await;
    ws.expect_pusher_pong().await;
    ws.send(&Frame::text(msg[..50].to_vec()).fragment()).await;
    ws.send(&Frame::new(9, b"between".to_vec())).await;
    assert_eq!(ws.next().await, Got::Pong(b"between".to_vec()));
    ws.send(&Frame::new(0, msg[50..].to_vec())).await;
    ws.expect_pusher_pong().await;
    // One byte a fragment, with empty fragments, written a byte at a time.
    let mut bytes = Frame::text(msg[..1].to_vec()).fragment().bytes();
    for (i, b) in msg[1..].iter().enumerate() {
        let last = i == msg.len() - 2;
        let f = Frame::new(0, vec![*b]);
        bytes.extend(if last { f } else { f.fragment() }.bytes());
        if i % 10 == 0 {
            bytes.extend(Frame::new(0, Vec::new()).fragment().bytes());
        }
    }
    ws.send_split(&bytes, 5).await;
    ws.expect_pusher_pong().await;
    drop(ws);
    closes_with(&relay, "a continuation with nothing to continue", &[Frame::new(0, b"x".to_vec())], 1002).await;
    closes_with(&relay, "a final continuation with nothing to continue", &[Frame::new(0, b"x".to_vec()).fragment()], 1002).await;
    let nested = [Frame::text(b"{".to_vec()).fragment(), Frame::text(ping_of_len(40))];
    closes_with(&relay, "a new message inside a fragmented one", &nested, 1002).await;
    let close_between = [Frame::text(b"{".to_vec()).fragment(), Frame::new(8, 1000u16.to_be_bytes().to_vec())];
    closes_with(&relay, "a close between fragments", &close_between, 1000).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s6_utf8_validity() {
    let relay = relay().await;
    let mut ws = RawWs::open(relay.addr, "key").await;
    // Valid multi-byte text, split mid-character across fragments and across TCP writes.
    let text = r#"{"event":"pusher:ping","data":{"κόσμε":"𝄞€ü"}}"#.as_bytes().to_vec();
    for cut in 1..text.len() {
        ws.send(&Frame::text(text[..cut].to_vec()).fragment()).await;
        ws.send(&Frame::new(0, text[cut..].to_vec())).await;
        ws.expect_pusher_pong().await;
    }
    ws.send_split(&Frame::text(text.clone()).bytes(), 1).await;
    ws.expect_pusher_pong().await;
    drop(ws);
    let invalid: [(&str, &[u8]); 7] = [
        ("a lone continuation byte", b"\x80"),
        ("an overlong '/'", b"\xc0\xaf"),
        ("a UTF-16 surrogate", b"\xed\xa0\x80"),
        ("a code point past U+10FFFF", b"\xf4\x90\x80\x80"),
        ("0xFE", b"\xfe"),
        ("a truncated sequence", b"\xe2\x82"),
        ("valid text then 0xFF", b"{\"event\":\"x\xff\"}"),
    ];
    for (what, bytes) in invalid {
        closes_with(&relay, what, &[Frame::text(bytes.to_vec())], 1007).await;
        // The same, split across two fragments.
        let (a, b) = bytes.split_at(bytes.len() / 2);
        closes_with(&relay, &format!("{what}, fragmented"), &[Frame::text(a.to_vec()).fragment(), Frame::new(0, b.to_vec())], 1007).await;
    }
    // Invalid text split so each fragment alone could still be the start of valid text.
    let euro = "€".as_bytes();
    let bad = [Frame::text(euro[..2].to_vec()).fragment(), Frame::new(0, b"x".to_vec())];
    closes_with(&relay, "a character cut by a fragment that never finishes it", &bad, 1007).await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s7_close_handling() {
    let relay = relay().await;
    // A valid close is answered by echoing its code.
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        let mut ws = RawWs::open(relay.addr, "key").await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        ws.send(&Frame::new(8, payload)).await;
        match ws.next().await {
            Got::Close(got, _) => assert_eq!(got, Some(code), "echo of {code}"),
            other => panic!("close {code}: {other:?}"),
        }
        ws.expect_eof().await;
    }
    // An empty close is answered with a close; a reason of 123 bytes is fine.
    let mut ws = RawWs::open(relay.addr, "key").await;
    ws.send(&Frame::new(8, Vec::new())).await;
    assert!(matches!(ws.next().await, Got::Close(..)));
    ws.expect_eof().await;
    let mut long = 1000u16.to_be_bytes().to_vec();
    long.extend(vec![b'r'; 123]);
    closes_with(&relay, "a close with a 123-byte reason", &[Frame::new(8, long)], 1000).await;
    // Invalid close frames.
    closes_with(&relay, "a close with a 1-byte payload", &[Frame::new(8, vec![0x03])], 1002).await;
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        closes_with(&relay, &format!("close code {code}"), &[Frame::new(8, code.to_be_bytes().to_vec())], 1002).await;
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80");
    closes_with(&relay, "a close reason that is not UTF-8", &[Frame::new(8, bad_reason)], 1007).await;
    // Whatever follows a close is not acted on.
    let mut ws = RawWs::open(relay.addr, "key").await;
    let mut bytes = Frame::new(8, 1000u16.to_be_bytes().to_vec()).bytes();
    bytes.extend(Frame::text(ping_of_len(40)).bytes());
    bytes.extend(Frame::new(9, b"after".to_vec()).bytes());
    ws.send_bytes(&bytes).await;
    assert_eq!(ws.next().await, Got::Close(Some(1000), Vec::new()));
    ws.expect_eof().await;
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn s9_large_messages_in_many_shapes() {
    let relay = relay().await;
    let mut ws = RawWs::open(relay.addr, "key").await;
    let msg = ping_of_len(64 * 1024);
    for fragment in [64, 256, 1024, 4096, 16 * 1024, 64 * 1024] {
        let pieces: Vec<&[u8]> = msg.chunks(fragment).collect();
        let mut bytes = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let f = Frame::new(if i == 0 { 1 } else { 0 }, p.to_vec());
            bytes.extend(if i + 1 == pieces.len() { f } else { f.fragment() }.bytes());
        }
        for chunk in [bytes.len(), 1000, 4096] {
            ws.send_split(&bytes, chunk).await;
            ws.expect_pusher_pong().await;
        }
    }
    for _ in 0..50 {
        ws.send(&Frame::text(ping_of_len(MAX_MESSAGE))).await;
    }
    for _ in 0..50 {
        ws.expect_pusher_pong().await;
    }
    drop(ws);
    no_connection_left(&relay).await;
}

#[tokio::test]
async fn handshake_validation() {
    let relay = relay().await;
    let addr = relay.addr;
    for method in ["POST", "PUT", "DELETE"] {
        let req = upgrade_request("key", "").replacen("GET", method, 1);
        let answer = http_exchange(addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 405") || answer.starts_with("HTTP/1.1 400"), "{method}: {answer}");
        assert!(!answer.contains("101"), "{method} never upgrades: {answer}");
    }
    let old = upgrade_request("key", "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let answer = http_exchange(addr, old.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{answer}");
    let no_key = upgrade_request("key", "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert!(http_exchange(addr, no_key.as_bytes()).await.starts_with("HTTP/1.1 400"));
    let bad_key = upgrade_request("key", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    assert!(http_exchange(addr, bad_key.as_bytes()).await.starts_with("HTTP/1.1 400"));
    let no_upgrade = upgrade_request("key", "").replace("Upgrade: websocket\r\n", "");
    assert!(http_exchange(addr, no_upgrade.as_bytes()).await.starts_with("HTTP/1.1 400"));
    let long_line = format!("GET /app/key?protocol=7&pad={} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    assert!(http_exchange(addr, long_line.as_bytes()).await.starts_with("HTTP/1.1 431"));
    let many_headers = upgrade_request("key", &"X-Pad: 0123456789012345678901234567890123456789\r\n".repeat(300));
    assert!(http_exchange(addr, many_headers.as_bytes()).await.starts_with("HTTP/1.1 431"));
    let garbage = b"GET /app/key \x00\x01\x02 HTTP/1.1\r\n\r\n";
    assert!(http_exchange(addr, garbage).await.starts_with("HTTP/1.1 400"));
    // The HTTP side refuses what it cannot parse too.
    let junk_http = b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = http_exchange(addr, junk_http).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    no_connection_left(&relay).await;
}
