//! A TLS connection after its handshake: the socket (registered for reading only, as every
//! accepted socket) and the connection's TLS state behind a short lock, shared by the
//! connection's task (reading, flushing), the publishers and the fan-out lanes (writing
//! without waiting).
//!
//! Ciphertext is read through the thread's scratch buffer and decrypted at once; only the
//! start of an incomplete record is kept, so an idle connection holds no read buffer.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::state::{with_out, Phase, TlsState};
use crate::net::Source;
use crate::net::{with_scratch, Socket};

pub struct TlsSocket {
    pub(crate) socket: Socket,
    pub(crate) state: Mutex<TlsState>,
}

/// A failed record: the connection cannot go on.
fn broken(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsSocket {
    pub fn new(socket: Socket, state: TlsState) -> Self {
        Self { socket, state: Mutex::new(state) }
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Decrypts `fresh` (just read), handing plaintext to `sink`; replies rustls makes
    /// (tickets, alerts, key updates) are written without waiting, or held for the
    /// connection's task when the socket is full.
    fn absorb(&self, fresh: &mut [u8], sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut st = self.state.lock();
        with_out(|out| {
            let phase = st.receive(fresh, out, sink);
            if !out.is_empty() {
                if let Err(e) = st.send_replies(self.socket.get_ref(), out) {
                    st.ended = true;
                    return Err(e);
                }
            }
            match phase {
                Ok(Phase::Closed) => st.ended = true,
                Ok(Phase::Traffic | Phase::Blocked) => {}
                Err(e) => {
                    st.ended = true;
                    return Err(broken(e));
                }
            }
            Ok(())
        })
    }

    /// Plaintext for `sink`, reading and decrypting as needed: how much (`Ok(0)` at the end
    /// of the stream: a close_notify, or the peer gone).
    pub(crate) fn poll_plain(&self, cx: &mut Context<'_>, sink: &mut dyn FnMut(&[u8])) -> Poll<io::Result<usize>> {
        loop {
            {
                let mut st = self.state.lock();
                if !st.plain.is_empty() {
                    let plain = std::mem::take(&mut st.plain);
                    sink(&plain);
                    return Poll::Ready(Ok(plain.len()));
                }
                if st.ended {
                    return Poll::Ready(Ok(0));
                }
            }
            let mut plain = 0;
            let got = ready!(self.socket.poll_read_with(cx, |s| {
                with_scratch(|scratch| {
                    let n = (&mut &*s).read(scratch)?;
                    if n > 0 {
                        self.absorb(&mut scratch[..n], &mut |p| {
                            plain += p.len();
                            sink(p);
                        })?;
                    }
                    Ok((n, n < scratch.len()))
                })
            }))?;
            match (got, plain) {
                (0, _) => {
                    self.state.lock().ended = true;
                    return Poll::Ready(Ok(0));
                }
                (_, 0) => {} // Part of a record, or only handshake messages: read on.
                (_, plain) => return Poll::Ready(Ok(plain)),
            }
        }
    }

    /// Writes held ciphertext, waiting for room with `waiter` (registered on first need).
    pub(crate) fn poll_flush_held(&self, cx: &mut Context<'_>, waiter: &mut Option<AsyncFd<std::net::TcpStream>>) -> Poll<io::Result<()>> {
        loop {
            if self.state.lock().flush_held(self.socket.get_ref())? {
                *waiter = None;
                return Poll::Ready(Ok(()));
            }
            if waiter.is_none() {
                *waiter = Some(self.socket.write_waiter()?);
            }
            let w = waiter.as_ref().expect("set above");
            ready!(w.poll_write_ready(cx))?.clear_ready();
        }
    }

    /// Encrypts `plain` and writes it without waiting (what the socket does not take is
    /// held): whether it all went out.
    pub(crate) fn seal_and_send(&self, plain: &[u8]) -> io::Result<bool> {
        let mut st = self.state.lock();
        with_out(|out| {
            st.seal(plain, out).map_err(broken)?;
            st.send(self.socket.get_ref(), out)
        })
    }

    /// Sends close_notify if the socket takes it now, and stops writing.
    pub fn close(&self) {
        let mut st = self.state.lock();
        if st.held.is_empty() {
            with_out(|out| {
                if st.close_notify(out).is_ok() {
                    let _ = st.send(self.socket.get_ref(), out);
                }
            });
        }
        self.socket.shutdown_write();
    }
}

/// The reading side of a TLS connection, for the websocket decoder: appends exactly the
/// plaintext that arrived.
pub struct TlsReader(pub Arc<TlsSocket>);

impl Source for TlsReader {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.0.poll_plain(cx, &mut |plain| buf.extend_from_slice(plain))
    }
}

/// A TLS connection as one async stream: for hyper, and for the websocket handshake.
pub struct TlsStream {
    tls: Arc<TlsSocket>,
    waiter: Option<AsyncFd<std::net::TcpStream>>,
    /// Plaintext read ahead (while sniffing the request, or past a caller's buffer), handed
    /// out before anything else.
    prefix: BytesMut,
}

impl TlsStream {
    pub fn new(tls: Arc<TlsSocket>, prefix: BytesMut) -> Self {
        Self { tls, waiter: None, prefix }
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

    /// The connection, and plaintext read ahead that nobody has seen yet.
    pub fn into_parts(self) -> (Arc<TlsSocket>, BytesMut) {
        (self.tls, self.prefix)
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
        // Ciphertext already made goes first, so what is held stays bounded by one write.
        ready!(this.tls.poll_flush_held(cx, &mut this.waiter))?;
        this.tls.seal_and_send(buf)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.poll_flush_held(cx, &mut this.waiter)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.tls.poll_flush_held(cx, &mut this.waiter))?;
        this.tls.close();
        Poll::Ready(Ok(()))
    }
}
