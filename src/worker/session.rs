//! An open WebSocket: frames in from the socket, messages for the route's
//! handler (called through `handlers.rs`), the handler's messages back
//! out as frames. The session owns
//! its reading (with a budget and backpressure), sending, flushing,
//! closing and failing; each returns what the loop has to do next.
//!
//! Socket reads go into one 64 KiB scratch buffer shared by the worker's
//! connections; `frame::FrameReader` unmasks and validates the payloads
//! there, in place, once. A connection keeps input only while a frame or
//! message is unfinished (the reader's buffer, or `pending` when its read
//! budget ran out mid-read) and output only until the socket takes it:
//! between messages it holds no buffer at all.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};

use std::time::Instant;

use bytes::Bytes;
use log::{debug, error, warn};

use super::admit::Counted;
use super::blocked::Blocked;
use super::rooms::Places;
use super::stream::Stream;
use super::turn::{self, Span};
use super::upgrade::Upgrade;
use crate::deflate::{
    inflate_message, ConnDeflate, DeflateTuning, InflaterPool, MessageError, SharedCompressor,
};
use crate::frame::{self, Event, FrameReader, Input, MessageKind, Payload, Role};
use crate::handler::{ConnId, ConnInfo};
use crate::message::{truncate_reason, CloseCode, Message, Text};

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

thread_local! {
    /// The worker's one compressor for every connection whose server
    /// keeps no context (created with the first compressed message; a
    /// worker runs one configuration generation).
    static SHARED: RefCell<Option<SharedCompressor>> = const { RefCell::new(None) };
    /// The worker's inflaters for messages from peers that keep no
    /// context: lent for one message, then reset and returned.
    static POOL: RefCell<InflaterPool> = RefCell::new(InflaterPool::default());
    /// The worker's output buffer for compressed messages: a send (or a
    /// broadcast) takes it, compresses into it, queues the frame from it
    /// and gives it back, so a send allocates nothing once it has grown
    /// to the messages' size, and no connection owns one (the stream
    /// copies only what the socket does not take at once).
    static DEFLATE_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest compressed-output buffer the worker keeps between
/// messages; a larger one (a rare message of several MiB) is freed after
/// its send rather than held for the worker's life.
const KEEP_DEFLATE_OUT: usize = 1 << 20;

/// Takes the worker's compressed-output buffer (empty; an empty new one
/// if it is already taken). Give it back with [`give_back_deflate_out`].
pub(super) fn take_deflate_out() -> Vec<u8> {
    let mut out = DEFLATE_OUT.take();
    out.clear();
    out
}

/// Returns a buffer from [`take_deflate_out`]: the worker keeps the
/// larger of it and the one it holds, up to [`KEEP_DEFLATE_OUT`].
pub(super) fn give_back_deflate_out(out: Vec<u8>) {
    if out.capacity() > KEEP_DEFLATE_OUT {
        return;
    }
    let held = DEFLATE_OUT.take();
    DEFLATE_OUT.set(if held.capacity() >= out.capacity() {
        held
    } else {
        out
    });
}

/// Runs `f` with the worker's shared compressor (made with `deflate`'s
/// tuning on first use).
pub(super) fn with_shared<R>(
    tuning: DeflateTuning,
    f: impl FnOnce(&mut SharedCompressor) -> R,
) -> R {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        f(shared.get_or_insert_with(|| SharedCompressor::new(tuning)))
    })
}

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

/// What a flush came to.
pub(super) enum Flush {
    /// Everything written; `resume` if reading was paused for it and
    /// must pick up again outside a readiness event.
    Done { resume: bool },
    /// The socket is full; reading stays paused until it drains.
    Blocked,
    /// The socket failed; remove the connection.
    Broken,
}

/// Whether a sent message could be queued.
pub(super) enum Sent {
    /// Queued (or there was nothing to send any more); `compressed` when
    /// this send compressed the message (for the counters).
    Queued { compressed: Option<Compressed> },
    /// The connection must be dropped (backlog too large, socket failed).
    Drop,
}

