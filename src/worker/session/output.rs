//! What a session sends: messages, broadcast frames, pings, pongs and
//! close frames queued on its stream, and the flushes that write them,
//! each returning what the loop has to do next. Reading is in the parent
//! module.

use std::io::{self, Write as _};
use std::time::Instant;

use log::{debug, error, warn};

use super::compression::{give_back_deflate_out, take_deflate_out, with_shared};
use super::{data_opcode, Session, BINARY, CLOSE, PING, PONG, TEXT};
use crate::frame::MessageKind;
use crate::handler::ConnId;
use crate::message::{truncate_reason, CloseCode, Message};
use crate::worker::blocked::Blocked;
use crate::worker::stream::Stream;
use crate::worker::turn::{self, Span};

/// What a flush came to.
pub(in crate::worker) enum Flush {
    /// Everything written; `resume` if reading was paused for it and
    /// must pick up again outside a readiness event.
    Done { resume: bool },
    /// The socket is full; reading stays paused until it drains.
    Blocked,
    /// The socket failed; remove the connection.
    Broken,
}

/// Whether a sent message could be queued.
pub(in crate::worker) enum Sent {
    /// Queued (or there was nothing to send any more); `compressed` when
    /// this send compressed the message (for the counters).
    Queued { compressed: Option<Compressed> },
    /// The connection must be dropped (backlog too large, socket failed).
    Drop,
}

/// A message a send compressed: its payload size before and after.
#[derive(Debug, Clone, Copy)]
pub(in crate::worker) struct Compressed {
    /// Payload bytes given to the compressor.
    pub raw: usize,
    /// Compressed payload bytes queued.
    pub out: usize,
}

impl Session {
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
    pub(super) fn write_out(&mut self) -> io::Result<()> {
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
    pub(super) fn take_turn(&mut self) {
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
    pub(super) fn queue_frame(&mut self, opcode: u8, payload: &[u8]) -> bool {
        self.take_turn();
        let sent = self.stream.send_frame(opcode, payload);
        self.sent(sent)
    }

    /// Whether a frame was queued; a failed write is logged (the caller
    /// drops the connection).
    pub(super) fn sent(&self, sent: io::Result<()>) -> bool {
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
}

/// A span outlived its turn: the worker ended a turn before flushing a
/// receiver it gave frames to. Its frames are lost (the bytes are gone);
/// say so rather than send something else.
fn stale_span(id: ConnId) {
    error!("connection {id}: broadcast frames of an ended loop turn were not sent (a wssd bug)");
}

/// A close frame's payload: the code and the reason, cut to fit.
pub(super) fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let reason = truncate_reason(reason);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}
