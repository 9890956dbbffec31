//! Writing to an accepted TCP socket: without waiting from any publishing thread
//! (`DirectWrite`), or from the connection's task when the socket is full.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;

use super::codec::header;
use crate::hub::{DirectWrite, Outgoing, Written};
use crate::net::Socket;

pub struct TcpWriter(pub Arc<Socket>);

fn parts(f: &Outgoing) -> ([u8; 10], usize, &Bytes) {
    match f {
        Outgoing::Text(b) => {
            let (h, n) = header(0x1, b.len());
            (h, n, b)
        }
        Outgoing::Raw(b) => ([0; 10], 0, b),
    }
}

/// Frames written by one `writev` at most (two slices each: header and payload).
const FRAMES_PER_CALL: usize = 64;

impl TcpWriter {
    /// One `writev` of up to `FRAMES_PER_CALL` frames; how far it got.
    fn try_write_chunk(&self, frames: &[Bytes], raw: bool) -> Written {
        let mut heads = [([0u8; 10], 0usize); FRAMES_PER_CALL];
        for (h, f) in heads.iter_mut().zip(frames) {
            if !raw {
                *h = header(0x1, f.len());
            }
        }
        let mut iov = [IoSlice::new(&[]); 2 * FRAMES_PER_CALL];
        for (i, f) in frames.iter().enumerate() {
            iov[2 * i] = IoSlice::new(&heads[i].0[..heads[i].1]);
            iov[2 * i + 1] = IoSlice::new(f);
        }
        let Ok(mut n) = self.0.try_write_vectored(&iov[..2 * frames.len()]) else { return Written::Nothing };
        for (i, f) in frames.iter().enumerate() {
            let hn = heads[i].1;
            let len = hn + f.len();
            if n >= len {
                n -= len;
                continue;
            }
            let rest = match n {
                0 => None,
                n if n >= hn => Some(f.slice(n - hn..)),
                n => {
                    let mut rest = Vec::with_capacity(len - n);
                    rest.extend_from_slice(&heads[i].0[n..hn]);
                    rest.extend_from_slice(f);
                    Some(Bytes::from(rest))
                }
            };
            return match (i, rest) {
                (0, None) => Written::Nothing,
                (frames, rest) => Written::Part { frames, rest },
            };
        }
        Written::All
    }

    /// Writes frames in order, gathered into one buffer, waiting for the socket as needed.
    pub async fn write(&self, items: &[Outgoing]) -> io::Result<()> {
        let total: usize = items.iter().map(|f| parts(f).2.len() + 10).sum();
        let mut buf = Vec::with_capacity(total);
        for f in items {
            let (h, hn, payload) = parts(f);
            buf.extend_from_slice(&h[..hn]);
            buf.extend_from_slice(payload);
        }
        let mut off = 0;
        while off < buf.len() {
            match self.0.try_write(&buf[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.0.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl DirectWrite for TcpWriter {
    fn try_write(&self, frames: &[Bytes], raw: bool) -> Written {
        let mut done = 0;
        for chunk in frames.chunks(FRAMES_PER_CALL) {
            match self.try_write_chunk(chunk, raw) {
                // A plain socket's writer never holds bytes back.
                Written::All | Written::Held => done += chunk.len(),
                Written::Part { frames, rest } => return Written::Part { frames: done + frames, rest },
                Written::Nothing if done == 0 => return Written::Nothing,
                Written::Nothing => return Written::Part { frames: done, rest: None },
            }
        }
        Written::All
    }
}
