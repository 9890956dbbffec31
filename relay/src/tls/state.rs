//! One TLS connection's state after (and during) its handshake, with rustls's unbuffered API:
//! rustls keeps no buffers of its own, so between messages a connection holds only what is
//! really pending (the start of a record not yet complete, or ciphertext the socket did not
//! take), usually nothing.
//!
//! Ciphertext is processed from whichever buffer holds it (the thread's scratch buffer
//! mostly); what rustls wants to send (handshake messages, tickets, alerts) and what the
//! relay encrypts go out through `out`, in the order they were made.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::TcpStream;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus, WriteTraffic};

/// Most ciphertext kept while a record (or a handshake message spread over records) is
/// incomplete: a handshake message is at most 64 KiB, a record 16 KiB and some.
pub const MAX_PARTIAL: usize = 96 * 1024;
/// Most bytes of replies (key updates, alerts) held for a peer that makes the relay answer
/// without reading the answers: past it the connection ends instead of the buffer growing.
pub const MAX_HELD_REPLIES: usize = 16 * 1024;

/// Makes records once application data may be sent (encrypts, or queues a close_notify).
pub type Make<'a> = &'a mut dyn FnMut(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> Result<(), rustls::Error>;

/// Where a connection stands after processing what it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Application data may be written (the handshake may still be finishing).
    Traffic,
    /// The handshake needs more bytes from the peer.
    Blocked,
    /// The peer closed the TLS session (close_notify) or both sides did.
    Closed,
}

pub struct TlsState {
    pub(crate) conn: UnbufferedServerConnection,
    /// The start of a record not yet complete (usually empty, and then unallocated).
    pub(crate) partial: Vec<u8>,
    /// Ciphertext made but not taken by the socket yet (usually empty, and unallocated).
    pub(crate) held: Vec<u8>,
    /// Plaintext decrypted where nobody was reading (while writing): handed out first.
    pub(crate) plain: Vec<u8>,
    /// The peer closed, or a record failed: nothing more is read.
    pub(crate) ended: bool,
    /// Bytes of replies (not application data) among `held`.
    held_replies: usize,
}

thread_local! {
    /// Ciphertext made on this thread before it is written (one buffer per thread, not per
    /// connection).
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's outgoing buffer, emptied.
pub fn with_out<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    OUT.with_borrow_mut(|out| {
        out.clear();
        let r = f(out);
        // A large burst leaves no large buffer behind on the thread.
        if out.capacity() > 256 * 1024 {
            *out = Vec::new();
        }
        r
    })
}

/// Appends what rustls made (`encode`) to `out`, growing it as rustls asks.
fn append(out: &mut Vec<u8>, mut make: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>) -> Result<(), rustls::Error> {
    let start = out.len();
    let mut room = 1024;
    loop {
        out.resize(start + room, 0);
        match make(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(InsufficientSizeError { required_size })) if required_size > room => room = required_size,
            Err(_) => {
                out.truncate(start);
                return Err(rustls::Error::General("TLS record could not be made".into()));
            }
        }
    }
}

/// Encrypts application data into `out`, in as few records as rustls makes of it.
pub fn encrypt(w: &mut WriteTraffic<'_, ServerConnectionData>, plain: &[u8], out: &mut Vec<u8>) -> Result<(), rustls::Error> {
    append(out, |buf| {
        w.encrypt(plain, buf).map_err(|e| match e {
            EncryptError::InsufficientSize(s) => Some(s),
            EncryptError::EncryptExhausted => None,
        })
    })
}

impl TlsState {
    pub fn new(conn: UnbufferedServerConnection) -> Self {
        Self { conn, partial: Vec::new(), held: Vec::new(), plain: Vec::new(), ended: false, held_replies: 0 }
    }

