//! A small websocket client, just what a load generator needs (RFC 6455, client side).
//!
//! Why not tungstenite: it allocates a buffer per received message and keeps a large read
//! buffer per connection, which would make the bench, not the server, the thing measured at
//! 20,000 connections and hundreds of thousands of deliveries a second. Here each connection
//! owns one growable read buffer and received messages are borrowed slices of it.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::tls::{Stream, TlsClient};

use sonde_protocol::wsframe::opcode::{
    BINARY as OP_BINARY, CLOSE as OP_CLOSE, CONTINUATION as OP_CONTINUATION, PING as OP_PING, PONG as OP_PONG, TEXT as OP_TEXT,
};
use sonde_protocol::wsframe::{self, HeadError};

/// Refuse server messages above this size rather than grow a buffer without bound.
const MAX_MESSAGE: usize = 1 << 20;
const INITIAL_READ_BUFFER: usize = 512;

/// A message borrowed from the connection's read buffer until the next read.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a [u8]),
    Close,
}

/// A frame header, as parsed from the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Parses one server frame header; `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8]) -> io::Result<Option<Header>> {
    if buf.get(1).is_some_and(|b1| b1 & 0x80 != 0) {
        return Err(invalid("server frames must not be masked"));
    }
    let head = match wsframe::parse_head(buf) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(HeadError::LengthTopBit) => return Err(invalid("server message too large")),
    };
    let payload_len = usize::try_from(head.payload_len).ok().filter(|&n| n <= MAX_MESSAGE).ok_or_else(|| invalid("server message too large"))?;
    Ok(Some(Header { fin: head.fin, opcode: head.opcode, header_len: head.head_len, payload_len }))
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let (h, n) = wsframe::client_head(opcode, payload.len(), mask);
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    wsframe::apply_mask(&mut out[start..], mask);
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Where to connect, on loopback which local address to connect from, and whether over TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub server: SocketAddr,
    pub source: Option<IpAddr>,
    pub recv_buffer: Option<u32>,
    pub tls: Option<TlsClient>,
}

pub struct WsConn {
    stream: Stream,
    rbuf: BytesMut,
    /// Bytes of the message returned last, dropped at the next read.
    consumed: usize,
    /// Fragments of a message in progress (rare: servers send small frames whole).
    fragments: Vec<u8>,
    wbuf: Vec<u8>,
}

impl WsConn {
    /// TCP connect (bound to `source` first, so many connections can use many source
    /// addresses), the TLS handshake with `--tls`, then the websocket upgrade of `path`.
    pub async fn connect(ep: Endpoint, host_header: &str, path: &str) -> io::Result<Self> {
        let socket = if ep.server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = ep.source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        if let Some(bytes) = ep.recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        let stream = socket.connect(ep.server).await?;
        stream.set_nodelay(true)?;
        let stream = match &ep.tls {
            Some(tls) => Stream::Tls(Box::new(tls.connect(stream).await?)),
            None => Stream::Plain(stream),
        };
        let mut conn = Self { stream, rbuf: BytesMut::with_capacity(INITIAL_READ_BUFFER), consumed: 0, fragments: Vec::new(), wbuf: Vec::new() };
        conn.upgrade(host_header, path).await?;
        Ok(conn)
    }

