//! RFC 6455 framing, server side, over any byte stream.
//!
//! Written for the relay's needs: the read buffer starts small and grows only for large
//! messages (tungstenite's 128 KiB per connection is far too much for idle viewers), and
//! outgoing frames are shared `Bytes` gathered into one write.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use sonde_protocol::close::rfc6455;
use sonde_protocol::wsframe::{self, HeadError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Bytes the read buffer grows by while a message arrives.
const READ_CHUNK: usize = 256;
/// Bytes an idle connection's pending read holds (client messages are rare and small).
const IDLE_READ: usize = 64;

pub use crate::net::Source;

/// Any byte stream, read into the buffer's spare room: `IDLE_READ` bytes at a time while
/// waiting for a message, more once one is arriving.
impl<T: AsyncRead + Unpin> Source for T {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        if buf.is_empty() && buf.capacity() == 0 {
            buf.reserve(IDLE_READ);
        } else if buf.capacity() - buf.len() < IDLE_READ {
            buf.reserve(READ_CHUNK.max(buf.len()));
        }
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }
}

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Text(Bytes),
    Binary,
    Ping(Bytes),
    Pong,
    Close(Option<u16>),
}

/// A violation that ends the connection, with the websocket close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    #[error("text message is not valid UTF-8")]
    BadUtf8,
    #[error("connection closed without a close frame")]
    Eof,
    #[error("i/o error: {0}")]
    Io(String),
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => rfc6455::PROTOCOL_ERROR,
            Self::TooBig(_) => rfc6455::TOO_BIG,
            Self::BadUtf8 => rfc6455::INVALID_PAYLOAD,
            Self::Eof | Self::Io(_) => rfc6455::ABNORMAL,
        }
    }
}

pub struct WsStream<S> {
    io: S,
    dec: Decoder,
}

/// The receiving half of the framing, without I/O: bytes go in, whole messages come out.
pub struct Decoder {
    rbuf: BytesMut,
    max_message: usize,
    /// The opcode and payload of a fragmented message being assembled.
    partial: Option<(u8, BytesMut)>,
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

impl<S: Source> WsStream<S> {
    pub fn new(io: S, max_message: usize) -> Self {
        Self { io, dec: Decoder::new(max_message, &[]) }
    }

    /// Starts with bytes already read past the HTTP request.
    pub fn with_prefix(io: S, max_message: usize, prefix: &[u8]) -> Self {
        Self { io, dec: Decoder::new(max_message, prefix) }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Reads the next complete message. Cancel safe: bytes read stay in the buffer.
    pub async fn recv(&mut self) -> Result<Inbound, WsError> {
        loop {
            if let Some(msg) = self.dec.next_message()? {
                return Ok(msg);
            }
            let (io, rbuf) = (&mut self.io, &mut self.dec.rbuf);
            match poll_fn(|cx| io.poll_fill(cx, rbuf)).await {
                Ok(0) => return Err(WsError::Eof),
                Ok(_) => {}
                Err(e) => return Err(WsError::Io(e.to_string())),
            }
        }
    }
}

impl Decoder {
    pub fn new(max_message: usize, prefix: &[u8]) -> Self {
        Self { rbuf: BytesMut::from(prefix), max_message, partial: None }
    }

    /// Appends bytes received from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.rbuf.extend_from_slice(bytes);
    }

    /// The next whole message among the bytes fed so far, if there is one yet.
    pub fn next_message(&mut self) -> Result<Option<Inbound>, WsError> {
        while let Some(frame) = self.parse_frame()? {
            if let Some(msg) = self.assemble(frame)? {
                self.shrink();
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    fn shrink(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
    }

    fn parse_frame(&mut self) -> Result<Option<Frame>, WsError> {
        let b = &self.rbuf[..];
        // The first two bytes say whether the frame is acceptable at all: refused before its
        // length and mask have arrived.
        if let [b0, b1, ..] = b {
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("client frames must be masked"));
            }
        }
        let head = match wsframe::parse_head(b) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(HeadError::LengthTopBit) => return Err(WsError::Protocol("64-bit payload length with the top bit set")),
        };
        let Some(mask) = head.mask else { return Err(WsError::Protocol("client frames must be masked")) };
        if head.is_control() && (head.payload_len > 125 || !head.fin) {
            return Err(WsError::Protocol("control frames must be short and unfragmented"));
        }
        // Control frames may arrive between fragments: only data frames add to the message.
        let partial_len = if head.is_control() { 0 } else { self.partial.as_ref().map_or(0, |(_, p)| p.len()) };
        let len = usize::try_from(head.payload_len).ok().filter(|&n| n.checked_add(partial_len).is_some_and(|total| total <= self.max_message));
        let Some(len) = len else { return Err(WsError::TooBig(self.max_message)) };
        // `len` is at most `max_message`, so the frame's size cannot overflow.
        let frame_len = head.head_len + len;
        if b.len() < frame_len {
            self.rbuf.reserve(frame_len - b.len());
            return Ok(None);
        }
        self.rbuf.advance(head.head_len);
        let mut payload = self.rbuf.split_to(len);
        wsframe::apply_mask(&mut payload, mask);
        Ok(Some(Frame { fin: head.fin, opcode: head.opcode, payload }))
    }

