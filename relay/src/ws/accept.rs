//! The websocket endpoint's own HTTP handshake on an accepted TCP socket, so the connection
//! owns its socket: publishers can then write to it directly without waking its task.
//! Every other request goes to hyper untouched (`peek` reads without consuming).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sonde_protocol::SocketId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::conn::{self, Refusal, Start};
use super::handshake;
use super::upgrade::check;
use super::wire::Wire;
use super::Endpoint;
use crate::apps::App;
use crate::edge::{json_reply, Slot};
use crate::tokens::Grant;

/// Longest request head accepted on the websocket endpoint.
const MAX_HEAD: usize = 8 * 1024;
/// How a request to the websocket endpoint starts.
pub const APP_PREFIX: &[u8] = b"GET /app/";
/// Longest pause between two looks at a request that arrives a few bytes at a time.
const MAX_SNIFF_PAUSE: Duration = Duration::from_millis(100);

/// Whether the connection starts with `GET /app/` (waiting for enough bytes to tell); `None`
/// when the client has said nothing telling by the deadline.
pub async fn is_app_socket(tcp: &TcpStream, deadline: Instant) -> Option<bool> {
    tokio::time::timeout_at(deadline, starts_with(tcp, &[APP_PREFIX])).await.ok().map(|found| found.is_some())
}

/// Which of `prefixes` (each at most 16 bytes) the stream starts with, peeking without
/// consuming; `None` as soon as it cannot be any of them (or the peer is gone). The caller
/// bounds the wait.
pub async fn starts_with(tcp: &TcpStream, prefixes: &[&[u8]]) -> Option<usize> {
    let mut buf = [0u8; 16];
    let want = prefixes.iter().map(|p| p.len()).max().unwrap_or(0).min(buf.len());
    let mut pause = Duration::from_millis(1);
    loop {
        let n = tcp.peek(&mut buf[..want]).await.ok()?;
        let seen = &buf[..n];
        if n == 0 || !prefixes.iter().any(|p| p.starts_with(seen) || seen.starts_with(p)) {
            return None;
        }
        if let Some(i) = prefixes.iter().position(|p| seen.starts_with(p)) {
            return Some(i);
        }
        // Part of a prefix is here: a real client sends its request line in one packet, so
        // this is a slow or hostile one. Wait longer each time (a peek returns at once while
        // bytes are waiting, so a fixed short pause would poll it hundreds of times a second).
        pause = (pause * 2).min(MAX_SNIFF_PAUSE);
        tokio::time::sleep(pause).await;
    }
}

/// Every value of a header, as text.
fn values<'a>(req: &'a httparse::Request<'_, '_>, name: &'a str) -> impl Iterator<Item = &'a str> {
    req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).filter_map(|h| std::str::from_utf8(h.value).ok())
}

fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &'a str) -> Option<&'a str> {
    values(req, name).next()
}

/// A stream the websocket handshake runs on (plain TCP, or TLS after its own handshake),
/// handed on to the connection once upgraded.
pub trait HandshakeIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket for the connection, and plaintext it read ahead that nobody has seen yet.
    fn into_wire(self) -> (Wire, BytesMut);
}

impl HandshakeIo for TcpStream {
    fn into_wire(self) -> (Wire, BytesMut) {
        (Wire::Tcp(self), BytesMut::new())
    }
}

impl HandshakeIo for crate::tls::TlsStream {
    fn into_wire(self) -> (Wire, BytesMut) {
        let (tls, ahead) = self.into_parts();
        (Wire::Tls(tls), ahead)
    }
}

