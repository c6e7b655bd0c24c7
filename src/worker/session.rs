//! An open WebSocket: frames in from the socket, messages for the route's
//! handler (called through `handlers.rs`), the handler's messages back
//! out as frames. The session owns its reading (with a budget and
//! backpressure, here, with the built-in `echo`'s replies and the answer
//! to the peer's close) and its sending, flushing, closing and failing
//! (`output.rs`); each returns what the loop has to do next. The worker's
//! compression state, which no connection owns, is `compression.rs`.
//!
//! Socket reads go into one 64 KiB scratch buffer shared by the worker's
//! connections; `frame::FrameReader` unmasks and validates the payloads
//! there, in place, once. A connection keeps input only while a frame or
//! message is unfinished (the reader's buffer, or `pending` when its read
//! budget ran out mid-read) and output only until the socket takes it:
//! between messages it holds no buffer at all.

use std::collections::VecDeque;
use std::io::{self, Read as _};

use std::time::Instant;

use bytes::Bytes;

use super::admit::Counted;
use super::blocked::Blocked;
use super::rooms::Places;
use super::stream::Stream;
use super::turn::Span;
use super::upgrade::Upgrade;
use crate::deflate::{inflate_message, ConnDeflate, MessageError};
use crate::frame::{self, Event, FrameReader, Input, MessageKind, Payload, Role};
use crate::handler::ConnInfo;
use crate::message::{CloseCode, Message, Text};
use output::close_payload;

/// The worker's shared read buffer: one socket read takes up to this much.
const SCRATCH: usize = 64 * 1024;

/// The worker's read buffer, shared by its connections (see the module
/// comment): [`Session::read`] reads into it.
pub(super) fn scratch() -> Box<[u8]> {
    vec![0; SCRATCH].into_boxed_slice()
}
/// Output queued to one connection above which its reading pauses until
/// the socket takes it: a client cannot grow its own queue by not reading.
const PAUSE_QUEUED: usize = 256 * 1024;
/// Messages read from one connection before the others get a turn.
pub(super) const READ_BUDGET: usize = 256;

/// Frame opcodes the session writes.
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// The opcode of a data frame of `kind`.
pub(super) fn data_opcode(kind: MessageKind) -> u8 {
    match kind {
        MessageKind::Text => TEXT,
        MessageKind::Binary => BINARY,
    }
}

/// An open WebSocket and its bookkeeping.
pub(super) struct Session {
    /// The socket and the output it has not taken yet.
    stream: Stream,
    /// Frames in: unmasked and validated in the read buffer.
    reader: FrameReader,
    /// permessage-deflate, when negotiated: between messages (with no
    /// context kept) it holds no zlib state and no buffer.
    deflate: Option<ConnDeflate>,
    /// Input not parsed yet: bytes that followed the request head, or the
    /// rest of a read when the read budget ran out. Usually empty.
    pending: Vec<u8>,
    /// What the handler sees.
    pub info: ConnInfo,
    /// Index of the route (and its handler).
    pub route: usize,
    /// The route's message size limit (bounds the send backlog too).
    max_message_size: usize,
    /// When the peer last sent a frame; drives idle pings and timeouts.
    pub last_rx: Instant,
    /// Whether we pinged since `last_rx`.
    pub ping_sent: bool,
    /// When we started the close handshake, if we did.
    pub closing_since: Option<Instant>,
    /// Queued for a flush at the end of this loop turn (broadcasts).
    pub flush_due: bool,
    /// Broadcast frames of this turn given to this connection and not
    /// written yet: they stay in the worker's turn buffer (`turn.rs`)
    /// until the end-of-turn flush writes them from there, or until
    /// anything else is queued, which copies them into the stream first
    /// (so output keeps its order).
    turn: Option<Span>,
    /// The peer's close code and reason, once its close frame arrived
    /// (boxed: rare, and every connection carries the field).
    peer_close: Option<Box<(CloseCode, String)>>,
    /// Reads are paused while output waits for the socket (backpressure);
    /// the marker counts the connection in the worker's
    /// `send_blocked_connections` gauge meanwhile (`blocked.rs`), and
    /// uncounts it when dropped: on draining, or with the session.
    read_paused: Option<Blocked>,
    /// Our close frame is queued: nothing may follow it.
    close_sent: bool,
    /// The peer's close frame arrived: answer it (if we did not start the
    /// close) once the messages before it are handled, then hang up.
    peer_closed: bool,
    /// The route is the built-in `echo` and nothing is negotiated that
    /// changes the payload: messages go back out from the read buffer,
    /// pings are answered as they are parsed (see `echo_inline`).
    echo: bool,
    /// Its places in the worker's broadcast sets (`rooms.rs`), from the
    /// worker's `on_open` until its `notify_close`.
    pub places: Places,
    /// The connection's count in the per-address limits, given back when
    /// the session is dropped (boxed: only with `[limits]`).
    _counted: Option<Box<Counted>>,
}

