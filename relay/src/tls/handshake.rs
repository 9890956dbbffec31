//! The server side of a TLS handshake on an accepted socket, with rustls's unbuffered API:
//! the bytes in flight live in this future only, freed once the handshake is done. The
//! caller bounds it by the socket's head deadline.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use super::socket::TlsSocket;
use super::state::{Phase, TlsState, MAX_PARTIAL};
use crate::net::Socket;

/// How a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed, or the peer left.
    Io(io::Error),
    /// What the peer sent is not a handshake rustls accepts (or it refused ours).
    Tls(rustls::Error),
}

/// Bytes read at once during the handshake.
const READ: usize = 16 * 1024;

/// Writes all of `out`, waiting for room as needed.
async fn write_all(socket: &Socket, out: &[u8]) -> io::Result<()> {
    let mut at = 0;
    while at < out.len() {
        match (&mut socket.get_ref()).write(&out[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what the peer sent next into `fresh` (replacing its contents).
async fn read_some(socket: &Socket, fresh: &mut Vec<u8>) -> io::Result<()> {
    fresh.resize(READ, 0);
    let n = std::future::poll_fn(|cx| socket.poll_read_with(cx, |s| (&mut &*s).read(fresh).map(|n| (n, n < READ)))).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    fresh.truncate(n);
    Ok(())
}

/// Runs the handshake to its end (the client's Finished received, tickets sent).
pub async fn handshake(tcp: tokio::net::TcpStream, config: Arc<ServerConfig>) -> Result<TlsSocket, HandshakeError> {
    let socket = Socket::new(tcp).map_err(HandshakeError::Io)?;
    let conn = UnbufferedServerConnection::new(config).map_err(HandshakeError::Tls)?;
    let mut st = TlsState::new(conn);
    let mut early = Vec::new();
    let mut fresh = Vec::new();
    let mut out = Vec::new();
    loop {
        out.clear();
        let phase = st.receive(&mut fresh, &mut out, &mut |p| early.extend_from_slice(p)).map_err(HandshakeError::Tls)?;
        write_all(&socket, &out).await.map_err(HandshakeError::Io)?;
        match phase {
            Phase::Traffic if !st.conn.is_handshaking() => break,
            Phase::Closed => return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into())),
            Phase::Traffic | Phase::Blocked => {}
        }
        if st.partial.len() > MAX_PARTIAL {
            return Err(HandshakeError::Tls(rustls::Error::General("handshake message too large".into())));
        }
        read_some(&socket, &mut fresh).await.map_err(HandshakeError::Io)?;
    }
    // Application data that came with the client's last flight (a request, often).
    st.plain = early;
    Ok(TlsSocket::new(socket, st))
}
