//! One client connection's life cycle, as an explicit state machine:
//!
//! ```text
//! TlsHandshake ─► Request ─► Response ─┬─► Open ─► (closed, removed)
//!                    │                 └─► Linger ─► (removed)
//!                    └─ (garbage, timeout) ─► Response(error) ─► Linger
//! ```
//!
//! `Request` collects the HTTP head without blocking; `Response` writes the
//! 101 (or an error status) as the socket allows; `Open` is a tungstenite
//! WebSocket; `Linger` discards input after we have said our last word so
//! that closing the socket does not reset it before the peer has read that
//! word.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::WebSocket;

use super::stream::Stream;
use crate::handler::ConnInfo;
use crate::textcheck::TextChecked;

/// How long we wait for a close reply, or linger after a refusal.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The phases of a connection; see the module documentation.
pub(super) enum Phase {
    /// A TLS handshake in progress.
    TlsHandshake(Box<native_tls::MidHandshakeTlsStream<mio::net::TcpStream>>),
    /// Collecting the HTTP request head.
    Request { stream: Stream, buf: Vec<u8> },
    /// Writing an HTTP response; `upgrade` is `Some` for a 101.
    Response {
        stream: Stream,
        out: Vec<u8>,
        pos: usize,
        upgrade: Option<Box<Upgrade>>,
    },
    /// A WebSocket.
    Open(Box<Open>),
    /// Discarding input until EOF or the linger deadline.
    Linger { stream: Stream },
    /// Placeholder while a phase is being replaced.
    Gone,
}

/// What becomes of a connection once its 101 response is written.
pub(super) struct Upgrade {
    /// What the handler will see.
    pub info: ConnInfo,
    /// Index of the route (and its handler).
    pub route: usize,
    /// Bytes that arrived after the request head: the first frames.
    pub leftover: Vec<u8>,
    /// The route's message size limit.
    pub max_message_size: usize,
}

/// An open WebSocket and its bookkeeping.
pub(super) struct Open {
    /// The protocol state over the stream (whose text messages are
    /// checked for UTF-8 as they arrive).
    pub ws: WebSocket<TextChecked<Stream>>,
    /// What the handler sees.
    pub info: ConnInfo,
    /// Index of the route (and its handler).
    pub route: usize,
    /// When the peer last sent a frame; drives idle pings and timeouts.
    pub last_rx: Instant,
    /// Whether we pinged since `last_rx`.
    pub ping_sent: bool,
    /// When we started the close handshake, if we did.
    pub closing_since: Option<Instant>,
    /// Queued for a flush at the end of this loop turn (broadcasts).
    pub flush_due: bool,
    /// The peer's close code and reason, once its close frame arrived.
    pub peer_close: Option<(CloseCode, String)>,
    /// Reads are paused while output waits for the socket (backpressure).
    pub read_paused: bool,
}

impl Open {
    /// Bytes waiting to be sent to this peer. Data frames bypass
    /// tungstenite's buffer and everything tungstenite writes is taken by
    /// the stream, so the stream's queue is the whole backlog.
    pub fn queued(&self) -> usize {
        self.ws.get_ref().queued()
    }
}

/// One connection of a worker.
pub(super) struct Conn {
    /// Distinguishes this connection from a later one in the same slot.
    pub serial: u32,
    /// The peer's address.
    pub peer: std::net::SocketAddr,
    /// When it was accepted; bounds the handshake.
    pub accepted: Instant,
    /// Where it is in its life.
    pub phase: Phase,
    /// The deadline currently in the worker's timer heap for it, if any.
    pub scheduled: Option<Instant>,
    /// When a lingering or refused connection is dropped at the latest.
    pub linger_until: Option<Instant>,
}

/// How reading a request head ended.
pub(super) enum HeadRead {
    /// The socket has no more bytes for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// More than `limit` bytes arrived; stop reading.
    Full,
}

/// Reads into `buf` until the socket would block, the peer closes, or
/// `buf` holds more than `limit` bytes.
pub(super) fn read_head(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<HeadRead> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() > limit {
            return Ok(HeadRead::Full);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(HeadRead::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HeadRead::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `out[*pos..]`; `Ok(true)` once all of it is written.
pub(super) fn write_out(stream: &mut Stream, out: &[u8], pos: &mut usize) -> io::Result<bool> {
    while *pos < out.len() {
        match stream.write(&out[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and drops input; `Ok(true)` once the peer has closed.
pub(super) fn discard(stream: &mut Stream) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
