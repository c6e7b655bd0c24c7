//! One connection's TLS session (rustls) over its socket: the handshake,
//! reading plaintext, writing it as records, and the records rustls holds
//! until the socket takes them.
//!
//! The session is driven non-blocking: every call does what the socket
//! allows now and says `WouldBlock` for the rest, so the worker retries
//! at the next readiness event, as for a plain socket.

use std::io::{self, Read, Write};

use rustls::ServerConnection;

use super::socket::ReadAhead;
use crate::tls::Acceptor;

/// A TLS session and its socket.
pub struct Tls {
    session: ServerConnection,
    socket: ReadAhead,
    /// Decrypted bytes the session holds that were not read yet.
    plaintext: usize,
    /// Plaintext bytes written whose records the socket has not taken
    /// yet (0 whenever rustls holds no records): what `queued` counts.
    unsent: usize,
    /// close_notify is queued (see [`Tls::shutdown`]).
    closing: bool,
}

/// Why a handshake ended without a session.
#[derive(Debug)]
pub enum HandshakeError {
    /// The configuration could not make a session (out of memory, say).
    Setup(rustls::Error),
    /// The peer sent something that is not TLS, or TLS we do not accept.
    Tls(rustls::Error),
    /// The socket failed or closed before the handshake was done.
    Io(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Setup(e) => write!(f, "cannot start a TLS session: {e}"),
            HandshakeError::Tls(e) => write!(f, "{e}"),
            HandshakeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl Tls {
    /// A new server session over `socket`; the handshake is not started.
    pub fn new(acceptor: &Acceptor, socket: ReadAhead) -> Result<Tls, HandshakeError> {
        let session = ServerConnection::new(acceptor.clone()).map_err(HandshakeError::Setup)?;
        Ok(Tls {
            session,
            socket,
            plaintext: 0,
            unsent: 0,
            closing: false,
        })
    }

    /// Advances the handshake as far as the socket allows: `Ok(true)`
    /// once it is done and its last records are sent, `Ok(false)` to wait
    /// for the next readiness event.
    pub fn handshake(&mut self) -> Result<bool, HandshakeError> {
        loop {
            match self.send_records() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(HandshakeError::Io(e)),
            }
            if !self.session.is_handshaking() {
                return Ok(true);
            }
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(HandshakeError::Io(e)),
            }
            if let Err(e) = self.process() {
                return Err(HandshakeError::Tls(e));
            }
        }
    }

    /// Decrypts what `read_tls` took; on an error, the alert rustls made
    /// for it goes to the peer (if the socket takes it now).
    fn process(&mut self) -> Result<(), rustls::Error> {
        match self.session.process_new_packets() {
            Ok(state) => {
                self.plaintext = state.plaintext_bytes_to_read();
                Ok(())
            }
            Err(e) => {
                let _ = self.send_records();
                Err(e)
            }
        }
    }

    /// Sends the records the session holds: Ok once the socket took them
    /// all, else WouldBlock (or the socket's error) with the rest kept.
    pub fn send_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.unsent = 0;
        Ok(())
    }

    /// Writes `bufs` as records (one record up to 16 KiB, a frame's header
    /// and payload together) and sends them with what an earlier write
    /// left. Records an earlier write left unsent go first: WouldBlock
    /// while they do not. Rustls takes up to 64 KiB of records beyond
    /// what the socket took; more is WouldBlock.
    pub fn write(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.session.wants_write() {
            self.send_records()?;
        }
        let n = self.session.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.unsent += n;
        match self.send_records() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Plaintext bytes written whose records are not sent yet (at least
    /// 1 while the session holds any record, a close_notify say).
    pub fn unsent(&self) -> usize {
        if self.session.wants_write() {
            self.unsent.max(1)
        } else {
            0
        }
    }

    /// Whether the next read is known to find nothing until the next
    /// readiness event: the socket is drained and the session holds no
    /// decrypted bytes (rustls decrypts every whole record it has).
    pub fn read_would_block(&self) -> bool {
        self.socket.drained() && self.plaintext == 0
    }

    /// See [`ReadAhead::arm`].
    pub fn arm(&mut self, short_read_ends: bool) {
        self.socket.arm(short_read_ends);
    }

    /// Queues close_notify (once) and sends it with whatever records are
    /// still held: Ok once the socket took them all, WouldBlock while it
    /// does not (call again at the next readiness event; shutting the
    /// TCP write side before then would cut the peer's last records).
    pub fn shutdown(&mut self) -> io::Result<()> {
        if !self.closing {
            self.session.send_close_notify();
            self.closing = true;
        }
        self.send_records()
    }

    /// The socket under the session.
    pub fn socket(&self) -> &ReadAhead {
        &self.socket
    }
}

impl Read for Tls {
    /// Plaintext: what the session holds, else what the socket brings.
    /// Ok(0) at the end, whether or not the peer sent close_notify first
    /// (a WebSocket's own close handshake says whether it ended cleanly).
    ///
    /// After our close_notify ([`Tls::shutdown`]) the connection only
    /// waits for the peer's end, discarding what it reads (`Linger`):
    /// the bytes come from the socket as they are, not decrypted, since
    /// a bad record would make rustls answer with an alert after its
    /// close_notify (a `debug_assert` in rustls).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.closing {
            return self.socket.read(buf);
        }
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => {
                    self.plaintext = self.plaintext.saturating_sub(n);
                    self.settle();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.fill()? && self.plaintext == 0 {
                return Ok(0);
            }
        }
    }
}

impl Tls {
    /// Reads what the socket has into the session and decrypts it; true
    /// at the socket's end. Records the session made meanwhile (an alert,
    /// or app data an earlier write left) go out if the socket takes them:
    /// a failure there is the next write's to report, not this read's.
    fn fill(&mut self) -> io::Result<bool> {
        let eof = self.session.read_tls(&mut self.socket)? == 0;
        self.process()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if self.session.wants_write() {
            let _ = self.send_records();
        }
        Ok(eof)
    }

    /// After a read that took the last decrypted byte from a drained
    /// socket: one more `read_tls`, which says WouldBlock without a
    /// syscall, lets rustls shrink its receive buffer to 4 KiB when it is
    /// empty. Without it a connection that goes quiet after a 16 KiB
    /// record would keep about 17 KiB until its next message.
    fn settle(&mut self) {
        if self.plaintext == 0 && self.socket.drained() {
            let _ = self.session.read_tls(&mut self.socket);
        }
    }
}
