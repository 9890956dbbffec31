//! An accepted socket on a TLS listener: the TLS handshake under the edge's head deadline,
//! then the same routing as a plain socket, on decrypted bytes: `GET /app/` to the websocket
//! endpoint's own handshake, anything else to hyper.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Accepting;
use crate::edge::{json_reply, Slot};
use crate::metrics::Metrics;
use crate::tls::handshake::HandshakeError;
use crate::tls::{Tls, TlsSocket, TlsStream};

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// Why a TLS handshake failed, as counted in `sonde_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not finished by the head deadline.
    Timeout,
    /// The peer left (or reset) before the handshake was done.
    Eof,
    /// Plain HTTP (or anything but a ClientHello) on the TLS port.
    Plaintext,
    /// No protocol version, cipher suite, group or signature scheme in common.
    NoSharedCipher,
    /// The client refused the relay's certificate.
    BadCertificate,
    /// Anything else the client sent that TLS does not allow.
    Protocol,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Eof => "eof",
            Self::Plaintext => "plaintext",
            Self::NoSharedCipher => "no_shared_cipher",
            Self::BadCertificate => "bad_certificate",
            Self::Protocol => "protocol",
        }
    }

    /// Sorts an error from the handshake into one of the reasons.
    pub fn of(e: &HandshakeError) -> Self {
        use rustls::{AlertDescription as A, Error as E};
        match e {
            HandshakeError::Tls(E::PeerIncompatible(_) | E::NoApplicationProtocol) => Self::NoSharedCipher,
            HandshakeError::Tls(E::AlertReceived(
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::HandshakeFailure,
            )) => Self::BadCertificate,
            HandshakeError::Tls(_) => Self::Protocol,
            HandshakeError::Io(_) => Self::Eof,
        }
    }
}

/// What a plain HTTP request on the TLS port is told before the socket is closed.
fn plaintext_reply() -> String {
    json_reply("400 Bad Request", "this port speaks TLS: use https:// or wss://")
}

/// Answers plain HTTP with 400 and closes, without waiting for anything. The request is
/// read first (what has arrived of it), so the close is not a reset that could destroy the
/// answer before the client reads it.
fn refuse_plaintext(tcp: &TcpStream) {
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match tcp.try_read(&mut sink) {
            Ok(n) if n == sink.len() => continue,
            _ => break,
        }
    }
    let _ = tcp.try_write(plaintext_reply().as_bytes());
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
}

/// Serves one accepted socket of a TLS listener until it closes. `deadline` is the socket's
/// head deadline, which the handshake and the request head share.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, tls: Arc<Tls>, accepting: Arc<Accepting>, slot: Slot, deadline: Instant) {
    let ws = &accepting.ws;
    let Some(stream) = Box::pin(handshake(tcp, &ws.door.metrics, deadline, &tls)).await else { return };
    let mut stream = TlsStream::new(stream, BytesMut::new());
    let sniff = tokio::select! {
        s = tokio::time::timeout_at(deadline, sniff(&mut stream)) => s,
        () = ws.door.shutdown.cancelled() => return,
    };
    match sniff {
        Ok(Ok(true)) => Box::pin(crate::ws::accept::serve(stream, peer, ws.clone(), slot, deadline)).await,
        Ok(Ok(false)) => Box::pin(crate::http::serve(stream, peer, ws.door.clone(), accepting.routes.clone(), slot, true)).await,
        Ok(Err(_)) => {}
        // Nothing said before the deadline: an idle socket holds no place.
        Err(_) => ws.door.metrics.edge_refused("head_timeout"),
    }
}

/// The TLS handshake, bounded by the head deadline; the connection on success (counted and
/// timed either way).
async fn handshake(tcp: TcpStream, metrics: &Metrics, deadline: Instant, tls: &Tls) -> Option<Arc<TlsSocket>> {
    let fail = |f: Failure| {
        metrics.tls_handshake_failed(f.label());
        if f == Failure::Timeout {
            metrics.edge_refused("head_timeout");
        }
        None
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => return fail(Failure::Timeout),
        Ok(Ok(0) | Err(_)) => return fail(Failure::Eof),
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE => {
            refuse_plaintext(&tcp);
            return fail(Failure::Plaintext);
        }
        Ok(Ok(_)) => {}
    }
    let started = Instant::now();
    let done = match tokio::time::timeout_at(deadline, crate::tls::handshake::handshake(tcp, tls.server.clone())).await {
        Err(_) => return fail(Failure::Timeout),
        Ok(Err(e)) => {
            // What rustls says is about the protocol, never the key or the traffic.
            tracing::debug!(reason = Failure::of(&e).label(), error = ?e, "TLS handshake failed");
            return fail(Failure::of(&e));
        }
        Ok(Ok(done)) => done,
    };
    metrics.tls_handshake_seconds.observe(started.elapsed().as_secs_f64());
    Some(Arc::new(done))
}

/// Reads decrypted bytes until they tell whether this is the websocket endpoint. The bytes
/// stay in the stream, read again by whoever serves it.
async fn sniff(stream: &mut TlsStream) -> io::Result<bool> {
    let prefix = crate::ws::accept::APP_PREFIX;
    loop {
        let seen = stream.ahead();
        if seen.len() >= prefix.len() || !prefix.starts_with(seen) {
            return Ok(seen.starts_with(prefix));
        }
        if stream.read_ahead().await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}
