//! What a peer can do wrong on an open connection, and the close code
//! that answers it (RFC 6455 §7.4.1).

use std::fmt;

use tungstenite::protocol::frame::coding::CloseCode;

/// A violation of RFC 6455 (or of our limits) in the bytes a peer sent.
/// The connection must be failed with [`close_code`](Self::close_code).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// RSV2 or RSV3 set, or RSV1 without a negotiated extension (or on a
    /// control or continuation frame, where no extension may set it).
    ReservedBits,
    /// An opcode RFC 6455 does not define (3-7, 11-15).
    UnknownOpcode(u8),
    /// A client sent an unmasked frame (clients must mask).
    Unmasked,
    /// A server sent a masked frame (servers must not mask).
    Masked,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame payload over 125 bytes.
    ControlTooLong(u64),
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set.
    LengthOverflow,
    /// A frame announced more payload than `max_frame_size`.
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A message grew past `max_message_size`.
    MessageTooLarge {
        /// The size the message would reach.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Invalid UTF-8 in a text message.
    InvalidUtf8,
    /// A close frame with a one-byte payload.
    CloseTooShort,
    /// A close code that must not be sent (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a close reason.
    InvalidCloseReason,
}

impl FrameError {
    /// The close code that fails the connection: 1009 for sizes, 1007 for
    /// invalid UTF-8, 1002 for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::FrameTooLarge { .. } | FrameError::MessageTooLarge { .. } => {
                CloseCode::Size
            }
            FrameError::InvalidUtf8 | FrameError::InvalidCloseReason => CloseCode::Invalid,
            _ => CloseCode::Protocol,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FrameError::*;
        match self {
            ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            Unmasked => f.write_str("unmasked frame from a client (clients must mask)"),
            Masked => f.write_str("masked frame from a server (servers must not mask)"),
            FragmentedControl => f.write_str("fragmented control frame"),
            ControlTooLong(n) => write!(f, "control frame of {n} bytes (at most 125)"),
            UnexpectedContinuation => {
                f.write_str("continuation frame without a message to continue")
            }
            ExpectedContinuation => {
                f.write_str("new data frame inside an unfinished fragmented message")
            }
            LengthOverflow => f.write_str("payload length with its most significant bit set"),
            FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes, over the limit of {max}")
            }
            MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes, over the limit of {max}")
            }
            InvalidUtf8 => f.write_str("invalid UTF-8 in a text message"),
            CloseTooShort => f.write_str("close frame with a one-byte payload"),
            InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            InvalidCloseReason => f.write_str("invalid UTF-8 in a close reason"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Whether `code` may appear in a close frame: 1000-1003, 1007-1014
/// (registered), 3000-4999 (libraries and applications).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            FrameError::MessageTooLarge { size: 2, max: 1 }.close_code(),
            CloseCode::Size
        );
        assert_eq!(FrameError::InvalidUtf8.close_code(), CloseCode::Invalid);
        assert_eq!(
            FrameError::InvalidCloseReason.close_code(),
            CloseCode::Invalid
        );
        assert_eq!(FrameError::ReservedBits.close_code(), CloseCode::Protocol);
        assert!(FrameError::InvalidUtf8.to_string().contains("UTF-8"));
        for ok in [1000, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
