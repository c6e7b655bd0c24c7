//! What the client reads: frames from the socket into owned messages,
//! pings and closes answered as they arrive, and the connection failed
//! (close frame, then the TCP close) when the server breaks the protocol.

use std::io;
use std::time::Instant;

use super::{Client, ClientError, CloseCode, Message, Text, CLOSE_GRACE};
use crate::deflate::{self, inflate_message, MessageError};
use crate::frame::{CloseFrame, Control, Event, FrameError, Input, MessageKind, OpCode};

/// What one read step gave, owned.
pub(super) enum Incoming {
    Message(Message),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseFrame>),
}

impl Client {
    /// One read step: `Some` for a data message, `None` for a control frame.
    pub(super) fn read_until(
        &mut self,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Option<Message>, ClientError> {
        let event = self.read_event(deadline, what)?;
        self.handle(event)
    }

    /// Handles an incoming frame: data becomes a [`Message`], pings are
    /// answered, a close is answered, recorded and returned as
    /// [`ClientError::Closed`].
    pub(super) fn handle(&mut self, event: Incoming) -> Result<Option<Message>, ClientError> {
        match event {
            Incoming::Message(message) => Ok(Some(message)),
            Incoming::Ping(payload) => {
                if !self.close_sent {
                    self.writer.append(
                        &mut self.out,
                        OpCode::Control(Control::Pong),
                        true,
                        &payload,
                    );
                    // A failure shows on the next operation.
                    let _ = self.write_out("sending a pong");
                }
                Ok(None)
            }
            Incoming::Pong(_) => {
                self.last_pong = Some(Instant::now());
                Ok(None)
            }
            Incoming::Close(frame) => {
                if !self.close_sent {
                    // Echo the code (RFC 6455 §5.5.1).
                    let reply = frame.as_ref().map(|f| (f.code, ""));
                    self.writer.append_close(&mut self.out, reply);
                    self.close_sent = true;
                    let _ = self.write_out("answering the close");
                }
                self.record_close(frame);
                self.closed = true;
                Err(self.closed_error())
            }
        }
    }

    /// Reads the next frame event before `deadline`.
    pub(super) fn read_event(
        &mut self,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Incoming, ClientError> {
        self.check_open()?;
        loop {
            if self.rpos < self.rlen {
                let mut input = Input::new(&mut self.rbuf[self.rpos..self.rlen]);
                let before = input.len();
                let next = match self.reader.next(&mut input) {
                    Ok(None) => Ok(None),
                    Err(e) => Err(Failure::Frame(e)),
                    Ok(Some(Event::Message {
                        kind,
                        compressed: true,
                        payload,
                    })) => match self.deflate.as_mut() {
                        Some(d) => {
                            inflate_message(d, kind, &payload, self.max_message, &mut self.pool)
                                .map_err(Failure::Inflate)
                                .and_then(|bytes| owned(kind, bytes).map_err(Failure::Client))
                                .map(|m| Some(Incoming::Message(m)))
                        }
                        None => Err(Failure::Frame(FrameError::ReservedBits)),
                    },
                    Ok(Some(event)) => incoming(event).map(Some).map_err(Failure::Client),
                };
                self.rpos += before - input.len();
                match next {
                    Ok(Some(event)) => return Ok(event),
                    Ok(None) => {}
                    Err(Failure::Client(err)) => return Err(err),
                    Err(Failure::Frame(err)) => return Err(self.protocol_error(err)),
                    Err(Failure::Inflate(err)) => return Err(self.inflate_error(err)),
                }
            }
            self.rpos = 0;
            self.rlen = 0;
            self.set_deadline(deadline, what)?;
            match io::Read::read(&mut self.stream, &mut self.rbuf) {
                Ok(0) => {
                    return Err(
                        self.lost("the server closed the connection without a close frame".into())
                    )
                }
                Ok(n) => self.rlen = n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.io_error(err, what, self.read_timeout)),
            }
        }
    }

    /// A compressed message that does not inflate (1007 for text, 1002
    /// for binary), inflates past `max_message_size` (1009), or is not
    /// UTF-8 (1007) fails the connection.
    fn inflate_error(&mut self, err: MessageError) -> ClientError {
        if let MessageError::Frame(err) = err {
            return self.protocol_error(err);
        }
        self.fail(err.close_code().into(), &err.to_string());
        match err {
            MessageError::Inflate {
                error: deflate::InflateError::TooBig { limit },
                ..
            } => ClientError::MessageTooLarge {
                size: limit.saturating_add(1),
                max: limit,
            },
            other => ClientError::Protocol(other.to_string()),
        }
    }

    /// A protocol violation by the server fails the connection (RFC 6455
    /// 7.1.7): a close frame with 1002, 1007 or 1009, then the TCP close.
    fn protocol_error(&mut self, err: FrameError) -> ClientError {
        self.fail(err.close_code().into(), &err.to_string());
        match err {
            FrameError::FrameTooLarge { size, max } | FrameError::MessageTooLarge { size, max } => {
                ClientError::MessageTooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(max).unwrap_or(usize::MAX),
                }
            }
            other => ClientError::Protocol(other.to_string()),
        }
    }

    /// Fails the connection: sends a close frame with `code`, ends our half
    /// of the TCP connection and waits briefly for the server to end its
    /// half (so that unread input does not turn our close into a reset
    /// that could destroy the close frame in flight).
    fn fail(&mut self, code: CloseCode, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.peer_close.is_none() {
            self.peer_close = Some((CloseCode::ABNORMAL, String::new()));
        }
        if !self.close_sent {
            self.close_sent = true;
            self.writer
                .append_close(&mut self.out, Some((code.into(), reason)));
            let _ = self.write_out("failing the connection");
        }
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + CLOSE_GRACE;
        let mut sink = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() || self.stream.tcp().set_read_timeout(Some(left)).is_err() {
                break;
            }
            match io::Read::read(&mut self.stream, &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.stream.shutdown();
    }

    /// Records the peer's close frame.
    pub(super) fn record_close(&mut self, frame: Option<CloseFrame>) {
        self.peer_close = Some(match frame {
            Some(frame) => (frame.code.into(), frame.reason.as_str().to_string()),
            None => (CloseCode::NO_STATUS, String::new()),
        });
    }
}

/// Why reading the next event failed.
enum Failure {
    /// The frames broke RFC 6455 or RFC 7692.
    Frame(FrameError),
    /// A compressed message could not be inflated.
    Inflate(MessageError),
    /// Any other error.
    Client(ClientError),
}

/// A message from its kind and bytes.
fn owned(kind: MessageKind, bytes: Vec<u8>) -> Result<Message, ClientError> {
    Ok(match kind {
        MessageKind::Text => Message::Text(
            Text::try_from(bytes)
                .map_err(|_| ClientError::Protocol("invalid UTF-8 in a text message".into()))?,
        ),
        MessageKind::Binary => Message::Binary(bytes.into()),
    })
}

/// An event of the frame reader, owned (one copy of a borrowed payload).
fn incoming(event: Event<'_>) -> Result<Incoming, ClientError> {
    Ok(match event {
        Event::Message { kind, payload, .. } => Incoming::Message(owned(kind, payload.into_vec())?),
        Event::Ping(payload) => Incoming::Ping(payload.into_vec()),
        Event::Pong(payload) => Incoming::Pong(payload.into_vec()),
        Event::Close(frame) => Incoming::Close(frame),
    })
}
