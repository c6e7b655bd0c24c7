//! A harness for the frame-path fuzz target (`fuzz/fuzz_targets/frames.rs`,
//! built with the `fuzzing` feature): one real [`Session`] driven the way
//! the worker's loop drives it (read with a budget and resume, hand
//! messages to the built-in `echo` handler, carry out its sends, flush,
//! fail with the reader's close code and linger), so that the fuzzer
//! exercises the daemon's own read and write path, not a copy of it.
//!
//! The socket is one end of a `socketpair(AF_UNIX, SOCK_STREAM)`, handed
//! to the worker's [`Stream`] as the `TcpStream` it always holds (std's
//! safe `From<OwnedFd>`). The stream only reads, writes, `writev`s and
//! shuts down its socket, and those are the same system calls with the
//! same meaning (partial writes, `EAGAIN`, end of stream, half close) on
//! a Unix stream socket; the TCP-only calls (`TCP_NODELAY`, addresses)
//! belong to accepting, which the harness does not run. A socket pair
//! costs one system call where a loopback TCP connection cost a bind, a
//! connect, an accept and a TIME_WAIT, and no production code knows
//! about it (docs/fuzzing.md).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::sys::socket::{setsockopt, sockopt};

use super::conn::Linger;
use super::handlers::Handlers;
use super::session::{
    scratch, Batch, Flush, Read as SessionRead, Received, Sent, Session, READ_BUDGET,
};
use super::stream::{Stream, Transport};
use super::upgrade::Upgrade;
use crate::deflate::MessageError;
use crate::handler::{Action, ConnId, ConnInfo, Echo};
use crate::message::CloseCode;

/// How much the server's socket holds. Either way the client reads only
/// once the server's output has backed up (the socket is full, so the
/// session queues output and stops reading), when its own write would
/// block, and at the end: until then the server's output waits in the
/// socket, and the client's input still arrives in the planned pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// The kernel's default send buffer (`net.core.wmem_default`, about
    /// 208 KiB, each write charged with its buffer overhead of about
    /// 1 KiB): a few hundred of the server's writes fit before it blocks.
    Kernel,
    /// The smallest send buffer the kernel allows (4.5 KiB): the server's
    /// output backs up after a handful of writes, so its output queue,
    /// read pausing and resuming, partial writes and frames queued behind
    /// a full socket are exercised.
    Tight,
}

/// Where the connection under test is (as the worker's `conn::State`).
enum Phase {
    /// The WebSocket is open.
    Open(Box<Session>),
    /// Failed, or closed with output still queued: our last frames go
    /// out, input is discarded.
    Linger(Box<Linger>),
    /// Removed: the server's end is closed.
    Done,
}

/// Events `finish` runs at most while the connection settles; a
/// connection that keeps producing output or keeps its queue after this
/// many is a bug (a loop), not a slow input.
const SETTLE_EVENTS: usize = 100_000;

/// One connection under test and the client's end of its socket.
pub struct Harness {
    phase: Phase,
    client: UnixStream,
    /// The client shut down its sending half (`finish` with `eof`).
    client_shut: bool,
    /// The client read the end of the server's output.
    server_shut: bool,
    /// The route's handler: `Echo`, as route 0.
    handlers: Handlers,
    /// The worker's read buffer.
    scratch: Box<[u8]>,
    batch: Batch,
    /// The client's read buffer, allocated once per connection.
    inbox: Vec<u8>,
    output: Vec<u8>,
    failed_with: Option<u16>,
    max_send_buffer: usize,
}

impl Harness {
    /// A session with these limits whose first input is `leftover` (the
    /// bytes that followed the request head), on a route of the built-in
    /// `echo` (answered while reading) if `builtin_echo`, else through the
    /// `Echo` handler as a handler's route is.
    pub fn new(
        max_message_size: usize,
        max_frame_size: usize,
        leftover: &[u8],
        buffers: Buffers,
        builtin_echo: bool,
    ) -> io::Result<Harness> {
        let (server, client) = UnixStream::pair()?;
        if buffers == Buffers::Tight {
            // The kernel raises 1 to its minimum.
            setsockopt(&server, sockopt::SndBuf, &1).map_err(io::Error::from)?;
        }
        server.set_nonblocking(true)?;
        client.set_nonblocking(true)?;
        let server = TcpStream::from(OwnedFd::from(server));
        let stream = Stream::new(Transport::Plain(crate::worker::socket::Socket::new(
            mio::net::TcpStream::from_std(server),
        )));
        let up = Upgrade {
            info: info(),
            route: 0,
            leftover: leftover.to_vec(),
            max_message_size,
            counted: None,
            deflate: None,
            echo: builtin_echo,
        };
        let session = Session::new(stream, up, max_frame_size, Instant::now());
        Ok(Harness {
            phase: Phase::Open(Box::new(session)),
            client,
            client_shut: false,
            server_shut: false,
            handlers: Handlers::new(vec![Box::new(Echo)]),
            scratch: scratch(),
            batch: Batch::default(),
            inbox: vec![0; 16 * 1024],
            output: Vec::new(),
            failed_with: None,
            max_send_buffer: 16 << 20,
        })
    }

