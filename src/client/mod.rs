//! Blocking WebSocket client library (`wssd::client`); the `wssd client`
//! command line over it lives in the `wssd-cli` package (cli/src/client.rs).
//!
//! [`Client::connect`] opens a `ws://` or `wss://` connection (directly or
//! through an HTTP CONNECT proxy) and performs the handshake; the client then
//! sends and receives whole messages and closes with the close handshake.
//! tungstenite does the opening handshake, wssd's frame codec (`frame`) reads and
//! writes the frames. This module is the API and the sending side;
//! `incoming` reads, `transport` is TCP, the proxy tunnel and TLS.
//!
//! ```no_run
//! use std::time::Duration;
//! use wssd::client::{Client, ClientConfig};
//!
//! let config = ClientConfig::default().with_timeout(Duration::from_secs(5));
//! let mut client = Client::connect("ws://127.0.0.1:8080/chat", &config)?;
//! let reply = client.send_receive_text("hello")?;
//! println!("{}", reply.to_text_lossy());
//! client.close(1000, "bye")?;
//! # Ok::<(), wssd::client::ClientError>(())
//! ```

mod config;
mod error;
mod handshake;
mod incoming;
pub mod reconnect;

mod transport;
mod url;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use self::url::WsUrl;
use crate::deflate::{self, ConnDeflate, InflaterPool, SharedCompressor};
use crate::frame::{Control, Data, FrameReader, FrameWriter, Limits, OpCode, Role};
pub use crate::message::{CloseCode, Message, Text};
pub use config::{ClientConfig, Proxy, TlsOptions};
use error::is_disconnect;
pub use error::ClientError;
use incoming::Incoming;
use transport::MaybeTls;

/// How long to wait for the server to end the TCP connection after its close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A blocking WebSocket client connection.
#[derive(Debug)]
pub struct Client {
    stream: MaybeTls,
    reader: FrameReader,
    writer: FrameWriter,
    /// Read buffer: bytes `rpos..rlen` are read and not yet consumed.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    /// Frames to send, gathered for one write (emptied after each).
    out: Vec<u8>,
    /// A message's compressed bytes (kept between sends, up to `KEEP_OUT`).
    zbuf: Vec<u8>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    fragment_size: Option<usize>,
    subprotocol: Option<String>,
    /// permessage-deflate, when the server accepted our offer.
    deflate: Option<ConnDeflate>,
    /// Compressor for messages when the server asked us to keep no
    /// context (nothing is allocated until a message is compressed).
    shared: Option<SharedCompressor>,
    /// Inflaters for messages of a server that keeps no context.
    pool: InflaterPool,
    /// `max_message_size`, applied to inflated messages too.
    max_message: usize,
    /// Data messages that arrived while waiting for a pong.
    pending: VecDeque<Message>,
    /// The peer's close code and reason, once known.
    peer_close: Option<(CloseCode, String)>,
    /// We sent a close frame (no more frames may follow it).
    close_sent: bool,
    closed: bool,
    /// When the last pong arrived (for keep-alive checks).
    last_pong: Option<Instant>,
}

/// Size of the client's read buffer.
const READ_BUF: usize = 64 * 1024;
/// An output buffer larger than this is freed after its write.
const KEEP_OUT: usize = 64 * 1024;

