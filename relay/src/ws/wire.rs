//! The two kinds of socket a websocket connection runs on, plain TCP and TLS, behind one
//! reader and one writer (an enum rather than a generic: one connection type, one task size).

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::codec::Source;
use super::tcp::TcpWriter;
use crate::hub::{DirectWrite, Outgoing, Written};
use crate::net::{Socket, SocketReader};
use crate::tls::{TlsReader, TlsSocket, TlsWriter};

/// An upgraded connection's socket, as the handshake hands it on.
pub enum Wire {
    Tcp(tokio::net::TcpStream),
    Tls(Arc<TlsSocket>),
}

impl Wire {
    /// The reader and writer of a connection; `None` if the socket cannot be registered.
    pub fn split(self) -> io::Result<(Reader, Writer)> {
        Ok(match self {
            Self::Tcp(tcp) => {
                let socket = Arc::new(Socket::new(tcp)?);
                (Reader::Tcp(SocketReader(socket.clone())), Writer::Tcp(TcpWriter(socket)))
            }
            Self::Tls(tls) => (Reader::Tls(TlsReader(tls.clone())), Writer::Tls(TlsWriter(tls))),
        })
    }
}

pub enum Reader {
    Tcp(SocketReader),
    Tls(TlsReader),
}

impl Source for Reader {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        match self {
            Self::Tcp(r) => r.poll_fill(cx, buf),
            Self::Tls(r) => r.poll_fill(cx, buf),
        }
    }
}

pub enum Writer {
    Tcp(TcpWriter),
    Tls(TlsWriter),
}

impl Writer {
    /// Writes frames in order, waiting for the socket as needed (the connection's task).
    pub async fn write(&self, items: &[Outgoing]) -> io::Result<()> {
        match self {
            Self::Tcp(w) => w.write(items).await,
            Self::Tls(w) => w.write(items).await,
        }
    }

    fn socket(&self) -> &Socket {
        match self {
            Self::Tcp(w) => &w.0,
            Self::Tls(w) => w.0.socket(),
        }
    }

    /// Resets the connection on close, dropping what the kernel still holds for it (a peer
    /// that stopped reading would otherwise keep its buffers until the write deadline).
    pub fn reset(&self) {
        let _ = socket2::SockRef::from(self.socket().get_ref()).set_linger(Some(Duration::ZERO));
    }

    /// Stops writing: a TLS connection sends close_notify first, if the socket takes it.
    pub fn shutdown(&self) {
        match self {
            Self::Tcp(w) => w.0.shutdown_write(),
            Self::Tls(w) => w.shutdown(),
        }
    }
}

impl DirectWrite for Writer {
    fn try_write(&self, frames: &[Bytes], raw: bool) -> Written {
        match self {
            Self::Tcp(w) => w.try_write(frames, raw),
            Self::Tls(w) => w.try_write(frames, raw),
        }
    }
}
