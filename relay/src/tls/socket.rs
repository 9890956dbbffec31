//! A TLS connection after its handshake: the socket (registered for reading only, as every
//! accepted socket) and rustls's state behind a short lock, shared by the connection's task
//! (reading, flushing), the publishers and the fan-out lanes (writing without waiting).
//!
//! Ciphertext is read through the thread's scratch buffer and decrypted at once; what the
//! peer sent is handed on as plaintext, so between messages the connection holds no read
//! buffer of its own beyond rustls's record buffer.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::{with_scratch, Socket};
use crate::ws::codec::Source;

pub struct TlsSocket {
    pub(crate) socket: Socket,
    pub(crate) conn: Mutex<ServerConnection>,
}

/// Plaintext handed out per step when the caller takes everything there is.
const PLAIN_CHUNK: usize = 4096;

impl TlsSocket {
    pub fn new(socket: Socket, mut conn: ServerConnection) -> Self {
        // Outgoing data is bounded by the connection's outbox before it gets here; rustls must
        // take all of it, or a frame could be cut between two writers.
        conn.set_buffer_limit(None);
        Self { socket, conn: Mutex::new(conn) }
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Moves the plaintext rustls holds into `sink`: `Some(n)` bytes (0: the peer closed the
    /// TLS session), `None` when nothing is waiting.
    fn drain_plain(conn: &mut ServerConnection, sink: &mut dyn FnMut(&[u8])) -> io::Result<Option<usize>> {
        let mut chunk = [0u8; PLAIN_CHUNK];
        let mut total = 0;
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => return Ok(Some(total)),
                Ok(n) => {
                    sink(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total > 0).then_some(total)),
                Err(e) => return if total > 0 { Ok(Some(total)) } else { Err(e) },
            }
        }
    }

    /// Decrypts `cipher` (all of it), handing plaintext to `sink`. A record rustls refuses
    /// ends the connection: its alert is sent without waiting, best effort.
    fn decrypt(&self, mut cipher: &[u8], sink: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut conn = self.conn.lock();
        let mut total = 0;
        while !cipher.is_empty() {
            // Never with an empty slice: rustls would take that for the end of the stream.
            conn.read_tls(&mut cipher)?;
            if let Err(e) = conn.process_new_packets() {
                let _ = conn.write_tls(&mut self.socket.get_ref());
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            total += Self::drain_plain(&mut conn, sink)?.unwrap_or(0);
        }
        // A key update or alert rustls wants to answer with goes out now if the socket takes it.
        if conn.wants_write() {
            let _ = conn.write_tls(&mut self.socket.get_ref());
        }
        Ok(total)
    }

    /// Plaintext for `sink`, reading and decrypting as needed: `Ok(0)` at the end of the
    /// stream (a close_notify or the peer gone).
    pub(crate) fn poll_plain(&self, cx: &mut Context<'_>, sink: &mut dyn FnMut(&[u8])) -> Poll<io::Result<usize>> {
        loop {
            match Self::drain_plain(&mut self.conn.lock(), sink) {
                Ok(Some(n)) => return Poll::Ready(Ok(n)),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut plain = 0;
            let got = ready!(self.socket.poll_read_with(cx, |s| {
                with_scratch(|scratch| {
                    let n = (&mut &*s).read(scratch)?;
                    if n > 0 {
                        plain = self.decrypt(&scratch[..n], sink)?;
                    }
                    Ok((n, n < scratch.len()))
                })
            }))?;
            match (got, plain) {
                (0, _) => return Poll::Ready(Ok(0)),
                (_, 0) => {} // Part of a record, or only handshake messages: read on.
                (_, plain) => return Poll::Ready(Ok(plain)),
            }
        }
    }
}

/// The reading side of a TLS connection, for the websocket decoder: appends exactly the
/// plaintext that arrived.
pub struct TlsReader(pub Arc<TlsSocket>);

impl Source for TlsReader {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.0.poll_plain(cx, &mut |plain| {
            buf.extend_from_slice(plain);
        })
    }
}

/// A TLS connection as one async stream: for hyper, and for the websocket handshake.
pub struct TlsStream {
    tls: Arc<TlsSocket>,
    waiter: Option<AsyncFd<std::net::TcpStream>>,
    /// Plaintext read while sniffing the request, handed out before anything else.
    prefix: BytesMut,
}

impl TlsStream {
    pub fn new(tls: Arc<TlsSocket>, prefix: BytesMut) -> Self {
        Self { tls, waiter: None, prefix }
    }

    pub fn shared(&self) -> &Arc<TlsSocket> {
        &self.tls
    }

    /// Plaintext read ahead and not yet handed out.
    pub fn ahead(&self) -> &[u8] {
        &self.prefix
    }

    /// Reads more plaintext into what is held ahead: how much (0 at the end of the stream).
    pub async fn read_ahead(&mut self) -> io::Result<usize> {
        let (tls, prefix) = (&self.tls, &mut self.prefix);
        std::future::poll_fn(|cx| tls.poll_plain(cx, &mut |plain| prefix.extend_from_slice(plain))).await
    }

    /// Unread plaintext read ahead while sniffing (to hand on with the socket).
    pub fn into_parts(self) -> (Arc<TlsSocket>, BytesMut) {
        (self.tls, self.prefix)
    }

    /// Writes the ciphertext rustls holds, waiting for room as needed.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let mut conn = self.tls.conn.lock();
                if !conn.wants_write() {
                    self.waiter = None;
                    return Poll::Ready(Ok(()));
                }
                match conn.write_tls(&mut self.tls.socket.get_ref()) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if self.waiter.is_none() {
                self.waiter = Some(self.tls.socket.write_waiter()?);
            }
            let waiter = self.waiter.as_ref().expect("set above");
            ready!(waiter.poll_write_ready(cx))?.clear_ready();
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        // What does not fit the caller's buffer waits in `prefix` for the next read.
        let prefix = &mut this.prefix;
        ready!(this.tls.poll_plain(cx, &mut |plain| {
            let fits = plain.len().min(buf.remaining());
            buf.put_slice(&plain[..fits]);
            prefix.extend_from_slice(&plain[fits..]);
        }))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Ciphertext already made goes first, so what rustls holds stays bounded.
        ready!(this.poll_flush_tls(cx))?;
        let n = io::Write::write(&mut this.tls.conn.lock().writer(), buf)?;
        // Sent now if the socket takes it; `poll_flush` waits for the rest.
        let _ = this.poll_flush_tls(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tls(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.conn.lock().send_close_notify();
        ready!(this.poll_flush_tls(cx))?;
        this.tls.socket.shutdown_write();
        Poll::Ready(Ok(()))
    }
}
