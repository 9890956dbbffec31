//! Writing websocket frames to a TLS connection: directly from publishers and fan-out lanes
//! (`DirectWrite`), or from the connection's task.
//!
//! Every frame handed to one call is encrypted once, together, into as few records as rustls
//! makes of one gathered write, and the ciphertext goes out in one `writev`. What the socket
//! does not take stays with rustls as ciphertext, in order, and only the connection's task
//! writes it (when the socket has room again); meanwhile new frames wait in the outbox, whose
//! bound and conflation still apply. Ciphertext is never encrypted again.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConnection;

use super::socket::TlsSocket;
use crate::hub::{DirectWrite, Outgoing, Written};
use crate::ws::codec::header;

/// Frames encrypted by one gathered write at most (two slices each: header and payload).
const FRAMES_PER_CALL: usize = 64;

pub struct TlsWriter(pub Arc<TlsSocket>);

/// Encrypts `frames` (payloads to frame as text, or `raw` bytes already framed) in order.
fn encrypt(conn: &mut ServerConnection, frames: &[Bytes], raw: bool) -> io::Result<()> {
    for chunk in frames.chunks(FRAMES_PER_CALL) {
        let mut heads = [([0u8; 10], 0usize); FRAMES_PER_CALL];
        let mut iov = [IoSlice::new(&[]); 2 * FRAMES_PER_CALL];
        let mut n = 0;
        for (i, f) in chunk.iter().enumerate() {
            if !raw {
                heads[i] = header(0x1, f.len());
            }
        }
        for (i, f) in chunk.iter().enumerate() {
            if heads[i].1 > 0 {
                iov[n] = IoSlice::new(&heads[i].0[..heads[i].1]);
                n += 1;
            }
            if !f.is_empty() {
                iov[n] = IoSlice::new(f);
                n += 1;
            }
        }
        write_all_plain(conn, &iov[..n])?;
    }
    Ok(())
}

/// rustls takes every byte when its buffer is unlimited (see `TlsSocket::new`); a short
/// count means a broken connection.
fn write_all_plain(conn: &mut ServerConnection, iov: &[IoSlice<'_>]) -> io::Result<()> {
    let want: usize = iov.iter().map(|s| s.len()).sum();
    if want == 0 {
        return Ok(());
    }
    let took = conn.writer().write_vectored(iov)?;
    if took == want {
        Ok(())
    } else {
        Err(io::Error::other("TLS connection took only part of a write"))
    }
}

impl TlsWriter {
    /// Writes ciphertext rustls holds, without waiting: whether it is all out.
    fn try_flush(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut self.0.socket.get_ref()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes everything rustls holds, waiting for the socket as needed.
    async fn flush(&self) -> io::Result<()> {
        loop {
            if self.try_flush(&mut self.0.conn.lock())? {
                return Ok(());
            }
            self.0.socket.writable().await?;
        }
    }

    /// Writes frames in order (after any ciphertext still held), waiting for the socket as
    /// needed: the connection's task's write.
    pub async fn write(&self, items: &[Outgoing]) -> io::Result<()> {
        self.flush().await?;
        {
            let mut conn = self.0.conn.lock();
            // Runs of text and of raw frames, in order.
            let mut at = 0;
            while at < items.len() {
                let raw = matches!(items[at], Outgoing::Raw(_));
                let run = items[at..].iter().take_while(|o| matches!(o, Outgoing::Raw(_)) == raw).count();
                let frames: Vec<Bytes> = items[at..at + run].iter().map(|o| match o {
                    Outgoing::Text(b) | Outgoing::Raw(b) => b.clone(),
                }).collect();
                encrypt(&mut conn, &frames, raw)?;
                at += run;
            }
            self.try_flush(&mut conn)?;
        }
        self.flush().await
    }

    /// Sends close_notify and stops writing, without waiting (the connection is ending).
    pub fn shutdown(&self) {
        let mut conn = self.0.conn.lock();
        conn.send_close_notify();
        let _ = self.try_flush(&mut conn);
        self.0.socket.shutdown_write();
    }
}

impl DirectWrite for TlsWriter {
    fn try_write(&self, frames: &[Bytes], raw: bool) -> Written {
        let mut conn = self.0.conn.lock();
        if conn.wants_write() {
            // Ciphertext from before is still waiting for the socket: these frames queue.
            return Written::Nothing;
        }
        if encrypt(&mut conn, frames, raw).is_err() {
            // Whatever was encrypted must not be encrypted again: the task meets the error.
            return Written::Held;
        }
        match self.try_flush(&mut conn) {
            Ok(true) => Written::All,
            Ok(false) | Err(_) => Written::Held,
        }
    }
}
