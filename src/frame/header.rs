//! The frame header (RFC 6455 §5.2): 2 to 14 bytes, parsed from a slice
//! and written into a small array. Validation against the protocol rules
//! is the reader's; this module only knows the layout.

/// The longest frame header: 2 + 8 length bytes + 4 mask bytes.
pub const MAX_HEADER: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate).
    pub rsv1: bool,
    /// RSV2 and RSV3 (no extension defines them).
    pub rsv23: bool,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length as announced.
    pub len: u64,
}

/// How many header bytes the frame that starts with `start` has, once at
/// least its first two bytes are known (2 otherwise).
pub fn header_len(start: &[u8]) -> usize {
    let Some(&second) = start.get(1) else {
        return 2;
    };
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if second & 0x80 != 0 { 4 } else { 0 }
}

/// Parses the header at the start of `buf`: the header and its length in
/// bytes, or `None` when `buf` does not hold all of it yet.
pub fn parse(buf: &[u8]) -> Option<(Header, usize)> {
    let n = header_len(buf);
    if buf.len() < n || n < 2 {
        return None;
    }
    let (first, second) = (buf[0], buf[1]);
    let (len, at) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = (second & 0x80 != 0).then(|| [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let header = Header {
        fin: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv23: first & 0x30 != 0,
        opcode: first & 0x0f,
        mask,
        len,
    };
    Some((header, n))
}

/// An encoded frame header, ready to be written before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER],
    len: u8,
    mask: Option<[u8; 4]>,
}

impl EncodedHeader {
    /// Encodes a header with the shortest length form (as RFC 6455 asks).
    pub fn new(fin: bool, rsv1: bool, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Self {
        let mut bytes = [0u8; MAX_HEADER];
        bytes[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (opcode & 0x0f);
        let masked = if mask.is_some() { 0x80 } else { 0 };
        let mut n = match len {
            0..=125 => {
                bytes[1] = masked | len as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = masked | 126;
                bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = masked | 127;
                bytes[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = mask {
            bytes[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        EncodedHeader {
            bytes,
            len: n as u8,
            mask,
        }
    }

    /// The header bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The masking key written into the header, if any: the payload must
    /// be masked with it before it is sent.
    pub fn mask(&self) -> Option<[u8; 4]> {
        self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_round_trips_every_length_form() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x1_0000, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for (fin, rsv1, opcode) in [(true, false, 1), (false, true, 2), (true, false, 9)] {
                    let enc = EncodedHeader::new(fin, rsv1, opcode, mask, len);
                    let bytes = enc.as_bytes();
                    assert_eq!(header_len(bytes), bytes.len());
                    let (h, n) = parse(bytes).expect("complete");
                    assert_eq!(n, bytes.len());
                    assert_eq!(
                        h,
                        Header {
                            fin,
                            rsv1,
                            rsv23: false,
                            opcode,
                            mask,
                            len
                        }
                    );
                    for cut in 0..bytes.len() {
                        assert_eq!(parse(&bytes[..cut]), None, "len {len} cut {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn shortest_length_form() {
        assert_eq!(
            EncodedHeader::new(true, false, 1, None, 125)
                .as_bytes()
                .len(),
            2
        );
        assert_eq!(
            EncodedHeader::new(true, false, 1, None, 126)
                .as_bytes()
                .len(),
            4
        );
        assert_eq!(
            EncodedHeader::new(true, false, 1, None, 65536)
                .as_bytes()
                .len(),
            10
        );
        assert_eq!(
            EncodedHeader::new(true, false, 1, Some([0; 4]), 65536)
                .as_bytes()
                .len(),
            14
        );
    }
}