/// What reads gave the loop: messages for the handler, in order, and a
/// count of those the built-in `echo` already answered. Reused from read
/// to read.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// For the handler, in order.
    pub received: VecDeque<Received>,
    /// Answered while reading: only counted (in and out), once per read
    /// rather than handed to the loop one by one.
    pub echoed: Echoed,
}

/// Messages the built-in `echo` answered while reading.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Echoed {
    /// Messages echoed.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// What the reader found for the handler: a whole message, or a ping or
/// pong (answered and passed to `on_ping`/`on_pong` in turn with the
/// messages around it). A close is recorded by `read`, never batched; a
/// message the built-in `echo` sent back is only counted (see [`Batch`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// A whole text or binary message.
    Message(Message),
    /// A ping and its payload.
    Ping(Bytes),
    /// A pong and its payload.
    Pong(Bytes),
}

/// What one read from the session gave. Messages it found are in the
/// caller's batch, to be handed to the handler before acting on this.
pub(super) enum Read {
    /// Read again (after the batch is handled).
    More,
    /// Nothing more for now: the socket would block, reading is paused,
    /// or the budget is spent (`resume` says whether to come back after
    /// the other connections without a readiness event).
    Stop { resume: bool },
    /// The close handshake is over (or the peer vanished): our last bytes
    /// were flushed as far as the socket took them. Remove the connection,
    /// or, if some are still queued (`queued()`), linger on its stream
    /// (`into_stream`) until they are sent.
    Closed,
    /// The peer broke the protocol (or sent a message that does not
    /// inflate, or inflates too large); see `Session::fail`.
    Failed(MessageError),
}

/// How a batch of input ended.
enum Parsed {
    /// All of it was consumed.
    All,
    /// The read budget ran out after `used` bytes.
    Budget(usize),
    /// A close frame ended the input (the reader ignores what follows).
    Close,
    /// A protocol error.
    Failed(MessageError),
}

impl Session {
    /// A session over a stream whose 101 response has been written.
    pub fn new(stream: Stream, up: Upgrade, max_frame_size: usize, now: Instant) -> Session {
        let limits = frame::Limits {
            max_frame_size: Some(max_frame_size.min(up.max_message_size)),
            max_message_size: Some(up.max_message_size),
        };
        let mut reader = FrameReader::new(Role::Server, limits);
        // RSV1 without the extension negotiated is a protocol error (1002).
        reader.set_allow_rsv1(up.deflate.is_some());
        let echo = up.echo && up.deflate.is_none();
        Session {
            stream,
            reader,
            deflate: up.deflate,
            pending: up.leftover,
            info: up.info,
            route: up.route,
            max_message_size: up.max_message_size,
            last_rx: now,
            ping_sent: false,
            closing_since: None,
            flush_due: false,
            turn: None,
            peer_close: None,
            read_paused: None,
            close_sent: false,
            peer_closed: false,
            echo,
            places: Places::default(),
            _counted: up.counted,
        }
    }

    /// The stream under the protocol state.
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Bytes waiting to be sent to this peer: its backlog and this
    /// turn's broadcast frames.
    pub fn queued(&self) -> usize {
        self.backlog() + self.turn.map_or(0, |span| span.len())
    }

    /// Bytes offered to the socket that it has not taken (what the
    /// send-buffer limits bound). This turn's broadcast frames are not in
    /// it: they are bounded by the turn's buffer, shared by all receivers,
    /// and become backlog only if the socket does not take them.
    pub fn backlog(&self) -> usize {
        self.stream.queued()
    }

