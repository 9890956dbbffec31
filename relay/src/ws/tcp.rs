//! Writing to an accepted TCP socket: without waiting from any publishing thread
//! (`DirectWrite`), or from the connection's task when the socket is full.

use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;

use super::codec::header;
use crate::hub::{DirectWrite, Outgoing, Written};

pub struct TcpWriter(pub OwnedWriteHalf);

fn parts(f: &Outgoing) -> ([u8; 10], usize, &Bytes) {
    match f {
        Outgoing::Text(b) => {
            let (h, n) = header(0x1, b.len());
            (h, n, b)
        }
        Outgoing::Raw(b) => ([0; 10], 0, b),
    }
}

impl DirectWrite for TcpWriter {
    fn try_write(&self, f: &Outgoing) -> Written {
        let (h, hn, payload) = parts(f);
        let total = hn + payload.len();
        match self.0.try_write_vectored(&[IoSlice::new(&h[..hn]), IoSlice::new(payload)]) {
            Ok(n) if n == total => Written::All,
            Ok(n) if n >= hn => Written::Part(payload.slice(n - hn..)),
            Ok(n) => {
                let mut rest = Vec::with_capacity(total - n);
                rest.extend_from_slice(&h[n..hn]);
                rest.extend_from_slice(payload);
                Written::Part(Bytes::from(rest))
            }
            Err(_) => Written::Nothing,
        }
    }
}

impl TcpWriter {
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
            self.0.writable().await?;
            match self.0.try_write(&buf[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
