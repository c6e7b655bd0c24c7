//! One connection's TCP socket as the worker reads it: without the
//! read that would only say `WouldBlock`, and, under TLS, with one
//! `recv` per readiness event instead of one per piece the TLS session
//! asks for.
//!
//! The worker registers sockets edge-triggered, so after a read that
//! returned less than it asked for (the receive queue is empty), the next
//! byte to arrive raises a new event. Until that event ([`Socket::arm`]),
//! reads say `WouldBlock` without asking the kernel. Tokio does the same
//! ("clear readiness on a short read").
//!
//! Rustls reads TLS bytes 4 KiB at a time (a 16 KiB record in four or
//! five reads). With read-ahead ([`ReadAhead`]) the socket takes what the
//! kernel has in one `recv` into a buffer and serves those reads from it;
//! the buffer goes back to a per-worker spare as soon as it is consumed,
//! so an idle connection holds none.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;
use nix::sys::socket::{recv, send, sendmsg, MsgFlags, SockaddrStorage};

/// Read-ahead buffer size: a whole TLS record (16 KiB of plaintext plus
/// the largest overhead TLS 1.2 allows) fits.
const READ_AHEAD: usize = 16 * 1024 + 2048;
const _: () = assert!(READ_AHEAD <= u16::MAX as usize, "offsets are u16");

/// Vectored writes up to this size are gathered on the stack and sent
/// with one `send` (see `Socket::write_vectored`).
const SMALL_WRITE: usize = 256;

/// A read-ahead buffer (a thin pointer, to keep every connection small).
type AheadBuf = Box<[u8; READ_AHEAD]>;

thread_local! {
    /// One spare read-ahead buffer per worker (the loop is single-
    /// threaded): taking and giving it back costs no allocation.
    static SPARE: Cell<Option<AheadBuf>> = const { Cell::new(None) };
}

fn take_spare() -> AheadBuf {
    SPARE.with(Cell::take).unwrap_or_else(|| {
        vec![0u8; READ_AHEAD]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the Vec has READ_AHEAD bytes"))
    })
}

fn give_spare(buf: AheadBuf) {
    SPARE.with(|s| s.set(Some(buf)));
}

/// A connection's TCP socket, read straight into the caller's buffers
/// (see the module comment). Its reads and writes go to the kernel
/// through `nix`: the same `recv`, `send` (without SIGPIPE, as std
/// sends) and `writev` as `TcpStream`'s, without mio's and std's layers
/// around them (about 20 instructions per message of a small echo).
pub struct Socket {
    tcp: TcpStream,
    /// Set by `arm(true)`: a short read empties the receive queue.
    short_read_ends: bool,
    /// A short read happened since the last `arm`: reads say WouldBlock.
    drained: bool,
}

impl Socket {
    /// Wraps a registered (or soon registered) non-blocking socket.
    pub fn new(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            short_read_ends: false,
            drained: false,
        }
    }

    /// Called for each readiness event, and once right after the socket
    /// is registered: reads go to the kernel again. `short_read_ends`
    /// must be false when the event reported EOF or an error (a short
    /// read then does not mean a new event will follow), when the socket
    /// is not registered yet, or when the event's edge may have been
    /// spent earlier (a read resumed after a pause).
    pub fn arm(&mut self, short_read_ends: bool) {
        self.short_read_ends = short_read_ends;
        self.drained = false;
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// A short read emptied the receive queue since the last `arm`: the
    /// next read would say WouldBlock without asking the kernel.
    pub fn drained(&self) -> bool {
        self.drained
    }
}

