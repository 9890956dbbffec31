//! Accepted TCP sockets, registered with the runtime for reading only.
//!
//! A tokio `TcpStream` is registered for reading and writing, so every ACK that frees send
//! buffer space wakes the runtime's `epoll_wait`, although nobody waits to write: a relay
//! writes far more often than it ever has to wait for a socket, and on an otherwise idle relay
//! each such wake-up is a context switch. Here a socket is registered for reading only; a
//! write that finds the socket full registers a duplicate of its descriptor for writability,
//! for as long as that wait lasts.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Where a websocket reads from: appends what the peer sent to the read buffer (`Ok(0)` at
/// the end of the stream). Defined here, below the websocket layer, which reads through it.
pub trait Source: Unpin {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
}

pub struct Socket {
    io: AsyncFd<TcpStream>,
}

/// Registers a socket with the runtime for `interest` only.
// The safe constructor is deprecated because a generic `AsRawFd` may change or close its
// descriptor while registered; a `TcpStream` owns its descriptor and never does.
#[allow(deprecated)]
fn register(tcp: TcpStream, interest: Interest) -> io::Result<AsyncFd<TcpStream>> {
    AsyncFd::with_interest(tcp, interest)
}

impl Socket {
    /// Takes a connection over from tokio's reactor.
    pub fn new(tcp: tokio::net::TcpStream) -> io::Result<Self> {
        let std = tcp.into_std()?;
        std.set_nonblocking(true)?;
        Ok(Self { io: register(std, Interest::READABLE)? })
    }

    pub fn get_ref(&self) -> &TcpStream {
        self.io.get_ref()
    }

    /// Writes without waiting; `WouldBlock` when the socket is full.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        (&mut self.io.get_ref()).write(buf)
    }

    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&mut self.io.get_ref()).write_vectored(bufs)
    }

    /// A registration that reports when the socket can take more.
    pub(crate) fn write_waiter(&self) -> io::Result<AsyncFd<TcpStream>> {
        register(self.io.get_ref().try_clone()?, Interest::WRITABLE)
    }

    /// Resolves once the socket has room (after a write returned `WouldBlock`).
    pub async fn writable(&self) -> io::Result<()> {
        let waiter = self.write_waiter()?;
        waiter.writable().await?.clear_ready();
        Ok(())
    }

    /// Reads into `out` once the socket is readable. A read that did not fill `out` took
    /// everything there was, so the socket is marked not readable at once, saving the read
    /// that would only say `WouldBlock` (an end of stream already signalled is not cleared:
    /// the next read must see it).
    pub(crate) fn poll_read_with(&self, cx: &mut Context<'_>, mut read: impl FnMut(&TcpStream) -> io::Result<(usize, bool)>) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match read(self.io.get_ref()) {
                Ok((n, drained)) => {
                    if drained && n > 0 && !guard.ready().is_read_closed() {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        let room = unfilled.len();
        let n = ready!(self.poll_read_with(cx, |s| (&mut &*s).read(unfilled).map(|n| (n, n < room))))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    pub fn shutdown_write(&self) {
        let _ = self.io.get_ref().shutdown(Shutdown::Write);
    }
}

/// Bytes one read takes at most, through a buffer of the thread's.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH]);
}

/// Runs `f` with the thread's scratch buffer (`SCRATCH` bytes), for one read.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH_BUF.with_borrow_mut(|scratch| f(scratch))
}

/// The reading side of a shared socket.
pub struct SocketReader(pub Arc<Socket>);

/// Reads through the thread's scratch buffer and appends exactly what arrived: one read per
/// message, and an idle connection holds no read buffer at all.
impl Source for SocketReader {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.0.poll_read_with(cx, |s| {
            SCRATCH_BUF.with_borrow_mut(|scratch| {
                let n = (&mut &*s).read(scratch)?;
                buf.extend_from_slice(&scratch[..n]);
                Ok((n, n < scratch.len()))
            })
        })
    }
}

/// A socket as one async stream, for hyper.
pub struct SocketStream {
    socket: Socket,
    waiter: Option<AsyncFd<TcpStream>>,
}

impl SocketStream {
    pub fn new(socket: Socket) -> Self {
        Self { socket, waiter: None }
    }

    fn poll_write_with(&mut self, cx: &mut Context<'_>, mut write: impl FnMut(&Socket) -> io::Result<usize>) -> Poll<io::Result<usize>> {
        loop {
            match write(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => {
                    self.waiter = None;
                    return Poll::Ready(done);
                }
            }
            if self.waiter.is_none() {
                self.waiter = Some(self.socket.write_waiter()?);
            }
            let waiter = self.waiter.as_ref().expect("set above");
            ready!(waiter.poll_write_ready(cx))?.clear_ready();
        }
    }
}

impl AsyncRead for SocketStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buf)
    }
}

impl AsyncWrite for SocketStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.shutdown_write();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair() -> (Socket, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server).unwrap(), client)
    }

    #[tokio::test]
    async fn a_full_socket_is_waited_for_and_then_takes_more() {
        let (socket, mut client) = pair().await;
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        loop {
            match socket.try_write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent > 0);
        // Nothing frees room until the peer reads: the wait must not resolve by itself.
        assert!(tokio::time::timeout(Duration::from_millis(200), socket.writable()).await.is_err(), "writable while full");
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; sent];
            client.read_exact(&mut got).await.unwrap();
            client
        });
        tokio::time::timeout(Duration::from_secs(5), socket.writable()).await.expect("room after the peer read").unwrap();
        assert!(socket.try_write(b"more").unwrap() > 0);
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn reads_append_exactly_what_arrived_even_past_the_scratch_buffer() {
        let (socket, mut client) = pair().await;
        let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&message).await.unwrap();
        let mut reader = SocketReader(Arc::new(socket));
        let mut buf = BytesMut::new();
        while buf.len() < message.len() {
            let n = tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await.unwrap().unwrap();
            assert!(n > 0);
        }
        assert_eq!(&buf[..], &message[..]);
        // The end of the stream is seen as such, not as a socket that merely went quiet.
        drop(client);
        let n = tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await.unwrap().unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn hyper_side_stream_writes_through_a_full_socket() {
        let (socket, mut client) = pair().await;
        let mut stream = SocketStream::new(socket);
        let big = vec![3u8; 8 * 1024 * 1024];
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        tokio::time::timeout(Duration::from_secs(10), stream.write_all(&big)).await.unwrap().unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), big.len());
    }
}