/// A message a send compressed: its payload size before and after.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compressed {
    /// Payload bytes given to the compressor.
    pub raw: usize,
    /// Compressed payload bytes queued.
    pub out: usize,
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
        let bytes = POOL.with(|pool| {
            inflate_message(
                deflate,
                kind,
                compressed,
                self.max_message_size,
                &mut pool.borrow_mut(),
            )
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

    /// Writes queued output; pauses reading while the socket is full.
    /// (Inlined: after most reads there is nothing to write.)
    #[inline]
    pub fn flush(&mut self) -> Flush {
        if self.turn.is_none() && self.stream.queued() == 0 && self.read_paused.is_none() {
            // The common case: the replies went out as they were made.
            return Flush::Done { resume: false };
        }
        match self.write_out() {
            // Dropping the marker uncounts the connection.
            Ok(()) => Flush::Done {
                resume: self.read_paused.take().is_some(),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Counted once, when the socket fills, not on every
                // flush that finds it still full.
                self.read_paused.get_or_insert_with(Blocked::new);
                Flush::Blocked
            }
            Err(_) => Flush::Broken,
        }
    }

    /// Writes this turn's broadcast frames (from the turn buffer: one
    /// send, no copy, unless something is queued before them or the
    /// socket does not take them all), then whatever is queued.
    fn write_out(&mut self) -> io::Result<()> {
        if let Some(span) = self.turn.take() {
            // `Stream::write` sends at once if nothing is queued before
            // and queues (copies) only what the socket does not take.
            let stream = &mut self.stream;
            match turn::with_bytes(span, |frames| stream.write(frames)) {
                Some(written) => written.map(drop)?,
                None => stale_span(self.info.id),
            }
        }
        self.stream.flush()
    }

    /// Copies this turn's broadcast frames into the stream's queue, ahead
    /// of a frame queued otherwise (a reply, a pong, a close).
    fn take_turn(&mut self) {
        if let Some(span) = self.turn.take() {
            let stream = &mut self.stream;
            if turn::with_bytes(span, |frames| stream.queue(frames)).is_none() {
                stale_span(self.info.id);
            }
        }
    }

    /// Queues broadcast frames that are in this turn's buffer (`span`),
    /// after what is queued already; written by the end-of-turn flush.
    /// The same backlog bound as [`send`](Self::send).
    pub fn send_turn(&mut self, span: Span, max_send_buffer: usize) -> Sent {
        if self.over_backlog(span.len(), max_send_buffer) {
            return Sent::Drop;
        }
        if self.close_sent {
            return Sent::Queued { compressed: None };
        }
        if let Some(mine) = self.turn {
            if let Some(joined) = mine.join(span) {
                self.turn = Some(joined);
                return Sent::Queued { compressed: None };
            }
            // Frames for other receivers came between: queue the earlier
            // ones (a copy) to keep the order, hold on to the new ones.
            self.take_turn();
        }
        // Written after anything queued already (see `write_out`).
        self.turn = Some(span);
        Sent::Queued { compressed: None }
    }

    /// Queues one frame (sent by the next flush, or at once if large).
    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) -> bool {
        self.take_turn();
        let sent = self.stream.send_frame(opcode, payload);
        self.sent(sent)
    }

    /// Whether a frame was queued; a failed write is logged (the caller
    /// drops the connection).
    fn sent(&self, sent: io::Result<()>) -> bool {
        match sent {
            Ok(()) => true,
            Err(e) => {
                debug!("send to {} failed: {e}", self.info.id);
                false
            }
        }
    }

    /// Queues a message compressed elsewhere (a broadcast compressed once
    /// for every receiver with the same [`ConnDeflate::shared_key`]); the
    /// same backlog bound as [`send`](Self::send), on its compressed size.
    pub fn send_compressed(
        &mut self,
        kind: MessageKind,
        compressed: &[u8],
        max_send_buffer: usize,
    ) -> Sent {
        if self.over_backlog(compressed.len(), max_send_buffer) {
            return Sent::Drop;
        }
        if self.close_sent {
            return Sent::Queued { compressed: None };
        }
        // Compressed by the caller, which counts it.
        if self.queue_message_frame(data_opcode(kind), true, compressed) {
            Sent::Queued { compressed: None }
        } else {
            Sent::Drop
        }
    }

    /// Whether queueing `len` more bytes would pass the backlog bound
    /// (`max_send_buffer` plus one largest message of the route); says
    /// so in the log, since the caller then drops the connection.
    fn over_backlog(&self, len: usize, max_send_buffer: usize) -> bool {
        let over = self.backlog() + len > max_send_buffer + self.max_message_size;
        if over {
            warn!(
                "connection {} from {}: {} bytes queued, over max_send_buffer + max_message_size; disconnecting it",
                self.info.id,
                self.info.peer,
                self.backlog()
            );
        }
        over
    }

    /// Queues one data frame, RSV1 set when its payload is compressed.
    fn queue_message_frame(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) -> bool {
        self.take_turn();
        let sent = self.stream.send_frame_rsv1(opcode, rsv1, payload);
        self.sent(sent)
    }

    /// Queues a message (flushed later). A connection whose backlog would
    /// pass `max_send_buffer` plus one largest message of its route is
    /// dropped: the hard bound behind read pausing and the broadcast
    /// check, for handlers that send many messages in one callback. (The
    /// route's limit, not the global one: a route may allow larger
    /// messages, and echoing one must not drop the connection.)
    pub fn send(&mut self, message: Message, max_send_buffer: usize) -> Sent {
        if self.over_backlog(message.len(), max_send_buffer) {
            return Sent::Drop;
        }
        if self.close_sent {
            // Nothing may follow a close frame; the handler could not know.
            return Sent::Queued { compressed: None };
        }
        let (opcode, payload): (u8, &[u8]) = match &message {
            Message::Text(t) => (TEXT, t.as_bytes()),
            Message::Binary(b) => (BINARY, b),
        };
        let mut made = None;
        let ok = match self.deflate.as_mut() {
            None => self.queue_frame(opcode, payload),
            Some(deflate) => {
                let mut compressed = take_deflate_out();
                let rsv1 = with_shared(deflate.tuning(), |shared| {
                    deflate.compress(payload, shared, &mut compressed)
                })
                .unwrap_or_else(|e| {
                    warn!("{e}; sending the message uncompressed");
                    false
                });
                let ok = if rsv1 {
                    made = Some(Compressed {
                        raw: payload.len(),
                        out: compressed.len(),
                    });
                    self.queue_message_frame(opcode, true, &compressed)
                } else {
                    self.queue_frame(opcode, payload)
                };
                give_back_deflate_out(compressed);
                ok
            }
        };
        if ok {
            Sent::Queued { compressed: made }
        } else {
            Sent::Drop
        }
    }

    /// Starts the close handshake (once) and flushes the close frame.
    pub fn close(&mut self, code: CloseCode, reason: String, now: Instant) -> Flush {
        self.closing_since.get_or_insert(now);
        if !self.close_sent {
            self.close_sent = true;
            self.queue_frame(CLOSE, &close_payload(code, &reason));
        }
        self.flush()
    }

    /// Closes with 1001 because the worker is going away, unless a close
    /// handshake is already under way.
    pub fn close_for_shutdown(&mut self, now: Instant) -> Flush {
        if self.closing_since.is_none() {
            return self.close(CloseCode::AWAY, "server shutting down".into(), now);
        }
        self.flush()
    }

    /// Sends a ping because the peer has been quiet.
    pub fn ping(&mut self) -> Flush {
        self.ping_sent = true;
        if !self.close_sent {
            self.queue_frame(PING, &[]);
        }
        self.flush()
    }

    /// Tells the peer why it failed (`code`, the error's text as the
    /// reason) as far as the socket takes it, and gives up the stream for
    /// lingering. The handler's `on_error` and `on_close` run before.
    pub fn fail(mut self, code: CloseCode, reason: &str) -> Stream {
        if !self.close_sent {
            let reason: String = reason.chars().take(100).collect();
            self.queue_frame(CLOSE, &close_payload(code, &reason));
        }
        let _ = self.write_out();
        self.stream
    }

    /// Gives up the stream, with the output the socket has not taken yet,
    /// for lingering after `Read::Closed`.
    pub fn into_stream(mut self) -> Stream {
        self.take_turn();
        self.stream
    }

    /// Answers a ping the handler's path received (the built-in `echo`
    /// answered it as it was parsed, in turn with its echoes), unless
    /// our close frame is out.
    pub fn pong(&mut self, payload: &[u8]) {
        if !self.close_sent && !self.echo {
            self.queue_frame(PONG, payload);
        }
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

/// A span outlived its turn: the worker ended a turn before flushing a
/// receiver it gave frames to. Its frames are lost (the bytes are gone);
/// say so rather than send something else.
fn stale_span(id: ConnId) {
    error!("connection {id}: broadcast frames of an ended loop turn were not sent (a wssd bug)");
}

/// A close frame's payload: the code and the reason, cut to fit.
fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let reason = truncate_reason(reason);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

#[cfg(test)]
mod tests;
