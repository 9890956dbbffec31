//! The PROXY protocol on the public listener (`[edge] proxy_protocol = true`): a socket from a
//! peer in `trusted_proxies` must start with a PROXY header (v1 or v2), and the client it
//! names stands for the peer from then on, for the per-address limits and the logs.
//!
//! From any other peer nothing is looked for: its bytes are its own request, so a client cannot
//! name itself. The header is read with `peek` until it is whole and then exactly its bytes are
//! taken off the socket, so what follows (a TLS ClientHello, an HTTP request) stays in the
//! kernel for the usual path, and nothing is buffered here past the parser's bounds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::edge::Door;
use crate::proxy_header::{self, Parsed, MAX_V1_BYTES, MAX_V2_BYTES};

/// The longest wait between two looks at a header that arrives a few bytes at a time.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The address to serve `tcp` as: the peer's own, or behind a trusted proxy speaking the PROXY
/// protocol the client its header names. `None` when the socket must be closed (no header, a
/// broken one, or none by the head deadline); the refusal is counted.
pub async fn client(tcp: &TcpStream, peer: SocketAddr, door: &Door, deadline: Instant) -> Option<SocketAddr> {
    if !door.gate.proxy_protocol || !door.gate.is_trusted(peer.ip()) {
        return Some(peer);
    }
    match read_header(tcp, deadline).await {
        Ok(client) => Some(client.unwrap_or(peer)),
        Err(reason) => {
            door.metrics.edge_refused(reason);
            None
        }
    }
}

/// Waits for a whole header, takes it off the socket and returns the client it names
/// (`None`: the proxy speaks for itself). The error is a refusal reason for the metrics.
pub async fn read_header(tcp: &TcpStream, deadline: Instant) -> Result<Option<SocketAddr>, &'static str> {
    let mut buf = vec![0u8; MAX_V1_BYTES.max(MAX_V2_BYTES)];
    let mut seen = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Err(_) => return Err("head_timeout"),
            Ok(Err(_) | Ok(0)) => return Err("proxy_header"),
            Ok(Ok(n)) => n,
        };
        match proxy_header::parse(&buf[..n]) {
            Parsed::Complete { client, len } => {
                consume(tcp, &mut buf[..len], deadline).await?;
                return Ok(client);
            }
            Parsed::Invalid(_) => return Err("proxy_header"),
            Parsed::Incomplete if n > seen => {
                seen = n;
                pause = Duration::from_millis(1);
            }
            // Nothing new: a peek returns at once while bytes wait, so back off rather than
            // look hundreds of times a second at a header trickled in on purpose.
            Parsed::Incomplete => pause = (pause * 2).min(MAX_PAUSE),
        }
        if tokio::time::timeout_at(deadline, tokio::time::sleep(pause)).await.is_err() {
            return Err("head_timeout");
        }
    }
}

/// Reads exactly `buf.len()` bytes (already peeked, so already in the kernel's buffer).
async fn consume(tcp: &TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), &'static str> {
    let mut got = 0;
    while got < buf.len() {
        match tcp.try_read(&mut buf[got..]) {
            Ok(0) => return Err("proxy_header"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !matches!(tokio::time::timeout_at(deadline, tcp.readable()).await, Ok(Ok(()))) {
                    return Err("head_timeout");
                }
            }
            Err(_) => return Err("proxy_header"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn takes_only_the_header_off_the_socket() {
        let (mut proxy, server) = pair().await;
        proxy.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let client = read_header(&server, deadline).await.unwrap();
        assert_eq!(client, Some("203.0.113.7:51234".parse().unwrap()));
        let mut server = server;
        let mut rest = [0u8; 16];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n", "the request after the header is untouched");
    }

    #[tokio::test]
    async fn waits_for_a_header_in_pieces_within_the_deadline() {
        let (mut proxy, server) = pair().await;
        let header = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n";
        let writer = tokio::spawn(async move {
            for piece in header.chunks(10) {
                proxy.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy
        });
        let client = read_header(&server, Instant::now() + Duration::from_secs(5)).await.unwrap();
        assert_eq!(client, Some("[2001:db8::7]:40000".parse().unwrap()));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn refuses_a_missing_broken_or_late_header() {
        let (mut plain, server) = pair().await;
        plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(read_header(&server, Instant::now() + Duration::from_secs(5)).await, Err("proxy_header"));
        let (mut slow, server) = pair().await;
        slow.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
        let started = Instant::now();
        assert_eq!(read_header(&server, started + Duration::from_millis(300)).await, Err("head_timeout"));
        assert!(started.elapsed() < Duration::from_secs(2), "cut at the deadline, not later");
        let (gone, server) = pair().await;
        drop(gone);
        assert_eq!(read_header(&server, Instant::now() + Duration::from_secs(2)).await, Err("proxy_header"));
    }
}