    fn assemble(&mut self, f: Frame) -> Result<Option<Inbound>, WsError> {
        match f.opcode {
            0x0 => {
                let Some((op, mut buf)) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation without a message"));
                };
                buf.extend_from_slice(&f.payload);
                if f.fin {
                    return finish(op, buf).map(Some);
                }
                self.partial = Some((op, buf));
                Ok(None)
            }
            0x1 | 0x2 => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                if f.fin {
                    return finish(f.opcode, f.payload).map(Some);
                }
                self.partial = Some((f.opcode, f.payload));
                Ok(None)
            }
            0x8 => close_payload(&f.payload).map(|code| Some(Inbound::Close(code))),
            0x9 => Ok(Some(Inbound::Ping(f.payload.freeze()))),
            0xA => Ok(Some(Inbound::Pong)),
            _ => Err(WsError::Protocol("unknown opcode")),
        }
    }
}

impl<S: Source + AsyncWrite> WsStream<S> {
    /// Writes text frames, gathered into one write.
    pub async fn send_texts(&mut self, frames: &[Bytes]) -> std::io::Result<()> {
        let total: usize = frames.iter().map(|f| f.len() + 10).sum();
        let mut out = Vec::with_capacity(total);
        for f in frames {
            put_header(&mut out, 0x1, f.len());
            out.extend_from_slice(f);
        }
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// Sends a close frame; the caller then waits briefly for the client's and drops.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        self.io.write_all(&close_frame(code, reason)).await?;
        self.io.flush().await
    }

    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// The status code of a close frame (RFC 6455 §5.5.1, §7.4): none, or a code a peer may
/// send followed by a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::BadUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// Codes a peer may put in a close frame (`protocol::close::rfc6455::valid_on_the_wire`).
pub fn valid_close_code(code: u16) -> bool {
    rfc6455::valid_on_the_wire(code)
}

fn finish(opcode: u8, payload: BytesMut) -> Result<Inbound, WsError> {
    if opcode == 0x2 {
        return Ok(Inbound::Binary);
    }
    if std::str::from_utf8(&payload).is_err() {
        return Err(WsError::BadUtf8);
    }
    Ok(Inbound::Text(payload.freeze()))
}

/// A frame header, written into a small array.
pub use sonde_protocol::wsframe::server_head as header;

/// A whole control or close frame, as bytes.
pub fn control_frame(opcode: u8, payload: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(payload.len() + 2);
    put_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    bytes::Bytes::from(out)
}

/// A close frame with a code and a reason (truncated to fit).
pub fn close_frame(code: u16, reason: &str) -> bytes::Bytes {
    let reason = truncate_utf8(reason, 123);
    let mut payload = Vec::with_capacity(reason.len() + 2);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    control_frame(0x8, &payload)
}

fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let (h, n) = header(opcode, len);
    out.extend_from_slice(&h[..n]);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Inbound, WsError>> {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        a.write_all(&bytes).await.unwrap();
        drop(a);
        let mut ws = WsStream::new(b, max);
        let mut out = Vec::new();
        loop {
            let r = ws.recv().await;
            let end = r.is_err();
            out.push(r);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn messages_fragments_and_control_frames() {
        let mut bytes = client_frame(true, 1, b"hello");
        bytes.extend(client_frame(false, 1, b"hel"));
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, b"lo"));
        bytes.extend(client_frame(true, 1, &vec![b'x'; 300]));
        bytes.extend(client_frame(true, 8, &1000u16.to_be_bytes()));
        let got = read_all(bytes, 1000).await;
        assert_eq!(got[0], Ok(Inbound::Text(Bytes::from_static(b"hello"))));
        assert_eq!(got[1], Ok(Inbound::Ping(Bytes::from_static(b"p"))));
        assert_eq!(got[2], Ok(Inbound::Text(Bytes::from_static(b"hello"))));
        assert_eq!(got[3], Ok(Inbound::Text(Bytes::from(vec![b'x'; 300]))));
        assert_eq!(got[4], Ok(Inbound::Close(Some(1000))));
        assert_eq!(got[5], Err(WsError::Eof));
    }

    #[tokio::test]
    async fn violations_end_the_connection_with_the_right_code() {
        let unmasked = vec![0x81, 0x01, b'a'];
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked, 1002),
            (client_frame(true, 1, &[b'x'; 200]), 1009),
            (client_frame(true, 1, &[0xff, 0xfe]), 1007),
            (client_frame(true, 3, b""), 1002),
            (client_frame(true, 0, b"x"), 1002),
            (client_frame(false, 9, b"x"), 1002),
        ];
        for (bytes, code) in cases {
            let got = read_all(bytes, 100).await;
            assert_eq!(got.last().unwrap().as_ref().unwrap_err().close_code(), code);
        }
    }

    #[tokio::test]
    async fn frames_are_written_with_correct_headers() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut ws = WsStream::new(a, 100);
        ws.send_texts(&[Bytes::from_static(b"ab"), Bytes::from(vec![b'z'; 200])]).await.unwrap();
        ws.send_close(4200, "bye").await.unwrap();
        drop(ws);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..4], &[0x81, 2, b'a', b'b']);
        assert_eq!(&got[4..8], &[0x81, 126, 0, 200]);
        let close = &got[8 + 200..];
        assert_eq!(close, &[0x88, 5, 0x10, 0x68, b'b', b'y', b'e']);
    }
}