    /// Processes the ciphertext at the start of `buf`: plaintext goes to `sink`, what rustls
    /// sends to `out`, and once application data may be written, `write` encrypts into `out`.
    /// Returns how much of `buf` is used up and where the connection stands.
    pub fn process(
        conn: &mut UnbufferedServerConnection,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
        mut write: Option<Make<'_>>,
    ) -> Result<(usize, Phase), rustls::Error> {
        let mut used = 0;
        loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut buf[used..]);
            let phase = match state? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        sink(record?.payload);
                    }
                    None
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    // Never offered (max_early_data_size is 0): anything claiming to be is dropped.
                    while r.next_record().is_some() {}
                    None
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    append(out, |b| {
                        e.encode(b).map_err(|e| match e {
                            EncodeError::InsufficientSize(s) => Some(s),
                            EncodeError::AlreadyEncoded => None,
                        })
                    })?;
                    None
                }
                // `out` is written by the caller, in order, after everything made here.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Phase::Blocked),
                ConnectionState::WriteTraffic(mut w) => {
                    if let Some(write) = write.take() {
                        write(&mut w, out)?;
                    }
                    Some(Phase::Traffic)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Phase::Closed),
                _ => Some(Phase::Closed),
            };
            used += discard;
            if let Some(phase) = phase {
                return Ok((used, phase));
            }
        }
    }

    /// Processes what is pending in `partial` followed by `fresh` (just read): plaintext to
    /// `sink`, replies into `out`. What is left (an incomplete record) stays in `partial`.
    pub fn receive(&mut self, fresh: &mut [u8], out: &mut Vec<u8>, sink: &mut dyn FnMut(&[u8])) -> Result<Phase, rustls::Error> {
        if self.partial.is_empty() {
            let (used, phase) = Self::process(&mut self.conn, fresh, out, sink, None)?;
            self.keep(&fresh[used..])?;
            return Ok(phase);
        }
        self.partial.extend_from_slice(fresh);
        let mut partial = std::mem::take(&mut self.partial);
        let result = Self::process(&mut self.conn, &mut partial, out, sink, None);
        let used = result.as_ref().map_or(0, |(used, _)| *used);
        partial.drain(..used);
        self.partial = partial;
        self.keep(&[])?;
        result.map(|(_, phase)| phase)
    }

    /// Keeps `rest` (the start of an incomplete record) for the next read; frees the
    /// buffer once nothing is pending.
    fn keep(&mut self, rest: &[u8]) -> Result<(), rustls::Error> {
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL {
            return Err(rustls::Error::General("incomplete TLS data beyond every bound".into()));
        }
        if self.partial.is_empty() {
            self.partial = Vec::new();
        } else {
            self.partial.shrink_to_fit();
        }
        Ok(())
    }

    /// Has `make` write into `out` (after anything rustls still has to send) once
    /// application data may be sent. Plaintext that turns up meanwhile waits in `plain` for
    /// the reader.
    fn make(&mut self, out: &mut Vec<u8>, make: Make<'_>) -> Result<(), rustls::Error> {
        let Self { conn, partial, plain: pending, .. } = self;
        let mut sink = |p: &[u8]| pending.extend_from_slice(p);
        let mut made = false;
        let mut write = |w: &mut WriteTraffic<'_, ServerConnectionData>, out: &mut Vec<u8>| {
            made = true;
            make(w, out)
        };
        let (used, phase) = Self::process(conn, partial, out, &mut sink, Some(&mut write))?;
        partial.drain(..used);
        match (phase, made) {
            (Phase::Traffic, true) => Ok(()),
            _ => Err(rustls::Error::General("the TLS connection cannot send application data now".into())),
        }
    }

    /// Encrypts `plain` into `out`, in as few records as possible.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        self.make(out, &mut |w, out| if plain.is_empty() { Ok(()) } else { encrypt(w, plain, out) })
    }

    /// A close_notify alert, into `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        self.make(out, &mut |w, out| {
            append(out, |b| {
                w.queue_close_notify(b).map_err(|e| match e {
                    EncryptError::InsufficientSize(s) => Some(s),
                    EncryptError::EncryptExhausted => None,
                })
            })
        })
    }

    /// Writes `out` to the socket without waiting; what it does not take is held. Returns
    /// whether everything went out.
    pub fn send(&mut self, socket: &TcpStream, out: &[u8]) -> io::Result<bool> {
        if !self.held.is_empty() {
            // Behind what waits already, in order.
            self.held.extend_from_slice(out);
            return Ok(false);
        }
        let mut at = 0;
        while at < out.len() {
            match (&mut &*socket).write(&out[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.held.extend_from_slice(&out[at..]);
        Ok(self.held.is_empty())
    }

    /// Sends replies rustls made while reading (`send`), refusing to hold more than
    /// `MAX_HELD_REPLIES` of them for a peer that does not read.
    pub fn send_replies(&mut self, socket: &TcpStream, out: &[u8]) -> io::Result<()> {
        let before = self.held.len();
        self.send(socket, out)?;
        self.held_replies = self.held_replies.saturating_add(self.held.len().saturating_sub(before));
        if self.held_replies > MAX_HELD_REPLIES {
            return Err(io::Error::other("the peer asks for replies and does not read them"));
        }
        Ok(())
    }

    /// Writes held ciphertext without waiting: whether it is all out (its buffer freed).
    pub fn flush_held(&mut self, socket: &TcpStream) -> io::Result<bool> {
        while !self.held.is_empty() {
            match (&mut &*socket).write(&self.held) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.held.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.held = Vec::new();
        self.held_replies = 0;
        Ok(true)
    }
}
