//! The message layer of a connection with permessage-deflate: frames from
//! the [`FrameReader`] in, messages out (inflated when RSV1 was set), and
//! messages in, frames out (compressed, RSV1 on the first frame) through
//! the [`FrameWriter`].
//!
//! A prototype of the glue the worker's session and the client will use:
//! the frame reader enforces RFC 6455 and RFC 7692's framing rules (RSV1
//! only on the first frame of a data message, and only once negotiated:
//! 1002 otherwise), this layer inflates with the message limit applied to
//! the inflated size (1009), checks inflated text as it comes out (1007 at
//! the first invalid chunk), and fails undecodable data (1007 for text,
//! 1002 for binary).

use std::fmt;

use crate::frame::{
    CloseCode, CloseFrame, Data, Event, FrameError, FrameReader, FrameWriter, Input, Limits,
    MessageKind, OpCode, Payload, Role, Utf8Validator,
};

use super::codec::{InflateError, InflaterPool, SharedCompressor};
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

/// A received data message's bytes: the frame reader's payload as it is,
/// or the inflated bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'d> {
    /// Sent uncompressed (borrowed from the read buffer when it could be).
    Plain(Payload<'d>),
    /// Inflated from a compressed message.
    Inflated(Vec<u8>),
}

impl std::ops::Deref for Received<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Received::Plain(p) => p,
            Received::Inflated(v) => v,
        }
    }
}

/// What the layer found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'d> {
    /// A whole data message, uncompressed.
    Message {
        /// Text (valid UTF-8) or binary.
        kind: MessageKind,
        /// Whether it arrived compressed.
        compressed: bool,
        /// Its bytes.
        payload: Received<'d>,
    },
    /// A ping (answer with a pong carrying the same payload).
    Ping(Payload<'d>),
    /// A pong.
    Pong(Payload<'d>),
    /// A close frame.
    Close(Option<CloseFrame>),
}

/// One connection's frames and compression.
#[derive(Debug)]
pub struct MessageLayer {
    reader: FrameReader,
    writer: FrameWriter,
    deflate: Option<ConnDeflate>,
    /// `max_message_size` applied to inflated messages.
    max_message: usize,
}

impl MessageLayer {
    /// The layer for our `role`, with the frame `limits`, and the
    /// connection's compression state if permessage-deflate was
    /// negotiated (RSV1 is refused with 1002 otherwise).
    pub fn new(role: Role, limits: Limits, deflate: Option<ConnDeflate>) -> Self {
        let mut reader = FrameReader::new(role, limits);
        reader.set_allow_rsv1(deflate.is_some());
        MessageLayer {
            reader,
            writer: FrameWriter::new(role),
            deflate,
            max_message: limits.max_message_size.unwrap_or(usize::MAX),
        }
    }

    /// Whether permessage-deflate was negotiated (for the connection handle).
    pub fn compression(&self) -> Option<&ConnDeflate> {
        self.deflate.as_ref()
    }

    /// Whether the connection holds any buffer or zlib state now.
    pub fn holds_state(&self) -> bool {
        self.reader.buffered_capacity() > 0
            || self.deflate.as_ref().is_some_and(ConnDeflate::holds_state)
    }

    /// The next event from `input`, inflating compressed messages with an
    /// inflater from the worker's `pool` (or the connection's own when the
    /// peer keeps its context). `None`: feed the next read.
    pub fn read<'d>(
        &mut self,
        input: &mut Input<'d>,
        pool: &mut InflaterPool,
    ) -> Result<Option<Inbound<'d>>, MessageError> {
        let Some(event) = self.reader.next(input)? else {
            return Ok(None);
        };
        Ok(Some(match event {
            Event::Message {
                kind,
                compressed: false,
                payload,
            } => Inbound::Message {
                kind,
                compressed: false,
                payload: Received::Plain(payload),
            },
            Event::Message {
                kind,
                compressed: true,
                payload,
            } => Inbound::Message {
                kind,
                compressed: true,
                payload: Received::Inflated(self.inflate(kind, &payload, pool)?),
            },
            Event::Ping(p) => Inbound::Ping(p),
            Event::Pong(p) => Inbound::Pong(p),
            Event::Close(c) => Inbound::Close(c),
        }))
    }

    fn inflate(
        &mut self,
        kind: MessageKind,
        compressed: &[u8],
        pool: &mut InflaterPool,
    ) -> Result<Vec<u8>, MessageError> {
        // The reader only passes RSV1 up when it was allowed, i.e. when
        // `deflate` is set; refuse it the same way otherwise.
        let deflate = self
            .deflate
            .as_mut()
            .ok_or(MessageError::Frame(FrameError::ReservedBits))?;
        inflate_message(deflate, kind, compressed, self.max_message, pool)
    }

    /// Appends one data message to `out` as frames, compressed when
    /// permessage-deflate was negotiated and the message is at least the
    /// threshold long, split into frames of at most `fragment_size` bytes
    /// (`None`: one frame). A message that fails to compress (a zlib-rs
    /// bug) is sent uncompressed and logged.
    pub fn append_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        fragment_size: Option<usize>,
        shared: &mut SharedCompressor,
        out: &mut Vec<u8>,
    ) {
        let mut compressed = Vec::new();
        let rsv1 = match &mut self.deflate {
            None => false,
            Some(d) => d
                .compress(payload, shared, &mut compressed)
                .unwrap_or_else(|e| {
                    log::warn!("{e}");
                    compressed.clear();
                    false
                }),
        };
        let body: &[u8] = if rsv1 { &compressed } else { payload };
        self.append_frames(kind, body, rsv1, fragment_size, out);
    }

    /// Appends a message's frames as they are: `body` is the payload, or
    /// with `compressed` the RFC 7692 payload made elsewhere (a broadcast
    /// compressed once by the worker's [`SharedCompressor`] for every
    /// receiver whose [`ConnDeflate::shared_key`] matches). RSV1 goes on
    /// the first frame only.
    pub fn append_frames(
        &self,
        kind: MessageKind,
        body: &[u8],
        compressed: bool,
        fragment_size: Option<usize>,
        out: &mut Vec<u8>,
    ) {
        let data = match kind {
            MessageKind::Text => Data::Text,
            MessageKind::Binary => Data::Binary,
        };
        let step = fragment_size.filter(|&n| n > 0).unwrap_or(usize::MAX);
        let mut pieces = body.chunks(step).peekable();
        if pieces.peek().is_none() {
            self.writer
                .append_with(out, OpCode::Data(data), true, compressed, &[]);
        }
        let mut first = true;
        while let Some(piece) = pieces.next() {
            let fin = pieces.peek().is_none();
            let opcode = if first {
                OpCode::Data(data)
            } else {
                OpCode::Data(Data::Continue)
            };
            // RSV1 marks the message on its first frame only (RFC 7692 §6.1).
            self.writer
                .append_with(out, opcode, fin, compressed && first, piece);
            first = false;
        }
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
