//! permessage-deflate (RFC 7692): negotiation, message compression and
//! decompression, and the per-connection state, independent of sockets
//! and frames so the worker and the client share it.
//!
//! - `header`: the `Sec-WebSocket-Extensions` grammar.
//! - [`negotiate`]: offers and answers → [`Negotiated`].
//! - [`codec`]: [`Compressor`], [`SharedCompressor`], [`Inflater`],
//!   [`InflaterPool`] over zlib-rs or C zlib ([`Backend`]).
//! - `zlib`: C zlib's streams (through `libz-sys`) as safe types; the
//!   crate's only FFI to it.
//! - [`conn`]: [`ConnDeflate`], what one connection holds.
//! - [`message`]: [`inflate_message`], a whole compressed message (the
//!   frame reader joined its frames and checked RSV1) to its bytes, with
//!   the limit and fail-fast UTF-8, and [`MessageError`], what fails the
//!   connection.
//!
//! Everything but `message` is independent of frames and sockets.

pub mod codec;
pub mod conn;
mod header;
pub mod message;
pub mod negotiate;
mod zlib;

#[cfg(test)]
mod message_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod zlib_tests;

pub use codec::{
    Backend, CompressError, Compressor, DeflateTuning, InflateError, Inflater, InflaterPool,
    SharedCompressor, SYNC_TAIL,
};
pub use conn::ConnDeflate;
pub use message::{inflate_message, MessageError};
pub use negotiate::{
    accept_offer, Accepted, AnswerError, ClientOffer, ClientWindow, Direction, Negotiated, Role,
};

/// How the server negotiates and compresses: the `[compression]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Keep the server's LZ77 window between messages (better ratio on
    /// similar messages, one compressor per connection). `false` answers
    /// `server_no_context_takeover` and uses the worker's shared compressor.
    pub server_context_takeover: bool,
    /// Let clients keep their window between messages (then the server
    /// keeps an inflater per connection). `false` answers
    /// `client_no_context_takeover`.
    pub client_context_takeover: bool,
    /// Largest window the server compresses with, 9..=15.
    pub server_max_window_bits: u8,
    /// Largest window asked of clients that accept a limit, 9..=15.
    pub client_max_window_bits: u8,
    /// zlib `memLevel`, 1..=9.
    pub memory_level: u8,
    /// zlib compression level, 1..=9.
    pub level: u8,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
}

/// Defaults of [`Settings`]; docs/configuration.md explains them.
pub mod defaults {
    /// `compression.server_context_takeover`
    pub const SERVER_CONTEXT_TAKEOVER: bool = false;
    /// `compression.client_context_takeover`
    pub const CLIENT_CONTEXT_TAKEOVER: bool = false;
    /// `compression.server_max_window_bits`
    pub const SERVER_MAX_WINDOW_BITS: u8 = 15;
    /// `compression.client_max_window_bits`
    pub const CLIENT_MAX_WINDOW_BITS: u8 = 15;
    /// `compression.memory_level`
    pub const MEMORY_LEVEL: u8 = 8;
    /// `compression.level`
    pub const LEVEL: u8 = 1;
    /// `compression.threshold`
    pub const THRESHOLD: usize = 128;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_context_takeover: defaults::SERVER_CONTEXT_TAKEOVER,
            client_context_takeover: defaults::CLIENT_CONTEXT_TAKEOVER,
            server_max_window_bits: defaults::SERVER_MAX_WINDOW_BITS,
            client_max_window_bits: defaults::CLIENT_MAX_WINDOW_BITS,
            memory_level: defaults::MEMORY_LEVEL,
            level: defaults::LEVEL,
            threshold: defaults::THRESHOLD,
        }
    }
}

impl Settings {
    /// The compressor's knobs.
    pub fn tuning(&self) -> DeflateTuning {
        DeflateTuning {
            level: self.level,
            memory_level: self.memory_level,
        }
    }
}
