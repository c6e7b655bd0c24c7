//! A whole compressed message in, its bytes out: what the worker's
//! session and the client do with a data message whose first frame had
//! RSV1 set, and the error that fails the connection when it cannot be
//! read.
//!
//! The frame reader (`crate::frame`) enforces the framing rules of RFC
//! 6455 and RFC 7692 (RSV1 only on the first frame of a data message, and
//! only once the extension is negotiated: 1002 otherwise) and joins the
//! frames; [`inflate_message`] inflates the joined payload with the limit
//! applied to the inflated size (1009), checks inflated text as it comes
//! out (1007 at the first invalid chunk), and fails undecodable data
//! (1007 for text, 1002 for binary).

use std::fmt;

use crate::frame::{CloseCode, FrameError, MessageKind, Utf8Validator};

use super::codec::{InflateError, InflaterPool};
use super::conn::ConnDeflate;

/// Why the connection must be failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The frames broke RFC 6455 or RFC 7692's framing (RSV1 where it may
    /// not be), or a size limit.
    Frame(FrameError),
    /// A compressed message did not inflate, or inflated past the limit.
    Inflate {
        /// What went wrong.
        error: InflateError,
        /// Whether the message was text (decides 1007 or 1002).
        text: bool,
    },
    /// Inflated text is not UTF-8.
    InvalidUtf8,
}

impl MessageError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            MessageError::Frame(e) => e.close_code(),
            MessageError::Inflate { error, text } => CloseCode::from(error.close_code(*text)),
            MessageError::InvalidUtf8 => CloseCode::Invalid,
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Frame(e) => e.fmt(f),
            MessageError::Inflate { error, .. } => error.fmt(f),
            MessageError::InvalidUtf8 => f.write_str("invalid UTF-8 in an inflated text message"),
        }
    }
}

impl std::error::Error for MessageError {}

impl From<FrameError> for MessageError {
    fn from(e: FrameError) -> Self {
        MessageError::Frame(e)
    }
}

/// Inflates one whole compressed message (the payload of its frames, RSV1
/// on the first) with `deflate`'s state or an inflater of the worker's
/// `pool`: at most `max_message` bytes (1009 beyond, without allocating
/// past it), text checked as it comes out (1007 at the first invalid
/// chunk), undecodable data 1007 for text and 1002 for binary.
pub fn inflate_message(
    deflate: &mut ConnDeflate,
    kind: MessageKind,
    compressed: &[u8],
    max_message: usize,
    pool: &mut InflaterPool,
) -> Result<Vec<u8>, MessageError> {
    let text = kind == MessageKind::Text;
    let mut out = Vec::new();
    let mut utf8 = Utf8Validator::default();
    deflate
        .inflate_checked(compressed, true, max_message, pool, &mut out, |new| {
            !text || utf8.feed(new)
        })
        .map_err(|error| match error {
            InflateError::InvalidText => MessageError::InvalidUtf8,
            error => MessageError::Inflate { error, text },
        })?;
    if text && !utf8.is_complete() {
        return Err(MessageError::InvalidUtf8);
    }
    Ok(out)
}
