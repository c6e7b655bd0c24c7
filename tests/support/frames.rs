//! A tiny WebSocket frame writer and reader for raw-byte tests,
//! independent of tungstenite, so that what a test sends and checks is
//! exactly what it says.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::DEADLINE;

/// Opcodes.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

/// One frame: FIN, RSV bits (0–7), opcode, masked (client to server) or
/// not (server to client), payload.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=65535 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x9a, 0x5c, 0xe3];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked client frame with no RSV bits.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, true, payload)
}

/// An unmasked server frame with no RSV bits.
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, false, payload)
}

/// One frame as read from the wire (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The three RSV bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: u8,
    /// Whether the frame was masked.
    pub masked: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame (`None` for an empty one); fails the test
    /// for any other frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "expected a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Parses one frame at the start of `buf`: the frame and the bytes it
/// took, or `None` while it is incomplete.
pub fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            usize::try_from(u64::from_be_bytes(buf[2..10].try_into().unwrap())).ok()?,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let key_len = if masked { 4 } else { 0 };
    if buf.len() < at + key_len + len {
        return None;
    }
    let body = &buf[at + key_len..at + key_len + len];
    let payload = if masked {
        let key = &buf[at..at + 4];
        body.iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect()
    } else {
        body.to_vec()
    };
    let frame = Frame {
        fin: buf[0] & 0x80 != 0,
        rsv: (buf[0] >> 4) & 0x7,
        opcode: buf[0] & 0x0f,
        masked,
        payload,
    };
    Some((frame, at + key_len + len))
}

/// Every complete frame in `buf`.
pub fn parse_all(mut buf: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some((frame, used)) = parse(buf) {
        out.push(frame);
        buf = &buf[used..];
    }
    out
}

/// The position right after the `\r\n\r\n` ending an HTTP head.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// A raw TCP connection read frame by frame (either side of it).
pub struct FrameStream {
    /// The socket (no delay, reads time out after `DEADLINE`).
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl FrameStream {
    /// Wraps a connected socket.
    pub fn new(tcp: TcpStream) -> FrameStream {
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        FrameStream {
            tcp,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; false at EOF (or a reset).
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.tcp.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read from the peer: {e} (nothing within {DEADLINE:?}?)"),
        }
    }

    /// Reads an HTTP head (up to and including the empty line); the bytes
    /// after it stay buffered for [`FrameStream::next`].
    pub fn read_head(&mut self) -> String {
        let end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            assert!(self.fill(), "the peer closed during the handshake");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        head
    }

    /// Writes bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).expect("write");
    }

    /// The next frame, or `None` when the peer ended the connection (a
    /// partial frame at that point fails the test).
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "EOF inside a frame: {:?}", self.buf);
                return None;
            }
        }
    }
}
