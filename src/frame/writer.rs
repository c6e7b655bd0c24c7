//! The frame writer: headers encoded into a small array, whole frames
//! appended to one output buffer (several small frames, one write), and
//! large payloads written as header + payload slices in one `writev`
//! without copying the payload.

use std::io::{self, IoSlice, Write};

use tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};
use tungstenite::protocol::Role;

use super::header::EncodedHeader;
use super::mask::apply_mask;

/// Longest close reason that fits a close frame, in bytes.
pub const MAX_CLOSE_REASON: usize = 123;

/// Encodes frames for one role: a client masks every frame with a fresh
/// random key, a server never masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameWriter {
    role: Role,
}

impl FrameWriter {
    /// A writer for `role`.
    pub fn new(role: Role) -> Self {
        FrameWriter { role }
    }

    /// The header of a frame with `len` payload bytes. For the client role
    /// it carries a fresh random mask ([`EncodedHeader::mask`]) that the
    /// caller must apply to the payload ([`super::apply_mask`], offset 0).
    pub fn header(&self, opcode: OpCode, fin: bool, rsv1: bool, len: usize) -> EncodedHeader {
        EncodedHeader::new(fin, rsv1, opcode.into(), self.new_mask(), len as u64)
    }

    /// Appends one whole frame to `out` (the payload masked on the way for
    /// the client role). Frames gathered this way go out in one write.
    pub fn append(&self, out: &mut Vec<u8>, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.append_with(out, opcode, fin, false, payload);
    }

    /// [`append`](Self::append) with RSV1 (a compressed message's first frame).
    pub fn append_with(
        &self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
    ) {
        let header = self.header(opcode, fin, rsv1, payload.len());
        out.reserve(header.as_bytes().len() + payload.len());
        out.extend_from_slice(header.as_bytes());
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = header.mask() {
            apply_mask(&mut out[start..], key, 0);
        }
    }

    /// Appends a close frame: `None` for one without a code, else the code
    /// and the reason cut to [`MAX_CLOSE_REASON`] bytes on a character
    /// boundary.
    pub fn append_close(&self, out: &mut Vec<u8>, close: Option<(CloseCode, &str)>) {
        let mut payload = [0u8; 125];
        let len = match close {
            None => 0,
            Some((code, reason)) => {
                let reason = truncate_reason(reason);
                payload[..2].copy_from_slice(&u16::from(code).to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
        };
        self.append(out, OpCode::Control(Control::Close), true, &payload[..len]);
    }

    fn new_mask(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }
}

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Writes `header` then `payload` with vectored writes until all of it is
/// written or the writer would block. Returns how many bytes of the frame
/// were written (the caller queues the rest); `WouldBlock` only if none.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    header: &[u8],
    payload: &[u8],
) -> io::Result<usize> {
    let total = header.len() + payload.len();
    let mut done = 0;
    while done < total {
        let result = if done < header.len() {
            w.write_vectored(&[IoSlice::new(&header[done..]), IoSlice::new(payload)])
        } else {
            w.write(&payload[done - header.len()..])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
