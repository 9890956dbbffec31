//! RFC 6455 frame heads, both ways: what the relay (a server: masked frames in, plain frames
//! out) and the bench (a client: the reverse) parse and write. Payloads and the rules of each
//! side (masking required or refused, size limits, fragments) stay with the caller.

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A frame's head, as parsed from the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    /// The three reserved bits (RSV1-3), which no extension of ours sets.
    pub reserved: u8,
    pub opcode: u8,
    /// The masking key, when the frame is masked (every client frame is).
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes of the head: 2 to 14.
    pub head_len: usize,
}

impl FrameHead {
    /// Control frames (close, ping, pong) are 0x8 and above.
    pub fn is_control(&self) -> bool {
        self.opcode >= 0x8
    }
}

/// A head no endpoint may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    LengthTopBit,
}

/// The head at the start of `buf`; `Ok(None)` while more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<FrameHead>, HeadError> {
    let [b0, b1, rest @ ..] = buf else { return Ok(None) };
    let (payload_len, len_bytes) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(l) => {
                let len = u64::from_be_bytes(l.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(HeadError::LengthTopBit);
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    let masked = b1 & 0x80 != 0;
    let head_len = 2 + len_bytes + if masked { 4 } else { 0 };
    if buf.len() < head_len {
        return Ok(None);
    }
    let mask = masked.then(|| buf[head_len - 4..head_len].try_into().expect("4 bytes"));
    Ok(Some(FrameHead { fin: b0 & 0x80 != 0, reserved: (b0 >> 4) & 0x7, opcode: b0 & 0x0f, mask, payload_len, head_len }))
}

/// Writes the length field after the first byte; returns the bytes written.
fn put_len(h: &mut [u8], len: usize, mask_bit: u8) -> usize {
    if len < 126 {
        h[1] = mask_bit | len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = mask_bit | 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = mask_bit | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The head of an unmasked frame (FIN set) with `len` payload bytes, as a server sends it:
/// the array and how many of its bytes to write.
pub fn server_head(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    let n = put_len(&mut h, len, 0);
    (h, n)
}

/// The head of a masked frame (FIN set) with `len` payload bytes, as a client sends it.
pub fn client_head(opcode: u8, len: usize, mask: [u8; 4]) -> ([u8; 14], usize) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | opcode;
    let n = put_len(&mut h, len, 0x80);
    h[n..n + 4].copy_from_slice(&mask);
    (h, n + 4)
}

/// Masks or unmasks a payload in place (the same operation).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_every_length_both_ways() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let (h, n) = server_head(opcode::TEXT, len);
            let parsed = parse_head(&h[..n]).unwrap().unwrap();
            assert_eq!(parsed, FrameHead { fin: true, reserved: 0, opcode: 1, mask: None, payload_len: len as u64, head_len: n });
            let (h, n) = client_head(opcode::BINARY, len, [1, 2, 3, 4]);
            let parsed = parse_head(&h[..n]).unwrap().unwrap();
            assert_eq!((parsed.mask, parsed.payload_len, parsed.head_len, parsed.opcode), (Some([1, 2, 3, 4]), len as u64, n, 2));
            // Every shorter prefix asks for more.
            for cut in 0..n {
                assert_eq!(parse_head(&h[..cut]), Ok(None), "{len} cut at {cut}");
            }
        }
        assert_eq!(server_head(opcode::PING, 5).1, 2);
        assert_eq!(client_head(opcode::TEXT, 70_000, [0; 4]).1, 14);
    }

    #[test]
    fn reserved_bits_opcodes_and_the_top_bit() {
        let h = parse_head(&[0x71, 0x00]).unwrap().unwrap();
        assert_eq!((h.fin, h.reserved, h.opcode, h.is_control()), (false, 7, 1, false));
        assert!(parse_head(&[0x89, 0x00]).unwrap().unwrap().is_control());
        let mut top = vec![0x82, 127];
        top.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_head(&top), Err(HeadError::LengthTopBit));
    }

    #[test]
    fn masking_twice_is_the_identity() {
        let mut p = b"hello, sonde".to_vec();
        apply_mask(&mut p, [9, 8, 7, 6]);
        assert_ne!(&p, b"hello, sonde");
        apply_mask(&mut p, [9, 8, 7, 6]);
        assert_eq!(&p, b"hello, sonde");
    }
}