impl Client {
    /// Connects to `url` (`ws://` or `wss://`) and performs the WebSocket handshake.
    ///
    /// Credentials in the URL (`ws://user:pass@host/`) are sent as
    /// `Authorization: Basic` and never in the request line.
    pub fn connect(url: &str, config: &ClientConfig) -> Result<Client, ClientError> {
        let parsed = WsUrl::parse(url).map_err(|reason| ClientError::InvalidUrl {
            url: url.to_string(),
            reason,
        })?;
        let offer = handshake::deflate_offer(config);
        let request = handshake::build_request(&parsed, config, offer.as_ref())?;
        let mut stream = transport::open(&parsed, config)?;
        // Our own handshake check (see handshake.rs); frames right behind
        // the 101 stay ours.
        let answer = match handshake::handshake(
            &mut stream,
            request,
            &config.subprotocols,
            offer.as_ref(),
        ) {
            Ok(done) => done,
            Err(ClientError::Timeout { .. }) => {
                return Err(ClientError::Timeout {
                    what: format!("waiting for the handshake answer of {}", parsed.authority()),
                    after: config.read_timeout,
                })
            }
            Err(err) => return Err(err),
        };
        let handshake::Answer {
            first_frames,
            subprotocol,
            deflate,
        } = answer;
        let deflate = deflate
            .map(|p| ConnDeflate::new(p, deflate::Role::Client, &deflate::Settings::default()));
        let mut rbuf = first_frames;
        let rlen = rbuf.len();
        rbuf.resize(rlen.max(READ_BUF), 0);
        let limits = Limits {
            max_frame_size: config.max_message_size,
            max_message_size: config.max_message_size,
        };
        let mut reader = FrameReader::new(Role::Client, limits);
        reader.set_allow_rsv1(deflate.is_some());
        Ok(Client {
            stream,
            reader,
            writer: FrameWriter::new(Role::Client),
            rbuf,
            rpos: 0,
            rlen,
            out: Vec::new(),
            zbuf: Vec::new(),
            read_timeout: config.read_timeout.filter(|t| !t.is_zero()),
            write_timeout: config.write_timeout.filter(|t| !t.is_zero()),
            fragment_size: config.fragment_size.filter(|&n| n > 0),
            subprotocol,
            deflate,
            shared: None,
            pool: InflaterPool::default(),
            max_message: config.max_message_size.unwrap_or(usize::MAX),
            pending: VecDeque::new(),
            peer_close: None,
            close_sent: false,
            closed: false,
            last_pong: None,
        })
    }

