//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) that a load
//! balancer writes before the client's own bytes, naming the client it accepted.
//!
//! Parsing is a pure function over the bytes read so far, so the caller owns the socket, the
//! deadline and the buffer. It never reads past what it was given and never asks for more than
//! [`MAX_V1_BYTES`] or [`MAX_V2_BYTES`]: a peer cannot make the relay buffer without bound by
//! promising a long header. Only a peer in `trusted_proxies` may send one; from anyone else
//! these bytes are just a bad request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line the specification allows, CR LF included.
pub const MAX_V1_BYTES: usize = 107;
/// The 16-byte v2 preamble plus what the relay accepts after it: the largest address block
/// (216 bytes, Unix sockets) and room for the TLVs load balancers add (AWS, Azure, GCP and
/// HAProxy's own all fit in well under 1 KiB). Longer headers are refused, not buffered.
pub const MAX_V2_BYTES: usize = 16 + 1536;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_PREAMBLE: usize = 16;

/// What the bytes read so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; the client's own bytes start after it. `client` is
    /// `None` when the proxy speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`, Unix sockets or an
    /// unspecified family): the connection's peer address is then the one to use.
    Complete { client: Option<SocketAddr>, len: usize },
    /// So far a valid beginning: read more (under the caller's deadline) and ask again.
    Incomplete,
    /// Not a PROXY header, or a broken one: close the connection.
    Invalid(Reject),
}

/// Why a header was refused (a label for logs and metrics; it never echoes the bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Neither the v1 prefix nor the v2 signature.
    NotProxy,
    /// A v1 line without CR LF within 107 bytes, or a v2 length over [`MAX_V2_BYTES`].
    TooLong,
    /// A v1 line that does not follow the grammar (fields, spaces, CR LF).
    Malformed,
    /// An address or port that does not parse, or one of the wrong family.
    BadAddress,
    /// A v2 version other than 2 or a command other than `LOCAL` / `PROXY`.
    BadVersion,
    /// A v2 address block shorter than its family needs.
    Truncated,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotProxy => "not_proxy",
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
            Self::BadAddress => "bad_address",
            Self::BadVersion => "bad_version",
            Self::Truncated => "truncated",
        }
    }
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if is_prefix(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() { Parsed::Incomplete } else { v1(buf) };
    }
    if is_prefix(buf, V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() { Parsed::Incomplete } else { v2(buf) };
    }
    Parsed::Invalid(Reject::NotProxy)
}

/// Whether `buf` and `expected` agree on their common length (an empty `buf` agrees).
fn is_prefix(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

/// `PROXY TCP4 src dst sport dport\r\n`, `PROXY TCP6 …` or `PROXY UNKNOWN[ anything]\r\n`.
fn v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(MAX_V1_BYTES)];
    let cr = window.iter().position(|&b| b == b'\r').unwrap_or(window.len());
    // Anything but printable ASCII before the CR (a stray LF included) is refused at once,
    // so the answer for a prefix never differs from the answer for the whole.
    if !window[..cr].iter().all(|b| (b' '..=b'~').contains(b)) {
        return Parsed::Invalid(Reject::Malformed);
    }
    match window.get(cr + 1) {
        None if cr + 1 < MAX_V1_BYTES => return Parsed::Incomplete,
        None if cr == window.len() => return Parsed::Invalid(Reject::TooLong),
        Some(b'\n') => {}
        _ => return Parsed::Invalid(Reject::Malformed),
    }
    let Ok(line) = std::str::from_utf8(&window[V1_PREFIX.len()..cr]) else {
        return Parsed::Invalid(Reject::Malformed);
    };
    let len = cr + 2;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Parsed::Complete { client: None, len };
    }
    match v1_tcp(line) {
        Ok(client) => Parsed::Complete { client: Some(client), len },
        Err(reject) => Parsed::Invalid(reject),
    }
}

/// The fields after `PROXY ` of a TCP4 or TCP6 line: the source is the client.
fn v1_tcp(line: &str) -> Result<SocketAddr, Reject> {
    let mut fields = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Reject::Malformed);
    };
    let want_v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(Reject::Malformed),
    };
    let src: IpAddr = src.parse().map_err(|_| Reject::BadAddress)?;
    let dst: IpAddr = dst.parse().map_err(|_| Reject::BadAddress)?;
    if src.is_ipv4() != want_v4 || dst.is_ipv4() != want_v4 {
        return Err(Reject::BadAddress);
    }
    let sport = v1_port(sport)?;
    v1_port(dport)?;
    Ok(SocketAddr::new(src, sport))
}

/// A decimal port, 0–65535, without sign or leading zeros (as the specification writes it).
fn v1_port(s: &str) -> Result<u16, Reject> {
    let digits_only = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return Err(Reject::BadAddress);
    }
    s.parse().map_err(|_| Reject::BadAddress)
}

/// The binary header: signature, version and command, family and transport, a 16-bit length
/// of what follows (addresses, then TLVs, which are skipped).
fn v2(buf: &[u8]) -> Parsed {
    if buf.len() < V2_PREAMBLE {
        // Check the version byte as soon as it is there: no need to wait for a bad one.
        if let Some(&vc) = buf.get(12) {
            if v2_command(vc).is_err() {
                return Parsed::Invalid(Reject::BadVersion);
            }
        }
        return Parsed::Incomplete;
    }
    let proxied = match v2_command(buf[12]) {
        Ok(proxied) => proxied,
        Err(reject) => return Parsed::Invalid(reject),
    };
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let Some(len) = V2_PREAMBLE.checked_add(body_len).filter(|&l| l <= MAX_V2_BYTES) else {
        return Parsed::Invalid(Reject::TooLong);
    };
    let Some(body) = buf.get(V2_PREAMBLE..len) else {
        return Parsed::Incomplete;
    };
    if !proxied {
        return Parsed::Complete { client: None, len };
    }
    match v2_address(buf[13], body) {
        Ok(client) => Parsed::Complete { client, len },
        Err(reject) => Parsed::Invalid(reject),
    }
}

/// Version 2 only; `LOCAL` (health checks by the proxy itself) or `PROXY`.
fn v2_command(version_command: u8) -> Result<bool, Reject> {
    match version_command {
        0x20 => Ok(false),
        0x21 => Ok(true),
        _ => Err(Reject::BadVersion),
    }
}

/// The client from the address block, by family (high nibble) and transport (low nibble).
fn v2_address(family: u8, body: &[u8]) -> Result<Option<SocketAddr>, Reject> {
    let need = match family >> 4 {
        0x1 => 12,
        0x2 => 36,
        // Unix sockets and AF_UNSPEC carry no IP client: the peer stands for itself.
        0x0 | 0x3 => return Ok(None),
        _ => return Err(Reject::BadAddress),
    };
    if !matches!(family & 0x0f, 0x0..=0x2) {
        return Err(Reject::BadAddress);
    }
    let block = body.get(..need).ok_or(Reject::Truncated)?;
    let client = if need == 12 {
        let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
        SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([block[8], block[9]]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&block[..16]);
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([block[32], block[33]]))
    };
    Ok(Some(client))
}

#[cfg(test)]
mod tests;
