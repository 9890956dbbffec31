//! Writing websocket frames to a TLS connection: directly from publishers and fan-out lanes
//! (`DirectWrite`), or from the connection's task.
//!
//! Every frame handed to one call is gathered and encrypted once, together, into as few
//! records as the plaintext needs (16 KiB each), and the ciphertext goes out in one write.
//! What the socket does not take is held as ciphertext, in order, and only the connection's
//! task writes it (when the socket has room again); meanwhile new frames wait in the outbox,
//! whose bound and conflation still apply. Ciphertext is never encrypted again.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use sonde_protocol::wsframe::{opcode, server_head};

use super::socket::TlsSocket;
use crate::hub::{DirectWrite, Outgoing, Written};

thread_local! {
    /// Frames gathered before they are encrypted (one buffer per thread).
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `frames` gathered into one plaintext: text payloads framed, raw bytes as
/// they are.
fn gathered<'a, R>(frames: impl Iterator<Item = (bool, &'a Bytes)>, f: impl FnOnce(&[u8]) -> R) -> R {
    PLAIN.with_borrow_mut(|plain| {
        plain.clear();
        for (raw, frame) in frames {
            if !raw {
                let (h, n) = server_head(opcode::TEXT, frame.len());
                plain.extend_from_slice(&h[..n]);
            }
            plain.extend_from_slice(frame);
        }
        let r = f(plain);
        if plain.capacity() > 256 * 1024 {
            *plain = Vec::new();
        }
        r
    })
}

pub struct TlsWriter(pub Arc<TlsSocket>);

impl TlsWriter {
    /// Writes frames in order (after any ciphertext still held), waiting for the socket as
    /// needed: the connection's task's write.
    pub async fn write(&self, items: &[Outgoing]) -> io::Result<()> {
        let mut waiter = None;
        std::future::poll_fn(|cx| self.0.poll_flush_held(cx, &mut waiter)).await?;
        let frames = items.iter().map(|o| match o {
            Outgoing::Text(b) => (false, b),
            Outgoing::Raw(b) => (true, b),
        });
        let all_out = gathered(frames, |plain| if plain.is_empty() { Ok(true) } else { self.0.seal_and_send(plain) })?;
        if !all_out {
            std::future::poll_fn(|cx| self.0.poll_flush_held(cx, &mut waiter)).await?;
        }
        Ok(())
    }

    /// Sends close_notify (if the socket takes it now) and stops writing.
    pub fn shutdown(&self) {
        self.0.close();
    }
}

impl DirectWrite for TlsWriter {
    fn try_write(&self, frames: &[Bytes], raw: bool) -> Written {
        if !self.0.state.lock().held.is_empty() {
            // Ciphertext from before still waits for the socket: these frames queue.
            return Written::Nothing;
        }
        match gathered(frames.iter().map(|f| (raw, f)), |plain| self.0.seal_and_send(plain)) {
            Ok(true) => Written::All,
            // Encrypted, so taken: the task writes the rest (or meets the error).
            Ok(false) => Written::Held,
            // Nothing was encrypted: the frames queue, and the task meets the error.
            Err(_) => Written::Nothing,
        }
    }
}
