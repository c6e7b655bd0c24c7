//! The WebSocket frame codec (RFC 6455) for both roles: the daemon's
//! connections (server) and the client library (client).
//!
//! - [`FrameReader`] turns bytes, as they are read from a socket, into
//!   [`Event`]s: whole messages, pings, pongs, a close. Each payload is
//!   unmasked once, in place ([`apply_mask`], several words at a time);
//!   text is validated once, as it arrives, and fails on the first invalid
//!   byte (1007). A message whose frame arrived whole in one read is
//!   borrowed from the caller's read buffer; anything cut by the end of a
//!   read is copied once into a buffer that is released with its message.
//!   Every rule of RFC 6455 is checked; a [`FrameError`] names the
//!   violation and its close code ([`FrameError::close_code`]). RSV1 is
//!   passed up as [`Event::Message`]'s `compressed` once allowed.
//! - [`FrameWriter`] encodes headers ([`EncodedHeader`]), appends whole
//!   frames to one buffer (many small frames, one write) and, with
//!   [`write_frame`], sends header + large payload in one `writev` without
//!   copying the payload. The client role masks with a random key.
//!
//! The opening handshake is not here (see `handshake` and `client`);
//! tungstenite's frame-level types ([`CloseCode`], [`OpCode`],
//! [`CloseFrame`], [`Role`]) are the vocabulary.
//!
//! A typical read loop (the worker's, over its shared scratch buffer):
//!
//! ```
//! use wssd::frame::{Event, FrameReader, Input, Limits, Role};
//!
//! let mut reader = FrameReader::new(Role::Server, Limits::default());
//! // A masked text frame "Hi" as a client sends it (key 1, 2, 3, 4).
//! let mut scratch = [0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2];
//! let mut input = Input::new(&mut scratch);
//! while let Some(event) = reader.next(&mut input)? {
//!     if let Event::Message { payload, .. } = event {
//!         assert_eq!(&payload[..], b"Hi");
//!         assert!(payload.is_borrowed()); // no copy: unmasked in `scratch`
//!     }
//! }
//! assert_eq!(reader.buffered_capacity(), 0);
//! # Ok::<(), wssd::frame::FrameError>(())
//! ```

mod error;
mod header;
mod mask;
mod reader;
mod utf8;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{is_valid_close_code, FrameError};
pub use header::{EncodedHeader, MAX_HEADER};
pub use mask::apply_mask;
pub use reader::{parse_close, Event, FrameReader, Input, Limits, MessageKind, Payload};
pub use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
pub use tungstenite::protocol::frame::CloseFrame;
pub use tungstenite::protocol::Role;
pub use utf8::Utf8Validator;
pub use writer::{truncate_reason, write_frame, FrameWriter, MAX_CLOSE_REASON};
