//! Client-side WebSocket framing (RFC 6455 §5): the masked frame encoder,
//! the unmasked (server-to-client) frame header parser and the opening
//! handshake request/response.
//!
//! The hot path allocates nothing: frames are appended to the connection's
//! write buffer and parsed in place from its read buffer.

use std::fmt;

/// Continuation frame opcode.
pub const OP_CONT: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// Largest handshake response accepted, in bytes.
const MAX_RESPONSE: usize = 16 * 1024;

/// A violation of the framing rules by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The server masked a frame (servers must not mask).
    Masked,
    /// RSV bits set without a negotiated extension.
    ReservedBits,
    /// Unknown opcode.
    BadOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    /// A frame larger than the bench accepts.
    TooLarge(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Masked => write!(f, "server sent a masked frame"),
            FrameError::ReservedBits => write!(f, "frame has reserved bits set"),
            FrameError::BadOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            FrameError::BadControl => write!(f, "fragmented or oversized control frame"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes is too large"),
        }
    }
}

/// The decoded header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// The opcode (`OP_*`).
    pub opcode: u8,
    /// Length of the header in bytes.
    pub header_len: usize,
    /// Length of the payload in bytes.
    pub payload_len: usize,
}

impl FrameHead {
    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a server frame header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold a whole header yet. The
/// payload may still be incomplete: check `total_len()` against `buf.len()`.
pub fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<FrameHead>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let control = match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => false,
        OP_CLOSE | OP_PING | OP_PONG => true,
        other => return Err(FrameError::BadOpcode(other)),
    };
    let (header_len, len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            None => return Ok(None),
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
        },
        127 => match buf.get(2..10) {
            None => return Ok(None),
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (10, u64::from_be_bytes(a))
            }
        },
        n => (2, u64::from(n)),
    };
    if control && (!fin || len > 125) {
        return Err(FrameError::BadControl);
    }
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => return Err(FrameError::TooLarge(len)),
    };
    Ok(Some(FrameHead {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// Appends one masked, final frame to `out`; `fill` writes the plain payload
/// of `len` bytes, which is then masked in place.
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    out.push(0x80 | opcode);
    if len < 126 {
        // The guard makes the cast lossless.
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.resize(start + len, 0);
    let body = &mut out[start..];
    fill(body);
    apply_mask(body, mask);
}

/// XORs `buf` with the repeating 4-byte `mask`, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    if mask == [0; 4] {
        return;
    }
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask phase is 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The opening handshake, shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The complete HTTP upgrade request.
    pub request: Vec<u8>,
    /// The `Sec-WebSocket-Accept` value the server must answer with.
    pub accept: String,
}

impl Handshake {
    /// Builds the upgrade request for `host_header` and `path`.
    pub fn new(host_header: &str, path: &str) -> Self {
        let key = tungstenite::handshake::client::generate_key();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\nUser-Agent: wssd-bench\r\n\r\n"
        );
        Handshake {
            request: request.into_bytes(),
            accept,
        }
    }
}

/// Why the server's handshake response was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The status was not `101`; holds the status line.
    Status(String),
    /// `Sec-WebSocket-Accept` missing or wrong.
    BadAccept,
    /// The response headers were longer than accepted.
    TooLong,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Status(line) => write!(f, "server answered {line:?}"),
            ResponseError::BadAccept => write!(f, "missing or wrong Sec-WebSocket-Accept"),
            ResponseError::TooLong => write!(f, "handshake response longer than 16 KiB"),
        }
    }
}

/// Checks the handshake response at the start of `buf`.
///
/// Returns the length of the response head once complete, `Ok(None)` if
/// more bytes are needed.
pub fn parse_response(buf: &[u8], accept: &str) -> Result<Option<usize>, ResponseError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE {
            return Err(ResponseError::TooLong);
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.split_ascii_whitespace();
    let _version = parts.next();
    if parts.next() != Some("101") {
        return Err(ResponseError::Status(status.chars().take(80).collect()));
    }
    let accepted = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == accept
        });
    if !accepted {
        return Err(ResponseError::BadAccept);
    }
    Ok(Some(end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_roundtrip_lengths() {
        for len in [0usize, 1, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode_frame(&mut out, OP_BINARY, [1, 2, 3, 4], len, |b| b.fill(7));
            // Clear the mask bit: the parser then reads the 4 mask-key
            // bytes as payload, so the frame looks 4 bytes shorter.
            out[1] &= 0x7F;
            let head = parse_head(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(head.payload_len, len);
            assert_eq!(head.total_len() + 4, out.len());
        }
    }

    #[test]
    fn mask_is_an_involution() {
        let mut buf: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let orig = buf.clone();
        apply_mask(&mut buf, [9, 8, 7, 6]);
        for (i, (m, o)) in buf.iter().zip(&orig).enumerate() {
            assert_eq!(*m, o ^ [9, 8, 7, 6][i % 4]);
        }
        apply_mask(&mut buf, [9, 8, 7, 6]);
        assert_eq!(buf, orig);
    }

    #[test]
    fn response_checks() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n\r\nxx";
        assert_eq!(parse_response(ok, "abc"), Ok(Some(ok.len() - 2)));
        assert_eq!(parse_response(ok, "abd"), Err(ResponseError::BadAccept));
        assert_eq!(parse_response(&ok[..10], "abc"), Ok(None));
        let nf = b"HTTP/1.1 404 Not Found\r\n\r\n";
        assert!(matches!(
            parse_response(nf, "abc"),
            Err(ResponseError::Status(_))
        ));
    }
}
