//! An open WebSocket: frames in from the socket, messages to the route's
//! handler, the handler's messages back out as frames. The session owns
//! its reading (with a budget and backpressure), sending, flushing,
//! closing and failing; each returns what the loop has to do next.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error, warn};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::stream::Stream;
use super::upgrade::Upgrade;
use crate::handler::{Action, Conn as HandlerConn, ConnInfo, Handler, HandlerError};
use crate::textcheck::TextChecked;

/// tungstenite's read buffer per connection: small, because idle
/// connections dominate memory (its 128 KiB default costs ~135 KiB each).
/// Socket reads themselves go through a 64 KiB buffer shared by the
/// worker's connections (see `stream.rs`), so this does not limit them.
const READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before a socket write.
const WRITE_BUFFER: usize = 64 * 1024;
/// Output queued to one connection above which its reading pauses until
/// the socket takes it: a client cannot grow its own queue by not reading.
const PAUSE_QUEUED: usize = 256 * 1024;
/// Messages read from one connection before the others get a turn.
pub(super) const READ_BUDGET: usize = 256;

/// An open WebSocket and its bookkeeping.
pub(super) struct Session {
    /// The protocol state over the stream (whose text messages are
    /// checked for UTF-8 as they arrive).
    ws: WebSocket<TextChecked<Stream>>,
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
    /// The peer's close code and reason, once its close frame arrived.
    peer_close: Option<(CloseCode, String)>,
    /// Reads are paused while output waits for the socket (backpressure).
    read_paused: bool,
}

/// What one read from the session gave.
pub(super) enum Read {
    /// A message for the handler (or a close frame to record).
    Message(Message),
    /// Nothing more for now: the socket would block, reading is paused,
    /// or the budget is spent (`resume` says whether to come back after
    /// the other connections without a readiness event).
    Stop { resume: bool },
    /// The close handshake is over (or the peer vanished): our last bytes
    /// were flushed as far as the socket took them; remove the connection.
    Closed,
    /// A protocol or I/O error; see `Session::fail`.
    Failed(WsError),
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
    /// Queued (or there was nothing to send any more).
    Queued,
    /// The connection must be dropped (backlog too large, socket failed).
    Drop,
}

