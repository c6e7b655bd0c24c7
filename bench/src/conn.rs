//! One client connection: its socket, phase, buffers and per-message
//! bookkeeping, and the errors a connection can end with.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use super::frame::{self, FrameError, ResponseError, OP_CLOSE};
use super::stream::Stream;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// `wss://`: TLS handshake in progress.
    TlsHandshake,
    /// Upgrade request sent, waiting for the response.
    Upgrading,
    /// WebSocket open.
    Open,
    /// Close frame sent, waiting for the server's close and EOF.
    Closing,
}

/// Error categories, as counted and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect failed or timed out.
    Connect,
    /// The opening handshake failed.
    Handshake,
    /// The server broke the framing rules or sent something unexpected.
    Protocol,
    /// An echoed or broadcast payload differed from what was sent.
    Mismatch,
    /// The server closed (close frame, EOF or reset) before the client did.
    Closed,
    /// An answer did not arrive in time (lost messages count one each).
    Timeout,
    /// Broadcast messages missing or out of order at a receiver.
    Sequence,
}

impl ErrorKind {
    /// All kinds, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::Protocol,
        ErrorKind::Mismatch,
        ErrorKind::Closed,
        ErrorKind::Timeout,
        ErrorKind::Sequence,
    ];

    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Sequence => "sequence",
        }
    }
}

/// Why a connection failed.
#[derive(Debug)]
pub enum ConnError {
    /// Connect failed.
    Connect(io::Error),
    /// Connect, upgrade or first answer took too long.
    SetupTimeout(Phase),
    /// The TLS handshake failed (certificate refused, protocol error).
    Tls(String),
    /// Bad handshake response.
    Handshake(ResponseError),
    /// EOF or reset before the upgrade completed.
    HandshakeEof,
    /// Framing violation.
    Frame(FrameError),
    /// A frame that makes no sense at this point.
    Unexpected(&'static str),
    /// Wrong payload: message `seq`, first differing byte `at`.
    Mismatch {
        /// Sequence number of the expected message.
        seq: u64,
        /// First differing byte (or the shorter length).
        at: usize,
    },
    /// Text received where binary was sent or vice versa.
    WrongOpcode(u8),
    /// The server sent a close frame; holds its status code if any.
    ServerClose(Option<u16>),
    /// EOF while open.
    Eof,
    /// Any other socket error.
    Io(io::Error),
    /// `lost` messages were not answered in time.
    Timeout {
        /// Messages without an answer.
        lost: u64,
    },
    /// No close frame from the server in time after ours.
    CloseTimeout,
}

impl ConnError {
    /// The reporting category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnError::Connect(_) | ConnError::SetupTimeout(Phase::Connecting) => {
                ErrorKind::Connect
            }
            ConnError::SetupTimeout(_)
            | ConnError::Tls(_)
            | ConnError::Handshake(_)
            | ConnError::HandshakeEof => ErrorKind::Handshake,
            ConnError::Frame(_) | ConnError::Unexpected(_) | ConnError::WrongOpcode(_) => {
                ErrorKind::Protocol
            }
            ConnError::Mismatch { .. } => ErrorKind::Mismatch,
            ConnError::ServerClose(_) | ConnError::Eof | ConnError::Io(_) => ErrorKind::Closed,
            ConnError::Timeout { .. } | ConnError::CloseTimeout => ErrorKind::Timeout,
        }
    }

    /// How many errors this counts for (lost messages count one each).
    pub fn weight(&self) -> u64 {
        match self {
            ConnError::Timeout { lost } => (*lost).max(1),
            _ => 1,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "connect failed: {e}"),
            ConnError::SetupTimeout(p) => write!(f, "timed out while {p:?}"),
            ConnError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnError::Handshake(e) => write!(f, "handshake failed: {e}"),
            ConnError::HandshakeEof => write!(f, "connection closed during the handshake"),
            ConnError::Frame(e) => write!(f, "protocol error: {e}"),
            ConnError::Unexpected(what) => write!(f, "protocol error: {what}"),
            ConnError::Mismatch { seq, at } => {
                write!(f, "payload of message {seq} differs at byte {at}")
            }
            ConnError::WrongOpcode(op) => write!(f, "message with unexpected opcode {op:#x}"),
            ConnError::ServerClose(Some(code)) => write!(f, "server closed with code {code}"),
            ConnError::ServerClose(None) => write!(f, "server closed without a code"),
            ConnError::Eof => write!(f, "server closed the connection (EOF)"),
            ConnError::Io(e) => write!(f, "socket error: {e}"),
            ConnError::Timeout { lost } => write!(f, "{lost} message(s) not answered in time"),
            ConnError::CloseTimeout => write!(f, "no close frame from the server in time"),
        }
    }
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// Global connection index (also identifies its payloads).
    pub id: u32,
    /// The socket, with TLS for `wss://`.
    pub stream: Stream,
    /// Current phase.
    pub phase: Phase,
    /// Bytes queued for writing.
    wbuf: Vec<u8>,
    /// How much of `wbuf` is already written.
    wpos: usize,
    /// Bytes read and not yet parsed.
    pub rbuf: Vec<u8>,
    /// A fragmented message being reassembled: opcode and data so far.
    pub frag: Option<(u8, Vec<u8>)>,
    /// The (fixed) masking key.
    pub mask: [u8; 4],
    /// When the current wait gives up (setup, draining, closing).
    pub deadline: Option<Instant>,
    /// Next message sequence number to send.
    pub send_seq: u64,
    /// Next message sequence number expected.
    pub recv_seq: u64,
    /// Send times of the messages in flight, oldest first.
    pub sent_at: VecDeque<Instant>,
    /// Messages completed (echoes verified, broadcasts received,
    /// handshake cycles done).
    pub completed: u64,
    /// When the current connect started.
    pub started: Instant,
    /// The server's close frame arrived.
    pub got_close: bool,
    /// Counted as ready for the start barrier.
    pub ready: bool,
}

