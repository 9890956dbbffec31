//! A websocket client that writes frames byte by byte as the test composes them, for the
//! conformance suite: every length encoding, reserved bits, bad opcodes, splits across TCP
//! writes. It reads the relay's frames back and reports the close code.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// How a frame states its payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    /// The shortest form RFC 6455 allows for the payload.
    Minimal,
    /// The 64-bit form with this value, whatever the payload really is.
    Claim64(u64),
}

/// A client frame: `fin`, reserved bits (0-7), opcode, payload, masked or not.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub masked: bool,
    pub len: Len,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self { fin: true, rsv: 0, opcode, payload: payload.into(), masked: true, len: Len::Minimal }
    }
    pub fn text(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(1, payload)
    }
    pub fn fragment(mut self) -> Self {
        self.fin = false;
        self
    }
    pub fn rsv(mut self, bits: u8) -> Self {
        self.rsv = bits;
        self
    }
    pub fn unmasked(mut self) -> Self {
        self.masked = false;
        self
    }
    pub fn claiming(mut self, len: u64) -> Self {
        self.len = Len::Claim64(len);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv & 7) << 4 | (self.opcode & 0x0f)];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let n = self.payload.len();
        match self.len {
            Len::Claim64(claim) => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&claim.to_be_bytes());
            }
            Len::Minimal if n < 126 => out.push(mask_bit | n as u8),
            Len::Minimal if n <= usize::from(u16::MAX) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Minimal => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        if self.masked {
            out.extend_from_slice(&mask);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// What the relay sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code (if any) and reason bytes.
    Close(Option<u16>, Vec<u8>),
    /// The connection ended without a close frame.
    Eof,
}

/// One raw websocket connection.
pub struct RawWs {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

/// A GET upgrade request for `/app/{key}` with the given extra header lines.
pub fn upgrade_request(key: &str, extra: &str) -> String {
    format!(
        "GET /app/{key}?protocol=7&client=conformance&version=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` on a new socket and returns the whole HTTP answer (status line first).
pub async fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The sum of the relay's `/metrics` lines that start with `line_start`, asked on a socket of
/// its own from 127.0.0.1.
pub async fn metric(addr: SocketAddr, line_start: &str) -> f64 {
    let text = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    text.lines().filter(|l| l.starts_with(line_start)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Waits until the relay counts `n` sockets open, the metrics request that asks included.
pub async fn sockets_open(addr: SocketAddr, n: u32, what: &str) {
    crate::eventually(&format!("{n} sockets open ({what})"), Duration::from_secs(10), || async { metric(addr, "sonde_edge_sockets ").await == f64::from(n) })
        .await;
}

impl RawWs {
    /// Opens a websocket on app `key` and reads `pusher:connection_established`.
    pub async fn open(addr: SocketAddr, key: &str) -> Self {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.write_all(upgrade_request(key, "").as_bytes()).await.expect("write");
        let mut ws = Self { tcp, buf: Vec::new() };
        let head = ws.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        match ws.next().await {
            Got::Text(t) if t.contains("pusher:connection_established") => ws,
            other => panic!("expected connection_established, got {other:?}"),
        }
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.fill().await, "socket closed during the handshake");
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("the relay sent nothing for {WAIT:?}"),
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(&frame.bytes()).await;
    }

    /// Writes bytes as they are; a relay that already closed may refuse them.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.tcp.write_all(bytes).await;
    }

    /// Writes `bytes` in pieces of `chunk` bytes, each its own TCP write with a pause.
    pub async fn send_split(&mut self, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk.max(1)) {
            let _ = self.tcp.write_all(piece).await;
            let _ = self.tcp.flush().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The next frame from the relay (unmasked, as a server sends).
    pub async fn next(&mut self) -> Got {
        loop {
            if let Some(got) = self.parse() {
                return got;
            }
            if !self.fill().await {
                return Got::Eof;
            }
        }
    }

    fn parse(&mut self) -> Option<Got> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < at + len {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let payload = b[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some(match opcode {
            1 => Got::Text(String::from_utf8(payload).expect("server text is UTF-8")),
            8 if payload.len() >= 2 => Got::Close(Some(u16::from_be_bytes([payload[0], payload[1]])), payload[2..].to_vec()),
            8 => Got::Close(None, Vec::new()),
            9 => Got::Ping(payload),
            10 => Got::Pong(payload),
            other => panic!("unexpected opcode {other} from the relay"),
        })
    }

    /// Reads until a close frame and returns its code; then the relay must end the
    /// connection.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Got::Close(code, _) => {
                    // Answer as a client does, so the relay need not wait for it.
                    self.send(&Frame::new(8, code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default())).await;
                    self.expect_eof().await;
                    return code;
                }
                Got::Eof => panic!("the connection ended without a close frame"),
                _ => {}
            }
        }
    }

    /// Answers nothing more and waits for the relay to close the TCP connection.
    pub async fn expect_eof(&mut self) {
        loop {
            match self.next().await {
                Got::Eof => return,
                Got::Close(..) => {}
                other => panic!("data after the close frame: {other:?}"),
            }
        }
    }

    /// Proves the connection is alive and in sync: `pusher:ping` gets `pusher:pong`.
    pub async fn ping_pusher(&mut self) {
        self.send(&Frame::text(r#"{"event":"pusher:ping","data":{}}"#)).await;
        self.expect_pusher_pong().await;
    }

    pub async fn expect_pusher_pong(&mut self) {
        loop {
            match self.next().await {
                Got::Text(t) if t.contains("pusher:pong") => return,
                Got::Text(_) | Got::Ping(_) => {}
                other => panic!("expected pusher:pong, got {other:?}"),
            }
        }
    }
}
