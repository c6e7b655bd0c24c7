//! The byte stream under a WebSocket: plain TCP or TLS, counting what the
//! kernel accepted so the worker knows how much output is still queued.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;

use super::socket::Socket;
use super::spare;
use super::tls::Tls;

/// Plain TCP or a TLS session over it.
pub enum Transport {
    /// `ws://`
    Plain(Socket),
    /// `wss://`
    Tls(Box<Tls>),
}

/// A transport plus the output the socket has not taken yet.
pub struct Stream {
    transport: Transport,
    /// Output the socket did not take yet, in order (HTTP responses and
    /// frames alike); freed once sent, so an idle connection holds none.
    out: Vec<u8>,
    /// The sending half is shut down (see `close_write`).
    write_shut: bool,
}

/// Data frames at least this large go to the socket straight from the
/// message's buffer (one writev with the header) when nothing is queued;
/// smaller ones are gathered in `out` and sent by `flush`.
const DIRECT: usize = 4096;

/// The largest output buffer the worker keeps as its spare; a larger one
/// (a connection that fell behind by megabytes) is freed once sent.
const KEEP_SPARE: usize = 64 * 1024;

thread_local! {
    /// One spare output buffer per worker (the loop is single-threaded):
    /// a connection whose frames the socket takes at once borrows it for
    /// the turn and hands it back when it is sent, so echoing a small
    /// message allocates nothing, and an idle connection still holds no
    /// output buffer.
    static SPARE_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty output buffer with room for at least `need` bytes: the
/// worker's spare when it has one.
fn take_out(need: usize) -> Vec<u8> {
    let mut out = spare::take(&SPARE_OUT);
    // One allocation for a burst of small frames, not a chain of
    // reallocations.
    out.reserve(need.max(4096));
    out
}

/// Returns a sent (or abandoned) output buffer to the worker's spare,
/// keeping the larger of the two up to [`KEEP_SPARE`].
fn give_out(out: Vec<u8>) {
    spare::give(&SPARE_OUT, out, KEEP_SPARE);
}

impl Stream {
    /// Wraps a transport.
    pub fn new(transport: Transport) -> Stream {
        Stream {
            transport,
            out: Vec::new(),
            write_shut: false,
        }
    }

    /// Queues one final, unmasked frame (opcode 1 text, 2 binary, or a
    /// control frame):
    /// a large payload goes to the socket from `payload` itself when
    /// nothing is waiting before it, so it is not copied unless the socket
    /// is full. `flush` sends what is queued.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.put_frame(opcode, false, payload, false)
    }

    /// [`send_frame`](Self::send_frame) for the last frame before the
    /// next flush (the read that carried what it answers emptied the
    /// socket): with nothing queued before it, it goes to a plain socket
    /// at once whatever its size, straight from `payload`, since gathering
    /// it saves a write only if another frame follows. (Under TLS it is
    /// queued in `out` instead: rustls then takes one slice, without
    /// gathering header and payload into a list first.)
    pub fn send_last_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let plain = matches!(self.transport, Transport::Plain(_));
        self.put_frame(opcode, false, payload, plain)
    }

    /// [`send_frame`](Self::send_frame) with RSV1 set when `rsv1`: a
    /// permessage-deflate message whose payload is compressed.
    pub fn send_frame_rsv1(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) -> io::Result<()> {
        self.put_frame(opcode, rsv1, payload, false)
    }

    /// Writes or queues one frame: at once from `payload` if nothing is
    /// queued before it and it is large or `at_once`; what the socket
    /// does not take (or all of it, otherwise) is copied into `out`.
    fn put_frame(
        &mut self,
        opcode: u8,
        rsv1: bool,
        payload: &[u8],
        at_once: bool,
    ) -> io::Result<()> {
        let mut head = [0u8; 10];
        head[0] = 0x80 | if rsv1 { 0x40 } else { 0 } | opcode;
        let h = match payload.len() {
            n if n < 126 => {
                head[1] = n as u8;
                2
            }
            n if n <= 0xffff => {
                head[1] = 126;
                head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                head[1] = 127;
                head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
                10
            }
        };
        let mut done = 0;
        if self.out.is_empty() && (at_once || payload.len() >= DIRECT) {
            let total = h + payload.len();
            while done < total {
                let r = if done < h {
                    let bufs = [io::IoSlice::new(&head[done..h]), io::IoSlice::new(payload)];
                    self.write_socket_vectored(&bufs)
                } else {
                    self.write_socket(&payload[done - h..])
                };
                match r {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let rest = h + payload.len() - done;
        if rest > 0 {
            self.reserve_out(rest);
        }
        if done < h {
            self.out.extend_from_slice(&head[done..h]);
            self.out.extend_from_slice(payload);
        } else if done - h < payload.len() {
            self.out.extend_from_slice(&payload[done - h..]);
        }
        Ok(())
    }

    /// Queues `bytes` (whole frames) behind what is waiting, without
    /// writing; `flush` sends them.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.reserve_out(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// Makes room for `n` more bytes of output, borrowing the worker's
    /// spare buffer if this connection holds none.
    fn reserve_out(&mut self, n: usize) {
        if self.out.capacity() == 0 {
            self.out = take_out(n);
        } else {
            self.out.reserve(n);
        }
    }

    /// Gives the (sent or abandoned) output buffer back to the worker,
    /// if this connection holds one (most flushes find none: small
    /// replies usually go out at once, see `send_last_frame`).
    #[inline]
    fn release_out(&mut self) {
        if self.out.capacity() > 0 {
            give_out(std::mem::take(&mut self.out));
        }
    }

    /// Writes what the socket takes of `out` (after the TLS records the
    /// session still holds); WouldBlock while any of either is left.
    fn flush_out(&mut self) -> io::Result<()> {
        if let Transport::Tls(s) = &mut self.transport {
            if s.unsent() > 0 {
                // Records of an earlier write go before anything queued.
                s.send_records()?;
            }
        }
        if self.out.is_empty() {
            // The common case: replies went out as they were made.
            self.release_out();
            return Ok(());
        }
        let mut done = 0;
        let mut result = Ok(());
        while done < self.out.len() {
            let out = std::mem::take(&mut self.out);
            let r = self.write_socket(&out[done..]);
            self.out = out;
            match r {
                Ok(0) => {
                    result = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if done == self.out.len() {
            self.release_out();
        } else {
            self.out.drain(..done);
        }
        if result.is_ok() && self.tls_unsent() > 0 {
            // The session took all of `out`, the socket not all its records.
            result = Err(io::ErrorKind::WouldBlock.into());
        }
        result
    }

    fn write_socket(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.transport {
            Transport::Plain(s) => s.write(buf)?,
            Transport::Tls(s) => s.write(&[io::IoSlice::new(buf)])?,
        };
        Ok(n)
    }

    fn write_socket_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = match &mut self.transport {
            Transport::Plain(s) => s.write_vectored(bufs)?,
            Transport::Tls(s) => s.write(bufs)?,
        };
        Ok(n)
    }

    /// Called for each readiness event: reads go to the socket again
    /// (see [`Socket::arm`]).
    pub fn arm(&mut self, short_read_ends: bool) {
        match &mut self.transport {
            Transport::Plain(s) => s.arm(short_read_ends),
            Transport::Tls(s) => s.arm(short_read_ends),
        }
    }

    /// Whether the next read is known to find nothing until the next
    /// readiness event: a plain socket whose queue a short read emptied;
    /// under TLS, the same with nothing read ahead and no decrypted bytes
    /// left in the session. Saves a read per event that would only find
    /// WouldBlock.
    pub fn read_would_block(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.drained(),
            Transport::Tls(s) => s.read_would_block(),
        }
    }

    /// Bytes queued for the socket and not sent yet.
    pub fn queued(&self) -> usize {
        self.out.len() + self.tls_unsent()
    }

    /// Plaintext whose TLS records are not sent yet (see `Tls::write`).
    fn tls_unsent(&self) -> usize {
        match &self.transport {
            Transport::Tls(s) => s.unsent(),
            Transport::Plain(_) => 0,
        }
    }

    /// Heap bytes held for output (0 once everything is sent).
    #[cfg(test)]
    pub fn out_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// The TCP socket under the transport.
    pub fn tcp(&self) -> &TcpStream {
        match &self.transport {
            Transport::Plain(s) => s.tcp(),
            Transport::Tls(s) => s.socket().tcp(),
        }
    }

    /// Sends what is still queued (under TLS, then close_notify) and then
    /// shuts down the sending half; true once that is done. Call again on
    /// later readiness events until it is: a close frame or error response
    /// queued behind a full socket is not thrown away, nor cut by the
    /// TCP shutdown.
    pub fn close_write(&mut self) -> bool {
        if self.write_shut {
            return true;
        }
        let sent = if !self.out.is_empty() || self.tls_unsent() > 0 {
            self.flush_out()
        } else {
            Ok(())
        };
        let said = match (sent, &mut self.transport) {
            (Ok(()), Transport::Tls(s)) => s.shutdown(),
            (sent, _) => sent,
        };
        match said {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => self.release_out(), // the peer is gone anyway
            Ok(()) => {}
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
        self.write_shut = true;
        true
    }
}

impl Drop for Stream {
    /// A connection dropped with output still queued lends its buffer
    /// back (when it is small enough to keep). A TLS session not shut
    /// down yet with nothing left in `out` (the common end: the closing
    /// handshake is over) says close_notify first, if the socket takes it
    /// now, so that the client can tell the end from a cut; one dropped
    /// with output thrown away does not claim a clean end.
    fn drop(&mut self) {
        if let Transport::Tls(s) = &mut self.transport {
            if !self.write_shut && self.out.is_empty() {
                let _ = s.shutdown();
            }
        }
        self.release_out();
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl Read for Stream {
    /// Reads from the socket (see [`Socket`] for the reads it saves).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    /// Takes everything, always: what the socket does not accept now is
    /// queued behind what is already waiting; `flush` reports
    /// `WouldBlock` while anything is queued.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        if self.out.is_empty() {
            done = match self.write_socket(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            };
        }
        if done < buf.len() {
            self.reserve_out(buf.len() - done);
            self.out.extend_from_slice(&buf[done..]);
        }
        Ok(buf.len())
    }

    /// Sends what is queued, TLS records the session holds included
    /// (see `flush_out`).
    fn flush(&mut self) -> io::Result<()> {
        self.flush_out()
    }
}

#[cfg(test)]
mod tests;