impl Conn {
    /// A connection whose connect has just been started.
    pub fn new(id: u32, stream: Stream, now: Instant) -> Self {
        let [a, b, c, d] = id.wrapping_mul(0x9E37_79B9).to_le_bytes();
        Conn {
            id,
            stream,
            phase: Phase::Connecting,
            wbuf: Vec::new(),
            wpos: 0,
            rbuf: Vec::new(),
            frag: None,
            mask: [a | 1, b, c, d],
            deadline: None,
            send_seq: 0,
            recv_seq: 0,
            sent_at: VecDeque::new(),
            completed: 0,
            started: now,
            got_close: false,
            ready: false,
        }
    }

    /// Queues raw bytes.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Queues one frame of `len` bytes written by `fill`.
    pub fn queue_frame(&mut self, opcode: u8, len: usize, fill: impl FnOnce(&mut [u8])) {
        frame::encode_frame(&mut self.wbuf, opcode, self.mask, len, fill);
    }

    /// Queues a close frame with status 1000 and enters [`Phase::Closing`].
    pub fn start_close(&mut self, deadline: Instant) {
        self.queue_close(1000);
        self.phase = Phase::Closing;
        self.deadline = Some(deadline);
    }

    /// Queues a close frame with status `code`.
    fn queue_close(&mut self, code: u16) {
        self.queue_frame(OP_CLOSE, 2, |b| b.copy_from_slice(&code.to_be_bytes()));
    }

    /// Before dropping a failed open connection, tells the server why
    /// (best effort, without waiting for its answer).
    pub fn abort(&mut self, error: &ConnError) {
        if self.phase != Phase::Open {
            return;
        }
        let code = match error.kind() {
            ErrorKind::Protocol => 1002,
            _ => 1008,
        };
        self.queue_close(code);
        // The connection is dropped whatever happens here.
        let _ = self.flush();
    }

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }
}
