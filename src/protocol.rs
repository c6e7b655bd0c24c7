//! How a tungstenite protocol error is answered (RFC 6455 §7.4.1), for
//! code that uses tungstenite's `WebSocket`. The daemon and the client read
//! frames with [`crate::frame`], whose `FrameError::close_code` answers the
//! same way.

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;

/// The close code that answers a read error, or `None` when there is no
/// one to tell (the peer reset the connection, or an I/O error): then the
/// connection is dropped without a close frame.
///
/// - 1009 (`Size`): a frame or message over the configured limits.
/// - 1007 (`Invalid`): invalid UTF-8 in a text message or close reason.
/// - 1002 (`Protocol`): any other violation of RFC 6455 (reserved bits,
///   unknown opcodes, unmasked client frames, oversized or fragmented
///   control frames, a continuation without a start, a bad close frame).
pub fn close_code_for(error: &WsError) -> Option<CloseCode> {
    match error {
        WsError::Capacity(_) => Some(CloseCode::Size),
        WsError::Utf8(_) => Some(CloseCode::Invalid),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        // Our own attempt to send after a close: nothing the peer did.
        WsError::Protocol(ProtocolError::SendAfterClosing) => None,
        WsError::Protocol(_) => Some(CloseCode::Protocol),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::CapacityError;

    #[test]
    fn errors_map_to_the_rfc_close_codes() {
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(close_code_for(&too_long), Some(CloseCode::Size));
        assert_eq!(
            close_code_for(&WsError::Utf8("bad".into())),
            Some(CloseCode::Invalid)
        );
        assert_eq!(
            close_code_for(&WsError::Protocol(ProtocolError::NonZeroReservedBits)),
            Some(CloseCode::Protocol)
        );
        assert_eq!(
            close_code_for(&WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            None
        );
        assert_eq!(close_code_for(&WsError::ConnectionClosed), None);
    }
}