impl Read for Socket {
    /// One `recv`, noting whether it emptied the queue.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = recv(self.tcp.as_raw_fd(), buf, MsgFlags::empty())?;
        if self.short_read_ends && n > 0 && n < buf.len() {
            self.drained = true;
        }
        Ok(n)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(send(self.tcp.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL)?)
    }

    /// A small write (a frame's header and a short payload) is copied
    /// on the stack and goes out with `send`, as uWebSockets' cork buffer
    /// and `sendto` do; a larger one with `sendmsg`. Not `writev`: it
    /// reaches the socket through the file layer's checks and
    /// notifications, which cost about 3 % of a 64 B echo's CPU in a
    /// profile (`sendmsg` about as much in its header copying, `send`
    /// a fifth of it).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= SMALL_WRITE {
            let mut small = [0u8; SMALL_WRITE];
            let mut n = 0;
            for b in bufs {
                small[n..n + b.len()].copy_from_slice(b);
                n += b.len();
            }
            return self.write(&small[..n]);
        }
        let fd = self.tcp.as_raw_fd();
        Ok(sendmsg::<SockaddrStorage>(
            fd,
            bufs,
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

/// A [`Socket`] read through a read-ahead buffer, for TLS (it lives in
/// the boxed TLS stream, so plain connections do not carry its fields).
pub struct ReadAhead {
    socket: Socket,
    /// Bytes read ahead and not handed out yet: `ahead[pos..end]`.
    ahead: Option<AheadBuf>,
    pos: u16,
    end: u16,
}

impl ReadAhead {
    /// Wraps a socket.
    pub fn new(tcp: TcpStream) -> ReadAhead {
        ReadAhead {
            socket: Socket::new(tcp),
            ahead: None,
            pos: 0,
            end: 0,
        }
    }

    /// See [`Socket::arm`].
    pub fn arm(&mut self, short_read_ends: bool) {
        self.socket.arm(short_read_ends);
    }

    /// The next read would say WouldBlock without asking the kernel:
    /// nothing is read ahead, and a short read emptied the receive queue
    /// since the last `arm`.
    pub fn drained(&self) -> bool {
        self.ahead.is_none() && self.socket.drained()
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        self.socket.tcp()
    }

    /// Heap bytes held for input that was read ahead (0 when none waits).
    #[cfg(test)]
    pub fn ahead_capacity(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.len())
    }

    /// Hands out read-ahead bytes; the buffer goes back to the spare once
    /// empty. `None` if nothing was read ahead.
    fn take_ahead(&mut self, buf: &mut [u8]) -> Option<usize> {
        let ahead = self.ahead.as_ref()?;
        let (pos, end) = (usize::from(self.pos), usize::from(self.end));
        let n = buf.len().min(end - pos);
        buf[..n].copy_from_slice(&ahead[pos..pos + n]);
        // pos + n <= end, which came from a u16.
        self.pos += n as u16;
        if self.pos == self.end {
            if let Some(done) = self.ahead.take() {
                give_spare(done);
            }
        }
        Some(n)
    }

    /// Reads what the kernel has into a read-ahead buffer, then serves
    /// `buf` from it.
    fn fill_ahead(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut spare = take_spare();
        match self.socket.read(&mut spare[..]) {
            Ok(0) => {
                give_spare(spare);
                Ok(0)
            }
            Ok(end) => {
                self.ahead = Some(spare);
                self.pos = 0;
                // At most READ_AHEAD, which fits.
                self.end = end as u16;
                Ok(self.take_ahead(buf).unwrap_or(0))
            }
            Err(e) => {
                give_spare(spare);
                Err(e)
            }
        }
    }
}

impl Read for ReadAhead {
    /// Serves `buf` from what was read ahead, or from the socket.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.drained() {
            // Before borrowing the spare buffer for a recv that would not
            // happen (see `Tls::settle`).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if let Some(n) = self.take_ahead(buf) {
            return Ok(n);
        }
        if buf.len() < READ_AHEAD {
            self.fill_ahead(buf)
        } else {
            self.socket.read(buf)
        }
    }
}

impl Write for ReadAhead {
    /// The session's records, straight to the socket.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.write(buf)
    }

    /// The records rustls holds, in one `send` (see
    /// [`Socket::write_vectored`]).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.socket.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

impl AsRawFd for ReadAhead {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            give_spare(ahead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream as StdTcp};

    /// A connected pair: our non-blocking socket and the peer's end.
    fn pair() -> (TcpStream, StdTcp) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = StdTcp::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).expect("nonblocking");
        (TcpStream::from_std(ours), peer)
    }

    /// Reads until `want` bytes arrived (the peer's bytes may take a
    /// moment on loopback), re-arming as an event would.
    fn read_exactly(s: &mut Socket, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < want && std::time::Instant::now() < deadline {
            match s.read(&mut buf[..(want - got.len()).min(64)]) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.arm(false);
                    std::thread::yield_now();
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    #[test]
    fn a_short_read_after_arming_ends_reading_until_the_next_event() {
        let (tcp, mut peer) = pair();
        let mut s = Socket::new(tcp);
        peer.write_all(b"hello").expect("write");
        s.arm(false);
        assert_eq!(read_exactly(&mut s, 5), b"hello");
        s.arm(true);
        peer.write_all(b"abc").expect("write");
        let got = read_exactly_armed(&mut s, 3);
        assert_eq!(got, b"abc");
        // The queue was emptied by a short read: more bytes arriving now
        // are left for the next event, without a recv.
        peer.write_all(b"more").expect("write");
        let mut probe = [0u8; 8];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.tcp().peek(&mut probe).map_or(0, |n| n) < 4 {
            assert!(std::time::Instant::now() < deadline, "bytes never arrived");
            std::thread::yield_now();
        }
        let mut buf = [0u8; 64];
        let err = s.read(&mut buf).expect_err("drained");
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "no recv after a short read"
        );
        s.arm(true);
        assert_eq!(read_exactly_armed(&mut s, 4), b"more");
    }

    /// Reads `want` bytes, waiting for them with `arm(true)` as the
    /// event loop would after an edge.
    fn read_exactly_armed(s: &mut Socket, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < want && std::time::Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.arm(true);
                    std::thread::yield_now();
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    #[test]
    fn read_ahead_serves_small_reads_from_one_recv_and_frees_its_buffer() {
        let (tcp, mut peer) = pair();
        let mut s = ReadAhead::new(tcp);
        let record: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        peer.write_all(&record).expect("write");
        s.arm(false);
        // Wait until the whole record is in the receive queue, so one
        // recv can take it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut probe = [0u8; 2000];
        while s.tcp().peek(&mut probe).map_or(0, |n| n) < record.len() {
            assert!(std::time::Instant::now() < deadline, "record never arrived");
            std::thread::yield_now();
        }
        // As a TLS session may read a record: a 5-byte header, then the body.
        let mut header = [0u8; 5];
        assert_eq!(s.read(&mut header).expect("header"), 5);
        // One recv took the whole record: the kernel's queue is empty.
        let err = s.tcp().peek(&mut probe).expect_err("queue empty");
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "one recv for the whole record"
        );
        let mut body = vec![0u8; 995];
        assert_eq!(s.read(&mut body).expect("body"), 995);
        assert_eq!(&header[..], &record[..5]);
        assert_eq!(body, &record[5..]);
        assert_eq!(s.ahead_capacity(), 0, "nothing held once consumed");
    }
}