/// Reads the request head, answers 101 (or an HTTP error) and runs the connection. The
/// handshake runs in a future of its own, freed once done: the connection's lifelong state
/// need not have room for it.
pub async fn serve<S: HandshakeIo + 'static>(tcp: S, peer: SocketAddr, ws: Endpoint, mut slot: Slot, deadline: Instant) {
    let door = &ws.door;
    // Accepted when the head deadline started: the figure is what a client waits, any TLS
    // handshake included.
    let accepted = deadline.checked_sub(door.gate.head_timeout).unwrap_or_else(Instant::now);
    let handshake = tokio::time::timeout_at(deadline, Box::pin(handshake(tcp, peer, &ws, &mut slot)));
    let Ok(done) = handshake.await else {
        door.metrics.edge_refused("head_timeout");
        return;
    };
    let Some((tcp, mut rest, verdict)) = done else { return };
    slot.handshake_done();
    let took = accepted.elapsed();
    door.metrics.ws_handshake_seconds.observe(took.as_secs_f64());
    door.metrics.insight.recorder.slow_handshake(ws.tls, peer.ip(), took);
    match verdict {
        Err(r) => conn::refuse(tcp, r).await,
        Ok((app, grant)) => {
            let socket_id = SocketId::new(rand::random::<u64>() % 10_000_000_000, rand::random::<u64>() % 10_000_000_000);
            // A task of its own: the connection's lifelong task then holds only the
            // connection, not the sniffing and handshake that led to it.
            let (wire, ahead) = tcp.into_wire();
            rest.extend_from_slice(&ahead);
            let task = conn::serve(wire, rest, Start { app, socket_id, grant, slot }, ws.timing, door.shutdown.clone());
            door.tracker.spawn(crate::edge::guarded(task, door.metrics.clone()));
        }
    }
}

/// The checks' verdict: the app and token, or why the connection is refused.
type Verdict = Result<(Arc<App>, Option<Arc<Grant>>), Refusal>;

/// Writes an HTTP error reply; the caller then drops the socket.
async fn refuse_http<S: AsyncWrite + Unpin>(tcp: &mut S, status: &str, message: &str) {
    write_reply(tcp, json_reply(status, message).as_bytes()).await;
}

/// Writes a reply and flushes it (a TLS stream holds ciphertext until flushed).
async fn write_reply<S: AsyncWrite + Unpin>(io: &mut S, reply: &[u8]) -> bool {
    io.write_all(reply).await.is_ok() && io.flush().await.is_ok()
}

/// Reads the request head and answers 101 (or an HTTP error, then `None`). Returns what was
/// read past the head and the verdict of the app's checks. The caller bounds it by the
/// socket's head deadline.
async fn handshake<S: HandshakeIo>(mut tcp: S, peer: SocketAddr, ws: &Endpoint, slot: &mut Slot) -> Option<(S, BytesMut, Verdict)> {
    let mut buf = BytesMut::with_capacity(1024);
    let head_len = loop {
        match tcp.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if i + 4 > MAX_HEAD {
                refuse_http(&mut tcp, "431 Request Header Fields Too Large", "request head too large").await;
                return None;
            }
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            refuse_http(&mut tcp, "431 Request Header Fields Too Large", "request head too large").await;
            return None;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 40];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            refuse_http(&mut tcp, "431 Request Header Fields Too Large", "more than 40 header fields").await;
            return None;
        }
        _ => {
            refuse_http(&mut tcp, "400 Bad Request", "malformed request head").await;
            return None;
        }
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let key = path.strip_prefix("/app/").unwrap_or("");
    if key.is_empty() || key.contains('/') {
        refuse_http(&mut tcp, "400 Bad Request", "expected a websocket upgrade on /app/{key}").await;
        return None;
    }
    let ws_key = match handshake::key(|name| values(&req, name)) {
        Ok(ws_key) => ws_key,
        Err(refused) => {
            write_reply(&mut tcp, refusal(refused).as_bytes()).await;
            return None;
        }
    };
    let client = ws.door.gate.client_ip(peer.ip(), header(&req, "x-forwarded-for"));
    if let Err(r) = slot.rebind(client) {
        write_reply(&mut tcp, r.reply().as_bytes()).await;
        return None;
    }
    let verdict = check(&ws.apps, key, query, header(&req, "origin"), client);
    let mut response = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in handshake::switching_protocols(ws_key.as_bytes()) {
        let _ = write!(response, "{name}: {value}\r\n");
    }
    response.push_str("\r\n");
    if !write_reply(&mut tcp, response.as_bytes()).await {
        return None;
    }
    let rest = buf.split_off(head_len);
    Some((tcp, rest, verdict))
}

/// A refused handshake's reply as `upgrade` gives it through hyper, written on the socket.
fn refusal(refused: handshake::Refused) -> String {
    let reply = refused.reply();
    let status = format!("{} {}", reply.status.as_u16(), reply.status.canonical_reason().unwrap_or(""));
    let raw = json_reply(&status, &reply.message);
    match refused.header() {
        Some((name, value)) => raw.replacen("\r\n", &format!("\r\n{name}: {value}\r\n"), 1),
        None => raw,
    }
}