impl Session {
    /// A session over a stream whose 101 response has been written.
    pub fn new(stream: Stream, up: Upgrade, max_frame_size: usize, now: Instant) -> Session {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(up.max_message_size))
            .max_frame_size(Some(max_frame_size.min(up.max_message_size)));
        let stream = TextChecked::frames(stream, &up.leftover);
        let ws = WebSocket::from_partially_read(stream, up.leftover, Role::Server, Some(config));
        Session {
            ws,
            info: up.info,
            route: up.route,
            max_message_size: up.max_message_size,
            last_rx: now,
            ping_sent: false,
            closing_since: None,
            flush_due: false,
            peer_close: None,
            read_paused: false,
        }
    }

    /// The stream under the protocol state.
    pub fn stream(&self) -> &Stream {
        self.ws.get_ref()
    }

    /// The stream under the protocol state.
    pub fn stream_mut(&mut self) -> &mut Stream {
        self.ws.get_mut()
    }

    /// Bytes waiting to be sent to this peer. Data frames bypass
    /// tungstenite's buffer and everything tungstenite writes is taken by
    /// the stream, so the stream's queue is the whole backlog.
    pub fn queued(&self) -> usize {
        self.ws.get_ref().queued()
    }

    /// Reads the next message, within `budget` messages per turn. Reading
    /// pauses while too much of our output waits for the socket.
    pub fn read(&mut self, budget: &mut usize, now: Instant) -> Read {
        if self.read_paused {
            // Our replies piled up: see whether the socket took them.
            if let Some(stop) = self.drain_backlog() {
                return stop;
            }
        }
        if self.queued() > PAUSE_QUEUED {
            // Our replies pile up faster than the peer reads them: write
            // what the socket takes and pause reading if it is full.
            if let Some(stop) = self.drain_backlog() {
                return stop;
            }
        }
        if *budget == 0 {
            // Let the other connections of this worker have a turn; the
            // readiness edge is spent, so come back after them.
            return Read::Stop { resume: true };
        }
        *budget -= 1;
        loop {
            return match self.ws.read() {
                Ok(message) => {
                    self.last_rx = now;
                    self.ping_sent = false;
                    if let Message::Close(frame) = &message {
                        // Our reply may never be read: bound the wait for it.
                        self.closing_since.get_or_insert(now);
                        self.peer_close = Some(match frame {
                            Some(f) => (f.code, f.reason.to_string()),
                            None => (CloseCode::Status, String::new()),
                        });
                    }
                    Read::Message(message)
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    Read::Stop { resume: false }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    // Replies queued before the close (and tungstenite's
                    // close reply) are still sent.
                    let _ = self.ws.flush();
                    let _ = io::Write::flush(self.ws.get_mut());
                    Read::Closed
                }
                Err(e) => Read::Failed(e),
            };
        }
    }

    /// Flushes while reading is paused or the backlog is large: `None`
    /// to go on reading, or why to stop.
    fn drain_backlog(&mut self) -> Option<Read> {
        match self.flush() {
            Flush::Done { .. } => None,
            Flush::Blocked => Some(Read::Stop { resume: false }),
            Flush::Broken => Some(Read::Closed),
        }
    }

    /// Writes queued output; pauses reading while the socket is full.
    pub fn flush(&mut self) -> Flush {
        match self.ws.flush() {
            Ok(()) => Flush::Done {
                resume: std::mem::replace(&mut self.read_paused, false),
            },
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_paused = true;
                Flush::Blocked
            }
            Err(_) => Flush::Broken,
        }
    }

    /// Queues a message (flushed later). A connection whose backlog would
    /// pass `max_send_buffer` plus one largest message of its route is
    /// dropped: the hard bound behind read pausing and the broadcast
    /// check, for handlers that send many messages in one callback. (The
    /// route's limit, not the global one: a route may allow larger
    /// messages, and echoing one must not drop the connection.)
    pub fn send(&mut self, message: Message, max_send_buffer: usize) -> Sent {
        let limit = max_send_buffer + self.max_message_size;
        if self.queued() + message.len() > limit {
            warn!(
                "connection {} from {}: {} bytes queued, over max_send_buffer + max_message_size; disconnecting it",
                self.info.id,
                self.info.peer,
                self.queued()
            );
            return Sent::Drop;
        }
        if self.ws.can_write() {
            // Data frames bypass tungstenite's write buffer (which keeps
            // its largest size for good): see `Stream::send_frame`.
            let frame = match &message {
                Message::Text(t) => Some((1, t.as_bytes())),
                Message::Binary(b) => Some((2, &b[..])),
                _ => None,
            };
            if let Some((opcode, payload)) = frame {
                return match self.ws.get_mut().send_frame(opcode, payload) {
                    Ok(()) => Sent::Queued,
                    Err(e) => {
                        debug!("send to {} failed: {e}", self.info.id);
                        Sent::Drop
                    }
                };
            }
        }
        match self.ws.write(message) {
            Ok(()) => Sent::Queued,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Sent::Queued,
            Err(WsError::Protocol(ProtocolError::SendAfterClosing))
            | Err(WsError::AlreadyClosed) => Sent::Queued,
            Err(e) => {
                debug!("send to {} failed: {e}", self.info.id);
                Sent::Drop
            }
        }
    }

    /// Starts the close handshake (once) and flushes the close frame.
    pub fn close(&mut self, code: CloseCode, reason: String, now: Instant) -> Flush {
        self.closing_since.get_or_insert(now);
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        self.flush()
    }

    /// Closes with 1001 because the worker is going away, unless a close
    /// handshake is already under way.
    pub fn close_for_shutdown(&mut self, now: Instant) -> Flush {
        if self.closing_since.is_none() {
            self.closing_since = Some(now);
            let _ = self.ws.close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "server shutting down".into(),
            }));
        }
        self.flush()
    }

    /// Sends a ping because the peer has been quiet.
    pub fn ping(&mut self) -> Flush {
        self.ping_sent = true;
        let _ = self.ws.write(Message::Ping(Default::default()));
        self.flush()
    }

    /// Tells the peer why it failed (`code`, the error's text as the
    /// reason) as far as the socket takes it, and gives up the stream for
    /// lingering. The handler's `on_error` and `on_close` run before.
    pub fn fail(mut self, code: CloseCode, reason: &str) -> Stream {
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.chars().take(100).collect::<String>().into(),
        }));
        let _ = self.ws.flush();
        self.ws.into_inner().into_inner()
    }

    /// Calls a handler callback for this connection, catching panics (the
    /// connection is then closed with 1011) and passing errors to
    /// `on_error`. What the handler asked for is left in `actions`.
    pub fn call<F>(&self, handler: &mut dyn Handler, actions: &mut Vec<Action>, f: F)
    where
        F: FnOnce(&mut dyn Handler, &mut HandlerConn<'_>) -> Result<(), HandlerError>,
    {
        let info = &self.info;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut conn = HandlerConn::new(info, actions);
            let result = f(handler, &mut conn);
            if let Err(e) = &result {
                handler.on_error(&mut conn, e);
            }
        }));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(
                "route {}: handler panicked on connection {}: {what}; closing it with 1011",
                info.route, info.id
            );
            actions.clear();
            actions.push(Action::Close(CloseCode::Error, "internal error".into()));
        }
    }

    /// Hands one received message to the handler.
    pub fn dispatch(&self, handler: &mut dyn Handler, actions: &mut Vec<Action>, message: Message) {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                self.call(handler, actions, |h, c| h.on_message(c, message));
            }
            Message::Ping(payload) => self.call(handler, actions, |h, c| {
                h.on_ping(c, &payload);
                Ok(())
            }),
            Message::Pong(payload) => self.call(handler, actions, |h, c| {
                h.on_pong(c, &payload);
                Ok(())
            }),
            // Recorded by `read`; tungstenite queued the reply.
            Message::Close(_) | Message::Frame(_) => {}
        }
    }

    /// Tells the handler the connection is gone (with the peer's close
    /// code if it sent one). Broadcasts it asks for are left in `actions`.
    pub fn notify_close(&mut self, handler: &mut dyn Handler, actions: &mut Vec<Action>) {
        let (code, reason) = match self.peer_close.take() {
            Some((c, r)) => (Some(c), r),
            None => (None, String::new()),
        };
        let info = &self.info;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut conn = HandlerConn::new(info, actions);
            handler.on_close(&mut conn, code, &reason);
        }));
        if outcome.is_err() {
            error!(
                "route {}: handler panicked in on_close of {}",
                info.route, info.id
            );
        }
    }
}