    /// The client sends `bytes`; the session handles what arrived. False
    /// once the connection is no longer open (closed, failed or dropped).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            match self.client.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The socket is full: read what came back (the server
                // may have stopped reading until we do) and let the
                // session take some input.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.collect();
                    if !self.event() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        let open = self.event();
        if matches!(&self.phase, Phase::Open(s) if s.queued() > 0) {
            // The server waits for us to read before it reads on.
            self.collect();
        }
        open
    }

    /// The client stops sending (and shuts down its sending half if
    /// `eof`) and reads until the server has nothing more to say.
    /// Returns everything the server sent, and the close code it failed
    /// the connection with, if it did.
    pub fn finish(mut self, eof: bool) -> (Vec<u8>, Option<u16>) {
        if eof {
            let _ = self.client.shutdown(Shutdown::Write);
            self.client_shut = true;
        }
        for _ in 0..SETTLE_EVENTS {
            let before = self.output.len();
            self.event();
            self.collect();
            let settled = match &self.phase {
                Phase::Open(s) => s.queued() == 0 && self.output.len() == before,
                Phase::Linger(_) => self.server_shut,
                Phase::Done => true,
            };
            if settled {
                return (self.output, self.failed_with);
            }
        }
        panic!("the connection did not settle after {SETTLE_EVENTS} events");
    }

    /// One readiness event of the server's socket and the turn's resumes,
    /// as the worker's loop runs them. True while the connection is open.
    fn event(&mut self) -> bool {
        // An event that reports the peer's EOF arms without the short-read
        // shortcut, as the worker's loop does.
        let mut short_read_ends = !self.client_shut;
        loop {
            let (phase, resume) = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Open(session) => self.read_open(session, short_read_ends),
                Phase::Linger(linger) => (step_linger(linger), false),
                Phase::Done => (Phase::Done, false),
            };
            self.phase = phase;
            if !resume {
                break;
            }
            // The worker's resume list: read again without an event.
            short_read_ends = false;
        }
        matches!(self.phase, Phase::Open(_))
    }

    /// The loop's `read_open`: reads and dispatches until the socket would
    /// block or the budget is spent, then flushes. Returns the next phase
    /// and whether the worker would resume the connection in this turn.
    fn read_open(&mut self, mut session: Box<Session>, short_read_ends: bool) -> (Phase, bool) {
        session.stream_mut().arm(short_read_ends);
        let mut budget = READ_BUDGET;
        let mut batch = std::mem::take(&mut self.batch);
        let resume = loop {
            let read = session.read(
                &mut self.scratch,
                &mut budget,
                Instant::now(),
                self.max_send_buffer,
                &mut batch,
            );
            for received in batch.received.drain(..) {
                if !self.dispatch(&mut session, received) {
                    self.remove(session);
                    return (Phase::Done, false);
                }
            }
            match read {
                SessionRead::More => {}
                SessionRead::Stop { resume } => break resume,
                SessionRead::Closed => return (self.closed(session), false),
                SessionRead::Failed(error) => return (self.fail(session, error), false),
            }
        };
        self.batch = batch;
        match session.flush() {
            Flush::Done { resume: paused } => (Phase::Open(session), resume || paused),
            Flush::Blocked => (Phase::Open(session), resume),
            Flush::Broken => {
                self.remove(session);
                (Phase::Done, false)
            }
        }
    }

    /// The loop's `dispatch` and the handler's actions; false if the
    /// connection must be dropped.
    fn dispatch(&mut self, session: &mut Session, received: Received) -> bool {
        self.handlers.dispatch(session, received);
        let mut keep = true;
        let mut actions = self.handlers.take_actions();
        for action in actions.drain(..) {
            match action {
                Action::Send(message) if keep => {
                    keep = matches!(
                        session.send(message, self.max_send_buffer),
                        Sent::Queued { .. }
                    );
                }
                // `echo` neither closes nor broadcasts.
                _ => {}
            }
        }
        self.handlers.restore_actions(actions);
        keep
    }

    /// The loop's `fail`: tell the handler, send the close frame with the
    /// reader's code, linger.
    fn fail(&mut self, session: Box<Session>, error: MessageError) -> Phase {
        let code = CloseCode::from(error.close_code());
        let reason = error.to_string();
        self.handlers.fail(&session, &reason.clone().into());
        self.failed_with = Some(code.as_u16());
        self.linger(session, |session| session.fail(code, &reason))
    }

    /// The loop's `closed`: linger while output is still queued, else remove.
    fn closed(&mut self, session: Box<Session>) -> Phase {
        if session.queued() > 0 {
            self.linger(session, |session| session.into_stream())
        } else {
            self.remove(session);
            Phase::Done
        }
    }

    /// The loop's `linger`: tell the handler, say the last words, linger.
    fn linger(
        &mut self,
        mut session: Box<Session>,
        last_words: impl FnOnce(Box<Session>) -> Stream,
    ) -> Phase {
        self.handlers.close(&mut session).for_each(drop);
        let peer = session.info.peer;
        let linger = Linger::new(last_words(session), peer, Instant::now());
        // The readiness edge may already be spent: look for EOF now.
        step_linger(linger)
    }

    /// The loop's `remove`: tell the handler; dropping the session closes
    /// the server's end.
    fn remove(&mut self, mut session: Box<Session>) {
        self.handlers.close(&mut session).for_each(drop);
    }

    /// The client reads what the server sent so far. A short read has
    /// emptied the socket (nothing writes to it meanwhile): no second
    /// read just to see `EAGAIN`.
    fn collect(&mut self) {
        loop {
            match self.client.read(&mut self.inbox) {
                Ok(0) => {
                    self.server_shut = true;
                    return;
                }
                Ok(n) => {
                    self.output.extend_from_slice(&self.inbox[..n]);
                    if n < self.inbox.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// `Conn::step_linger`: our last words go out, input is discarded;
/// done once the peer has closed.
fn step_linger(mut linger: Box<Linger>) -> Phase {
    if linger.step() {
        Phase::Done
    } else {
        Phase::Linger(linger)
    }
}

/// What the handler sees: a socket pair has no addresses.
fn info() -> ConnInfo {
    let request = crate::handler::InfoRequest {
        route: "/echo",
        path: "/echo",
        query: "",
        params: &[],
        headers: std::iter::empty(),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    ConnInfo::new(ConnId(1), peer, request, None, Default::default(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked text frame as a client sends it.
    fn text(payload: &[u8]) -> Vec<u8> {
        let key = [9, 8, 7, 6];
        let mut out = vec![0x81, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[test]
    fn tight_buffers_back_the_servers_output_up() {
        let mut h = Harness::new(1024, 1024, &[], Buffers::Tight, false).unwrap();
        let mut backed_up = false;
        for _ in 0..100 {
            assert!(h.feed(&text(b"twelve bytes")));
            backed_up |= matches!(&h.phase, Phase::Open(s) if s.queued() > 0);
        }
        assert!(backed_up, "the server's writes never blocked");
        let (output, failed) = h.finish(false);
        assert_eq!(failed, None);
        assert_eq!(output.len(), 100 * 14, "every echo arrives in the end");
    }

    #[test]
    fn echoes_and_the_close_reply_behind_a_full_socket_are_all_sent() {
        // A burst whose echoes do not fit in the socket, ended by a close
        // frame: what the socket has not taken when the close handshake
        // ends is sent while the connection lingers, not dropped.
        let mut h = Harness::new(1024, 1024, &[], Buffers::Tight, false).unwrap();
        let mut burst = Vec::new();
        for _ in 0..60 {
            burst.extend(text(&[b'x'; 100]));
        }
        burst.extend([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
        h.feed(&burst);
        let (output, failed) = h.finish(false);
        assert_eq!(failed, None);
        assert_eq!(output.len(), 60 * 102 + 4, "every echo and the close reply");
        assert_eq!(output[output.len() - 4..], [0x88, 2, 0x03, 0xe8]);
    }
}