    /// Whether the server accepted permessage-deflate.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// The subprotocol the server selected, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Changes the timeout for waiting for data (`None` = forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout.filter(|t| !t.is_zero());
    }

    /// Sends a text message (fragmented per `fragment_size`).
    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.send_frames(text.as_bytes(), Data::Text)
    }

    /// Sends a binary message (fragmented per `fragment_size`).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.send_frames(data, Data::Binary)
    }

    /// Sends a [`Message`].
    pub fn send(&mut self, message: Message) -> Result<(), ClientError> {
        match message {
            Message::Text(text) => self.send_frames(text.as_bytes(), Data::Text),
            Message::Binary(data) => self.send_frames(&data, Data::Binary),
        }
    }

    /// Waits for the next whole data message. Pings are answered while waiting.
    ///
    /// A close from the server gives [`ClientError::Closed`] with its code;
    /// [`close_code`](Self::close_code) tells it afterwards too.
    pub fn receive(&mut self) -> Result<Message, ClientError> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(message);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(message) = self.read_until(deadline, "waiting for a message")? {
                return Ok(message);
            }
        }
    }

    /// Waits at most `wait` for a data message; `Ok(None)` when none came.
    pub fn receive_timeout(&mut self, wait: Duration) -> Result<Option<Message>, ClientError> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(Some(message));
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.read_until(Some(deadline), "waiting for a message") {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(ClientError::Timeout { .. }) => return Ok(None),
                Err(err) => return Err(err),
            }
        }
    }

    /// Sends `message`, then waits (within the read timeout) for the next data message.
    pub fn send_receive(&mut self, message: Message) -> Result<Message, ClientError> {
        self.send(message)?;
        self.receive()
    }

    /// [`send_receive`](Self::send_receive) for a text message.
    pub fn send_receive_text(&mut self, text: &str) -> Result<Message, ClientError> {
        self.send_text(text)?;
        self.receive()
    }

    /// Sends a ping and waits for its pong; returns the round-trip time.
    /// Data messages that arrive meanwhile are kept for [`receive`](Self::receive).
    pub fn ping(&mut self, payload: &[u8]) -> Result<Duration, ClientError> {
        if payload.len() > 125 {
            return Err(ClientError::InvalidConfig(
                "a ping payload is at most 125 bytes".into(),
            ));
        }
        self.check_open()?;
        let start = Instant::now();
        self.writer
            .append(&mut self.out, OpCode::Control(Control::Ping), true, payload);
        self.write_out("sending a ping")?;
        let deadline = self.read_timeout.map(|t| start + t);
        loop {
            match self.read_event(deadline, "waiting for the pong")? {
                Incoming::Pong(data) if data == payload => {
                    self.last_pong = Some(Instant::now());
                    return Ok(start.elapsed());
                }
                other => {
                    if let Some(message) = self.handle(other)? {
                        self.pending.push_back(message);
                    }
                }
            }
        }
    }

    /// Sends a ping without waiting for its pong; [`last_pong`](Self::last_pong)
    /// tells when a pong last arrived (while receiving).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        if payload.len() > 125 {
            return Err(ClientError::InvalidConfig(
                "a ping payload is at most 125 bytes".into(),
            ));
        }
        self.check_open()?;
        self.writer
            .append(&mut self.out, OpCode::Control(Control::Ping), true, payload);
        self.write_out("sending a ping")
    }

    /// When the last pong from the server arrived, if any has.
    pub fn last_pong(&self) -> Option<Instant> {
        self.last_pong
    }

    /// Drops the connection without a close handshake (the peer is taken
    /// to be gone, e.g. after a missed pong).
    pub fn abandon(&mut self) {
        self.closed = true;
        if self.peer_close.is_none() {
            self.peer_close = Some((CloseCode::ABNORMAL, String::new()));
        }
        self.stream.shutdown();
    }

    /// Closes the connection with `code` (a [`CloseCode`] or a number) and
    /// `reason` (at most 123 bytes; longer is cut at a character boundary)
    /// and waits for the server's close reply within the read timeout.
    /// Does nothing if the connection is already closed. Data messages that
    /// arrive before the server's close reply can still be taken with
    /// [`receive`](Self::receive) afterwards.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        let code = code.into();
        if !code.is_sendable() {
            return Err(ClientError::InvalidConfig(format!(
                "{code} is not a valid close code"
            )));
        }
        self.writer
            .append_close(&mut self.out, Some((code.into(), reason)));
        self.close_sent = true;
        self.write_out("sending the close frame")?;
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let outcome = self.await_close_reply(deadline);
        self.closed = true;
        self.stream.shutdown();
        outcome
    }

    /// The close code the server sent (1005 if its close frame had none,
    /// 1006 if the connection ended without one), once the connection is closed.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.peer_close.as_ref().map(|(code, _)| *code)
    }

    /// The close reason the server sent, once the connection is closed.
    pub fn close_reason(&self) -> Option<&str> {
        self.peer_close.as_ref().map(|(_, reason)| reason.as_str())
    }

    /// Whether the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads until the close reply and the end of the connection.
    fn await_close_reply(&mut self, mut deadline: Option<Instant>) -> Result<(), ClientError> {
        loop {
            if self.peer_close.is_some() {
                // The server should now end the TCP connection; do not wait long for it.
                let grace = Instant::now() + CLOSE_GRACE;
                deadline = Some(deadline.map_or(grace, |d| d.min(grace)));
            }
            match self.read_event(deadline, "waiting for the close reply") {
                Ok(Incoming::Close(frame)) => self.record_close(frame),
                Ok(Incoming::Message(message)) => self.pending.push_back(message),
                Ok(_) => {}
                Err(_) if self.peer_close.is_some() => return Ok(()),
                Err(ClientError::Timeout { .. }) => {
                    return Err(ClientError::Timeout {
                        what: "waiting for the server to answer the close".into(),
                        after: self.read_timeout,
                    })
                }
                Err(_) => {
                    self.peer_close = Some((CloseCode::ABNORMAL, String::new()));
                    return Err(ClientError::Closed {
                        code: CloseCode::ABNORMAL,
                        reason: "the connection ended without a close reply".into(),
                    });
                }
            }
        }
    }

    /// Sends `payload` as one message, in fragments if it is longer than
    /// `fragment_size`, all in one write.
    fn send_frames(&mut self, payload: &[u8], kind: Data) -> Result<(), ClientError> {
        self.check_open()?;
        // Compressed into a buffer kept between sends, like `out`.
        let mut compressed = std::mem::take(&mut self.zbuf);
        compressed.clear();
        let rsv1 = match &mut self.deflate {
            None => false,
            Some(d) => {
                let tuning = d.tuning();
                let shared = self
                    .shared
                    .get_or_insert_with(|| SharedCompressor::new(tuning));
                d.compress(payload, shared, &mut compressed)
                    .unwrap_or_else(|e| {
                        log::warn!("{e}; sending the message uncompressed");
                        false
                    })
            }
        };
        let payload: &[u8] = if rsv1 { &compressed } else { payload };
        let size = match self.fragment_size {
            Some(size) if payload.len() > size => size,
            _ => payload.len().max(1),
        };
        let mut offset = 0;
        loop {
            let end = (offset + size).min(payload.len());
            let opcode = if offset == 0 {
                OpCode::Data(kind)
            } else {
                OpCode::Data(Data::Continue)
            };
            let last = end == payload.len();
            // RSV1 marks a compressed message on its first frame only.
            self.writer.append_with(
                &mut self.out,
                opcode,
                last,
                rsv1 && offset == 0,
                &payload[offset..end],
            );
            if last {
                break;
            }
            offset = end;
        }
        if compressed.capacity() <= KEEP_OUT {
            self.zbuf = compressed;
        }
        self.write_out("sending a message")
    }

    /// Writes the gathered frames; frees a large output buffer afterwards.
    fn write_out(&mut self, what: &str) -> Result<(), ClientError> {
        let result = io::Write::write_all(&mut self.stream, &self.out)
            .and_then(|()| io::Write::flush(&mut self.stream));
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        result.map_err(|err| self.io_error(err, what, self.write_timeout))
    }

    /// Sets the socket read timeout to the time left before `deadline`.
    fn set_deadline(&mut self, deadline: Option<Instant>, what: &str) -> Result<(), ClientError> {
        let left = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    return Err(ClientError::Timeout {
                        what: what.to_string(),
                        after: self.read_timeout,
                    })
                }
            },
        };
        self.stream
            .tcp()
            .set_read_timeout(left)
            .map_err(ClientError::Io)
    }

    /// Fails with [`ClientError::Closed`] once the connection is closed.
    fn check_open(&self) -> Result<(), ClientError> {
        if self.closed {
            Err(self.closed_error())
        } else {
            Ok(())
        }
    }

    /// The error describing the closed connection.
    fn closed_error(&self) -> ClientError {
        let (code, reason) = self
            .peer_close
            .clone()
            .unwrap_or((CloseCode::ABNORMAL, String::new()));
        ClientError::Closed { code, reason }
    }

    /// The connection ended without a close frame.
    fn lost(&mut self, reason: String) -> ClientError {
        self.closed = true;
        if self.peer_close.is_none() {
            self.peer_close = Some((CloseCode::ABNORMAL, reason));
        }
        self.closed_error()
    }

    /// Maps an I/O error on the open connection.
    fn io_error(&mut self, err: io::Error, what: &str, after: Option<Duration>) -> ClientError {
        if error::is_timeout(&err) {
            ClientError::Timeout {
                what: what.to_string(),
                after,
            }
        } else if is_disconnect(&err) {
            self.lost(format!("the connection was lost: {err}"))
        } else {
            ClientError::Io(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts permessage-deflate without context takeover
    /// and swallows whatever it is sent.
    fn deflate_sink() -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head);
            let key = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Sec-WebSocket-Key: ")
                        .or(l.strip_prefix("sec-websocket-key: "))
                })
                .expect("key");
            let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
            let _ = write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; \
                 server_no_context_takeover; client_no_context_takeover\r\n\r\n"
            );
            let mut sink = [0u8; 65536];
            while s.read(&mut sink).unwrap_or(0) > 0 {}
        });
        addr
    }

    #[test]
    fn a_compressed_send_allocates_nothing_once_warm() {
        let addr = deflate_sink();
        let mut client =
            Client::connect(&format!("ws://{addr}/"), &ClientConfig::default()).expect("connect");
        assert!(client.compressed(), "the sink accepted permessage-deflate");
        let text = String::from_utf8(crate::deflate::tests::json_like(16 << 10)).expect("ASCII");
        let messages: Vec<Message> = (0..4).map(|_| Message::text(text.clone())).collect();
        let mut allocations = Vec::new();
        for m in messages {
            let before = crate::test_alloc::allocations();
            client.send(m).expect("send");
            allocations.push(crate::test_alloc::allocations() - before);
        }
        assert_eq!(
            &allocations[1..],
            &[0, 0, 0],
            "allocations per send: {allocations:?}"
        );
    }

    /// A client may be moved into another thread (its deflate state is
    /// C zlib's when it keeps a context: see deflate's zlib tests).
    #[test]
    fn a_client_is_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Client>();
    }
}
