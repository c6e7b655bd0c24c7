//! The vocabulary handlers and the client share: a whole [`Message`]
//! (text or binary) and a [`CloseCode`].
//!
//! Payloads are [`Bytes`]: a message that arrived in one piece is handed
//! from the codec to a handler, and from a handler to every receiver of a
//! broadcast, without copying. The codec's own types stay inside the
//! crate, so that wssd's version says what changed in wssd.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::Utf8Error;

use bytes::Bytes;
use tungstenite::Utf8Bytes;

/// The longest close reason a close frame can carry, in bytes (RFC 6455
/// §5.5: 125 bytes of payload, 2 of them the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Text: UTF-8 in a cheaply cloned, shared buffer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(Utf8Bytes);

impl Text {
    /// Text of a static string, without allocating.
    #[must_use]
    pub const fn from_static(text: &'static str) -> Text {
        Text(Utf8Bytes::from_static(text))
    }

    /// The text as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The UTF-8 bytes, shared.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0.into()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(text.into())
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(text.into())
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Text {
        Text(text.into())
    }
}

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.as_str().to_owned()
    }
}

impl TryFrom<Bytes> for Text {
    type Error = Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Text, Utf8Error> {
        Utf8Bytes::try_from(bytes).map(Text)
    }
}

impl TryFrom<Vec<u8>> for Text {
    type Error = Utf8Error;
    fn try_from(bytes: Vec<u8>) -> Result<Text, Utf8Error> {
        Utf8Bytes::try_from(bytes).map(Text)
    }
}

/// A whole data message, received or to send. Pings, pongs and close
/// frames are not messages: handlers get them through their own
/// callbacks, the client answers them itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Text>) -> Message {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }

    /// The payload bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// The payload, shared (no copy).
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        match self {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// The payload length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Whether this is a text message.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The payload as text: a text message's text, or a binary payload
    /// that happens to be UTF-8.
    ///
    /// # Errors
    /// A binary payload that is not UTF-8.
    pub fn to_text(&self) -> Result<&str, Utf8Error> {
        match self {
            Message::Text(text) => Ok(text.as_str()),
            Message::Binary(data) => std::str::from_utf8(data),
        }
    }

    /// The payload as text; invalid UTF-8 in binary payloads is replaced.
    #[must_use]
    pub fn to_text_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl From<Text> for Message {
    fn from(text: Text) -> Message {
        Message::Text(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::text(text)
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Message {
        Message::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Message {
        Message::binary(data)
    }
}

/// A WebSocket close code (RFC 6455 §7.4). Any `u16` converts into one;
/// the constants name the codes of the RFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept (e.g. binary).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: the close frame carried no code (never sent).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame (never sent).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with its type, e.g. text that is not UTF-8.
    pub const INVALID: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const SIZE: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not offer.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (internal error).
    pub const ERROR: CloseCode = CloseCode(1011);
    /// 1012: the server is restarting.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const AGAIN: CloseCode = CloseCode(1013);

    /// The code `code`.
    #[must_use]
    pub const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The code as a number.
    #[must_use]
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether a close frame may carry this code: 1000–1003, 1007–1013
    /// and the registered and private ranges 3000–4999. 1005 and 1006
    /// only describe what was (not) received.
    #[must_use]
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1013 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> CloseCode {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<tungstenite::protocol::frame::coding::CloseCode> for CloseCode {
    fn from(code: tungstenite::protocol::frame::coding::CloseCode) -> CloseCode {
        CloseCode(code.into())
    }
}

impl From<CloseCode> for tungstenite::protocol::frame::coding::CloseCode {
    fn from(code: CloseCode) -> Self {
        code.0.into()
    }
}

/// Cuts a close reason to [`MAX_CLOSE_REASON`] bytes at a character
/// boundary: the one rule for every close frame wssd sends.
#[must_use]
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert_eq!(cut.len(), 122);
        let ascii = "x".repeat(200);
        assert_eq!(truncate_reason(&ascii).len(), MAX_CLOSE_REASON);
        assert_eq!(truncate_reason("bye"), "bye");
        assert!(truncate_reason(&"€".repeat(60)).len() <= MAX_CLOSE_REASON);
    }

    #[test]
    fn messages_share_their_payload() {
        let data = Bytes::from(vec![1u8; 1000]);
        let m = Message::Binary(data.clone());
        assert_eq!(m.clone().into_payload().as_ptr(), data.as_ptr());
        let text = Text::try_from(Bytes::from("hé")).unwrap();
        assert_eq!(Message::Text(text), Message::text("hé"));
        assert_eq!(Message::binary(vec![0xff]).to_text_lossy(), "\u{fffd}");
        assert!(Message::binary(vec![0xff]).to_text().is_err());
    }

    #[test]
    fn close_codes() {
        assert_eq!(CloseCode::from(1000), CloseCode::NORMAL);
        assert!(CloseCode::NORMAL.is_sendable());
        assert!(CloseCode::new(4000).is_sendable());
        for code in [0, 999, 1004, 1005, 1006, 1014, 1015, 2999, 5000] {
            assert!(!CloseCode::new(code).is_sendable(), "{code}");
        }
        let ws: tungstenite::protocol::frame::coding::CloseCode = CloseCode::AWAY.into();
        assert_eq!(CloseCode::from(ws), CloseCode::AWAY);
    }
}