    /// Heap bytes held for input: an unfinished frame or message, or input
    /// left over by the read budget (0 between messages).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.reader.buffered_capacity()
            + self.pending.capacity()
            + self.stream.out_capacity()
            + usize::from(self.deflate.as_ref().is_some_and(ConnDeflate::holds_state))
    }

    /// Reads what the socket has into `scratch` (the worker's read
    /// buffer, see [`scratch`]), parsing it into `batch`, within
    /// `budget` messages per turn. Reading pauses while too much of our
    /// output waits for the socket.
    /// The built-in `echo` sends its replies from here, bounded by
    /// `max_send_buffer` as [`send`](Self::send) bounds them.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        budget: &mut usize,
        now: Instant,
        max_send_buffer: usize,
        batch: &mut Batch,
    ) -> Read {
        if self.peer_closed {
            return self.finish_close();
        }
        if self.read_paused.is_some() || self.backlog() > PAUSE_QUEUED {
            // Our replies pile up faster than the peer reads them: write
            // what the socket takes and pause reading if it is full.
            match self.flush() {
                Flush::Done { .. } => {}
                Flush::Blocked => return Read::Stop { resume: false },
                Flush::Broken => return Read::Closed,
            }
        }
        if *budget == 0 {
            // Let the other connections of this worker have a turn; the
            // readiness edge is spent, so come back after them.
            return Read::Stop { resume: true };
        }
        if !self.pending.is_empty() {
            let mut input = std::mem::take(&mut self.pending);
            let parsed = self.parse(&mut input, budget, now, max_send_buffer, batch);
            if let Parsed::Budget(used) = parsed {
                input.drain(..used);
                self.pending = input;
            }
            return self.after_parse(parsed);
        }
        loop {
            let got = match self.stream.read(scratch) {
                Ok(0) => Err(None),
                Ok(n) => {
                    let parsed = self.parse(&mut scratch[..n], budget, now, max_send_buffer, batch);
                    if let Parsed::Budget(used) = parsed {
                        self.pending = scratch[used..n].to_vec();
                    }
                    Ok(parsed)
                }
                Err(e) => Err(Some(e)),
            };
            return match got {
                // The read emptied the socket: say so now rather than on
                // a second call that would only find WouldBlock.
                Ok(Parsed::All) if self.stream.read_would_block() => Read::Stop { resume: false },
                // Nothing for the handler yet (an unfinished frame, or
                // only echoes): read on.
                Ok(Parsed::All) if batch.received.is_empty() => continue,
                Ok(parsed) => self.after_parse(parsed),
                Err(Some(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    Read::Stop { resume: false }
                }
                Err(Some(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The peer is gone (with or without the close handshake):
                // what we queued goes as far as the socket takes it.
                Err(_) => {
                    let _ = self.write_out();
                    Read::Closed
                }
            };
        }
    }

    fn after_parse(&mut self, parsed: Parsed) -> Read {
        match parsed {
            Parsed::All | Parsed::Close => Read::More,
            Parsed::Budget(_) => Read::Stop { resume: true },
            Parsed::Failed(e) => Read::Failed(e),
        }
    }

    /// Turns `input` into messages in `batch`; unmasks in place.
    fn parse(
        &mut self,
        input: &mut [u8],
        budget: &mut usize,
        now: Instant,
        max_send_buffer: usize,
        batch: &mut Batch,
    ) -> Parsed {
        let total = input.len();
        let mut input = Input::new(input);
        // The reader consumes a frame with its last byte, so empty input
        // holds no event: no call to find that out.
        while !input.is_empty() {
            if *budget == 0 {
                return Parsed::Budget(total - input.len());
            }
            let event = match self.reader.next(&mut input) {
                Ok(Some(event)) => event,
                Ok(None) => return Parsed::All,
                Err(e) => return Parsed::Failed(e.into()),
            };
            *budget = budget.saturating_sub(1);
            self.last_rx = now;
            self.ping_sent = false;
            let received = match event {
                Event::Message {
                    kind,
                    compressed: true,
                    payload,
                } => match self.inflate(kind, &payload) {
                    Ok(m) => Received::Message(m),
                    Err(e) => return Parsed::Failed(e),
                },
                Event::Message { kind, payload, .. }
                    if self.echo
                        && self.echo_inline(kind, &payload, max_send_buffer, input.is_empty()) =>
                {
                    batch.echoed.messages += 1;
                    batch.echoed.bytes += payload.len() as u64;
                    continue;
                }
                Event::Message { kind, payload, .. } => match to_message(kind, payload) {
                    Some(m) => Received::Message(m),
                    None => return Parsed::Failed(frame::FrameError::InvalidUtf8.into()),
                },
                Event::Ping(p) => {
                    if self.echo && !self.close_sent {
                        // In order with the echoes around it.
                        self.queue_frame(PONG, &p);
                    }
                    Received::Ping(p.into_vec().into())
                }
                Event::Pong(p) => Received::Pong(p.into_vec().into()),
                Event::Close(frame) => {
                    // Our reply may never be read: bound the wait for it.
                    self.closing_since.get_or_insert(now);
                    self.peer_close = Some(Box::new(match frame {
                        Some(f) => (f.code.into(), f.reason.to_string()),
                        None => (CloseCode::NO_STATUS, String::new()),
                    }));
                    self.peer_closed = true;
                    return Parsed::Close;
                }
            };
            batch.received.push_back(received);
        }
        Parsed::All
    }

    /// Inflates a compressed message, `max_message_size` applying to the
    /// inflated size (1009), text checked as it comes out (1007).
    fn inflate(&mut self, kind: MessageKind, compressed: &[u8]) -> Result<Message, MessageError> {
        let deflate = self
            .deflate
            .as_mut()
            .ok_or(MessageError::Frame(frame::FrameError::ReservedBits))?;
        let bytes = compression::with_pool(|pool| {
            inflate_message(deflate, kind, compressed, self.max_message_size, pool)
        })?;
        Ok(match kind {
            MessageKind::Binary => Message::Binary(bytes.into()),
            MessageKind::Text => {
                Message::Text(Text::try_from(bytes).map_err(|_| MessageError::InvalidUtf8)?)
            }
        })
    }

    /// The built-in `echo`, done where the message was parsed: the payload
    /// goes back out from the read buffer (unmasked in place), so a
    /// message that arrived whole in one read is never copied into a
    /// message of its own; a large one goes to the socket in one writev
    /// with its header. False if it cannot be queued here (the backlog
    /// bound of `send`, or a failed write): the message then takes the
    /// handler's path, which drops the connection as `send` does.
    /// `last_of_read`: the message ended the input; if the read also
    /// emptied the socket, nothing is queued after the reply before the
    /// flush, so it goes out at once (see `Stream::send_last_frame`).
    fn echo_inline(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        max_send_buffer: usize,
        last_of_read: bool,
    ) -> bool {
        if self.close_sent {
            // Nothing may follow a close frame (as in `send`).
            return true;
        }
        if self.backlog() + payload.len() > max_send_buffer + self.max_message_size {
            return false;
        }
        if last_of_read && self.stream.read_would_block() {
            self.take_turn();
            let sent = self.stream.send_last_frame(data_opcode(kind), payload);
            return self.sent(sent);
        }
        self.queue_frame(data_opcode(kind), payload)
    }

    /// Whether the connection negotiated permessage-deflate.
    pub fn deflate(&self) -> Option<&ConnDeflate> {
        self.deflate.as_ref()
    }

    /// The peer's close frame arrived and what came before it is handled:
    /// answer it (unless it answered ours), send what is queued, hang up.
    fn finish_close(&mut self) -> Read {
        if !self.close_sent {
            let reply = match self.peer_close.as_deref() {
                Some((code, reason)) if *code != CloseCode::NO_STATUS => {
                    close_payload(*code, reason)
                }
                _ => Vec::new(),
            };
            self.queue_frame(CLOSE, &reply);
            self.close_sent = true;
        }
        let _ = self.write_out();
        Read::Closed
    }

    /// The peer's close code and reason, for `on_close`: taken once;
    /// `None` and no reason if the peer sent no close frame.
    pub fn take_peer_close(&mut self) -> (Option<CloseCode>, String) {
        match self.peer_close.take().map(|b| *b) {
            Some((c, r)) => (Some(c), r),
            None => (None, String::new()),
        }
    }
}

/// The message for the handler: one copy of a payload borrowed from the
/// read buffer, none of one assembled from several reads (its buffer
/// becomes the message's `Bytes`, shared from then on by every receiver
/// of an echo or broadcast). `None` if a text payload is not UTF-8 (the
/// reader has checked it already).
fn to_message(kind: MessageKind, payload: Payload<'_>) -> Option<Message> {
    let bytes = payload.into_vec();
    match kind {
        MessageKind::Binary => Some(Message::Binary(bytes.into())),
        MessageKind::Text => Text::try_from(bytes).ok().map(Message::Text),
    }
}

mod compression;
mod output;
#[cfg(test)]
mod tests;

pub(super) use compression::{give_back_deflate_out, take_deflate_out, with_shared};
pub(super) use output::{Compressed, Flush, Sent};