    async fn upgrade(&mut self, host: &str, path: &str) -> io::Result<()> {
        let key = websocket_key(rand::random());
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.stream.write_all(req.as_bytes()).await?;
        self.stream.flush().await?;
        let end = loop {
            if let Some(pos) = memchr::memmem::find(&self.rbuf, b"\r\n\r\n") {
                break pos + 4;
            }
            if self.rbuf.len() > 16 * 1024 {
                return Err(invalid("upgrade response headers too long"));
            }
            self.fill().await?;
        };
        let status_ok = self.rbuf.starts_with(b"HTTP/1.1 101");
        if !status_ok {
            let line = self.rbuf[..end].split(|b| *b == b'\r').next().unwrap_or_default();
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("upgrade refused: {}", String::from_utf8_lossy(line))));
        }
        self.rbuf.advance(end);
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 256 {
            self.rbuf.reserve(self.rbuf.len().max(INITIAL_READ_BUFFER));
        }
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// The next text message. Pings are answered here; binary messages are skipped.
    pub async fn read(&mut self) -> io::Result<Message<'_>> {
        self.rbuf.advance(self.consumed);
        self.consumed = 0;
        loop {
            let Some(h) = parse_header(&self.rbuf)? else {
                self.fill().await?;
                continue;
            };
            let total = h.header_len + h.payload_len;
            if self.rbuf.len() < total {
                self.rbuf.reserve(total - self.rbuf.len());
                self.fill().await?;
                continue;
            }
            match (h.opcode, h.fin) {
                (OP_TEXT, true) => {
                    self.consumed = total;
                    return Ok(Message::Text(&self.rbuf[h.header_len..total]));
                }
                (OP_TEXT | OP_BINARY | OP_CONTINUATION, _) => {
                    if h.opcode != OP_CONTINUATION {
                        self.fragments.clear();
                    }
                    self.fragments.extend_from_slice(&self.rbuf[h.header_len..total]);
                    self.rbuf.advance(total);
                    if h.fin && h.opcode != OP_BINARY {
                        return Ok(Message::Text(&self.fragments));
                    }
                }
                (OP_PING, _) => {
                    let payload = self.rbuf[h.header_len..total].to_vec();
                    self.rbuf.advance(total);
                    self.send(OP_PONG, &payload).await?;
                }
                (OP_PONG, _) => self.rbuf.advance(total),
                (OP_CLOSE, _) => return Ok(Message::Close),
                _ => return Err(invalid("unknown opcode")),
            }
        }
    }

    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.send(OP_TEXT, text).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.wbuf.clear();
        encode_frame(opcode, payload, rand::random(), &mut self.wbuf);
        self.stream.write_all(&self.wbuf).await?;
        // A TLS stream may hold the record until flushed; a TCP flush does nothing.
        self.stream.flush().await
    }

    /// Sends a close frame (1000) and waits briefly for the server to close, so that the
    /// server, not the bench, holds the TIME_WAIT of the connection.
    pub async fn close(mut self) -> io::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        let drain = async {
            let mut scratch = [0u8; 512];
            while self.stream.read(&mut scratch).await? > 0 {}
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
        Ok(())
    }

    /// Gives up the connection without reading it further (a stalled consumer).
    pub fn into_stream(self) -> TcpStream {
        self.stream.into_tcp()
    }

    /// Whether the TLS handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.stream.resumed()
    }
}

/// Base64 of 16 bytes, as `Sec-WebSocket-Key` wants.
fn websocket_key(bytes: [u8; 16]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_base64() {
        // RFC 6455 §1.3 sample nonce.
        assert_eq!(websocket_key(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn headers_of_all_lengths() {
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
        assert_eq!(parse_header(&[0x81, 5]).unwrap(), Some(Header { fin: true, opcode: 1, header_len: 2, payload_len: 5 }));
        assert_eq!(parse_header(&[0x01, 126, 1]).unwrap(), None);
        assert_eq!(parse_header(&[0x01, 126, 1, 0]).unwrap(), Some(Header { fin: false, opcode: 1, header_len: 4, payload_len: 256 }));
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(parse_header(&long).unwrap(), Some(Header { fin: true, opcode: 2, header_len: 10, payload_len: 70_000 }));
        assert!(parse_header(&[0x81, 0x85]).is_err(), "masked server frame");
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(OP_TEXT, &payload, mask, &mut out);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80);
            // Unmask the header's length bit and reuse the server-side parser.
            let mut unmasked = out.clone();
            unmasked[1] &= 0x7f;
            let h = parse_header(&unmasked).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
            let body = &out[h.header_len + 4..];
            let decoded: Vec<u8> = body.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
            assert_eq!(decoded, payload);
        }
    }

    /// A fake server on a loopback socket: fragmented text, a ping, then close.
    #[tokio::test]
    async fn reads_messages_and_answers_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            assert!(req[..n].starts_with(b"GET /app/k HTTP/1.1\r\n"));
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend_from_slice(&[0x81, 2, b'h', b'i']);
            out.extend_from_slice(&[0x01, 1, b'a', 0x80, 1, b'b']);
            out.extend_from_slice(&[0x89, 1, b'p']);
            out.extend_from_slice(&[0x88, 0]);
            s.write_all(&out).await.unwrap();
            let mut pong = [0u8; 7];
            s.read_exact(&mut pong).await.unwrap();
            assert_eq!(pong[0], 0x8A);
            assert_eq!(pong[6] ^ pong[2], b'p');
        });
        let ep = Endpoint { server, source: Some("127.0.0.2".parse().unwrap()), recv_buffer: Some(4096), tls: None };
        let mut c = WsConn::connect(ep, "x", "/app/k").await.unwrap();
        assert_eq!(c.read().await.unwrap(), Message::Text(b"hi"));
        assert_eq!(c.read().await.unwrap(), Message::Text(b"ab"));
        assert_eq!(c.read().await.unwrap(), Message::Close);
        srv.await.unwrap();
    }
}
