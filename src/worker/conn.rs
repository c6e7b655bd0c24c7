//! One client connection's life cycle, as an explicit state machine:
//!
//! ```text
//! Upgrading (PROXY ─► TLS ─► Request ─► Response) ─┬─► Open ─► (closed, removed)
//!                                                  └─► Linger ─► (removed)
//! Open ─(protocol error)─► Linger ─► (removed)
//! Open ─(close handshake over, output still queued)─► Linger ─► (removed)
//! ```
//!
//! `Upgrading` is `upgrade.rs`, `Open` is a `session::Session`; `Linger`
//! discards input after we have said our last word so that closing the
//! socket does not reset it before the peer has read that word. The
//! connection's deadlines, in every state, are computed by one
//! [`Deadlines`] value.
//!
//! The connection does its own work (a step of its upgrade, flushing,
//! closing, lingering, what its deadline finds due) and returns an
//! [`Outcome`] to the loop, which only keeps it, drives it again after
//! the event batch, or removes it.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use super::children::Program;
use super::counters::Counters;
use super::session::{Flush, Sent, Session};
use super::stream::Stream;
use super::upgrade::{self, Step, Upgrading};
use crate::config::ServerConfig;
use crate::message::{CloseCode, Message};

/// How long we wait for a close reply, or linger after a refusal.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where a connection is in its life; see the module documentation.
pub(super) enum State {
    /// TLS handshake, HTTP request, HTTP response.
    Upgrading(Box<Handshake>),
    /// A WebSocket.
    Open(Box<Session>),
    /// Discarding input until EOF or the linger deadline.
    Linger(Box<Linger>),
}

/// A connection on its way to the upgrade, and whom it comes from.
pub(super) struct Handshake {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Where the upgrade is.
    pub phase: Upgrading,
}

/// One connection of a worker: kept small, since the worker's table holds
/// one per connection (the states are boxed; an idle open connection is
/// this plus its `Session`).
pub(super) struct Conn {
    /// Distinguishes this connection from a later one in the same slot.
    pub serial: u32,
    /// When it was accepted; bounds the handshake.
    pub accepted: Instant,
    /// The deadline currently in the worker's timer heap for it, if any.
    pub scheduled: Option<Instant>,
    /// Where it is in its life.
    pub state: State,
    /// The program of an `exec` route, once the WebSocket is open.
    pub exec: Option<Box<Program>>,
}

/// What the loop does with a connection after it did some work. Ordered
/// from the mildest: of two outcomes, the loop acts on the later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Outcome {
    /// Nothing: it waits for its next event or deadline.
    Keep,
    /// Drive it again after this event batch: input may be waiting and
    /// its readiness edge is spent (reading was paused, or its program
    /// took its stdin).
    Resume,
    /// Remove it (its socket failed, it is done, or it must be dropped).
    Remove,
}

impl Outcome {
    /// Both outcomes at once: the more drastic one.
    pub fn and(self, other: Outcome) -> Outcome {
        self.max(other)
    }
}

impl From<Flush> for Outcome {
    fn from(flush: Flush) -> Outcome {
        match flush {
            Flush::Done { resume: true } => Outcome::Resume,
            Flush::Done { resume: false } | Flush::Blocked => Outcome::Keep,
            Flush::Broken => Outcome::Remove,
        }
    }
}

/// How an open connection ends.
pub(super) enum Ending {
    /// The close handshake is over, or the peer is gone. A connection
    /// whose last frames the socket has not taken yet (a burst of echoes
    /// and the close reply to a peer that does not read while it sends)
    /// lingers until they are sent, the peer is gone or the linger time
    /// passes; the others are done at once.
    Closed,
    /// A protocol error: the peer is told why (this code, this reason),
    /// then the connection lingers until the peer closes.
    Failed(CloseCode, String),
}

/// What one step of the upgrade came to.
pub(super) enum Upgraded {
    /// Still upgrading, or lingering after a refusal; `true` if the next
    /// step may go on at once (the data it needs may be buffered).
    Step(Conn, bool),
    /// The WebSocket is open: the handler is to be told, and the
    /// connection driven on at once.
    Opened(Conn),
    /// The socket is closed already (which took it out of the poller):
    /// forget the connection.
    Dropped,
}

impl Conn {
    /// A freshly accepted connection from `peer`, starting its upgrade.
    pub fn new(serial: u32, peer: SocketAddr, phase: Upgrading, now: Instant) -> Conn {
        Conn {
            serial,
            accepted: now,
            scheduled: None,
            state: State::Upgrading(Box::new(Handshake { peer, phase })),
            exec: None,
        }
    }

    /// One step of the upgrade, which consumes the handshake state (a
    /// connection in another state comes back as it was).
    pub fn upgrade(mut self, ctx: &mut upgrade::Context<'_>, max_frame_size: usize) -> Upgraded {
        let Handshake { peer, phase } = match self.state {
            State::Upgrading(h) => *h,
            other => {
                self.state = other;
                return Upgraded::Step(self, false);
            }
        };
        let now = ctx.now;
        let handshake = |peer, phase| State::Upgrading(Box::new(Handshake { peer, phase }));
        let (state, again) = match phase.step(ctx) {
            Step::Wait(u) => (handshake(peer, u), false),
            Step::Again(u) => (handshake(peer, u), true),
            // The PROXY header named the client: it is the peer from now on.
            Step::Proxied(u, client) => (handshake(client, u), true),
            Step::Open(stream, up) => {
                let session = Session::new(stream, *up, max_frame_size, now);
                self.state = State::Open(Box::new(session));
                return Upgraded::Opened(self);
            }
            Step::Refused(stream) => (State::Linger(Linger::new(stream, peer, now)), true),
            Step::Drop => return Upgraded::Dropped,
        };
        self.state = state;
        Upgraded::Step(self, again)
    }

    /// Ends the open session (the loop has told its handler): it says
    /// its last words and lingers on the stream they leave, or, with
    /// nothing left to say, is done (`None`: the loop forgets it). A
    /// connection that is not open comes back as it was.
    pub fn end(mut self, ending: Ending, now: Instant) -> Option<Conn> {
        let session = match self.state {
            State::Open(session) => session,
            other => {
                self.state = other;
                return Some(self);
            }
        };
        let peer = session.info.peer;
        let stream = match ending {
            Ending::Closed if session.queued() == 0 => return None,
            Ending::Closed => session.into_stream(),
            Ending::Failed(code, reason) => session.fail(code, &reason),
        };
        self.state = State::Linger(Linger::new(stream, peer, now));
        Some(self)
    }

    /// Writes queued output; reading pauses while the socket is full.
    pub fn flush(&mut self) -> Outcome {
        self.session_mut()
            .map_or(Outcome::Keep, |s| s.flush().into())
    }

    /// Queues a message to an open connection (flushed later); counts it
    /// in `stats`. Removed if its backlog would pass the bound (see
    /// `Session::send`) or its socket failed.
    pub fn send(&mut self, message: Message, max_send_buffer: usize, stats: Counters) -> Outcome {
        let Some(session) = self.session_mut() else {
            return Outcome::Keep;
        };
        let len = message.len();
        match session.send(message, max_send_buffer) {
            Sent::Drop => Outcome::Remove,
            // STATS: messages and bytes out, and the compression if any
            Sent::Queued { compressed } => {
                stats.sent(len, compressed);
                Outcome::Keep
            }
        }
    }

    /// Starts the close handshake of an open connection (see
    /// `Session::close`).
    pub fn close(&mut self, code: CloseCode, reason: String, now: Instant) -> Outcome {
        self.session_mut()
            .map_or(Outcome::Keep, |s| s.close(code, reason, now).into())
    }

    /// The worker is going away: an open connection closes with 1001, one
    /// still upgrading is dropped, a lingering one lingers on.
    pub fn close_for_shutdown(&mut self, now: Instant) -> Outcome {
        match &mut self.state {
            State::Open(session) => session.close_for_shutdown(now).into(),
            State::Upgrading(_) => Outcome::Remove,
            State::Linger(_) => Outcome::Keep,
        }
    }

    /// Lingers on: removed once the peer has closed and our last words
    /// are sent (or the socket failed).
    pub fn step_linger(&mut self) -> Outcome {
        match &mut self.state {
            State::Linger(linger) => match linger.step() {
                true => Outcome::Remove,
                false => Outcome::Keep,
            },
            _ => Outcome::Keep,
        }
    }

    /// Whether reading the client is paused for its program (`exec`
    /// routes): the program's stdin has too much waiting.
    pub fn input_paused(&self) -> bool {
        self.exec.as_ref().is_some_and(|p| p.input_paused)
    }

    /// After a batch of the client's messages: whether reading it is
    /// paused for its program (see `Program::input_full`).
    pub fn input_full(&mut self) -> bool {
        self.exec.as_mut().is_some_and(|p| p.input_full())
    }

    /// Its timer entry for `at` fired: does what is due (a drop, an idle
    /// close, a ping). `None` if the entry is stale: for an earlier
    /// connection in the slot (`serial`), or a deadline since replaced.
    pub fn expire(
        &mut self,
        deadlines: &Deadlines,
        serial: u32,
        at: Instant,
        now: Instant,
    ) -> Option<Outcome> {
        if self.serial != serial || self.scheduled != Some(at) {
            return None;
        }
        self.scheduled = None;
        Some(match deadlines.due(self, now) {
            Due::Nothing => Outcome::Keep,
            Due::Drop(why) => {
                debug!("dropping connection from {}: {why}", self.peer());
                Outcome::Remove
            }
            Due::Close => {
                debug!("connection from {} idle; closing it", self.peer());
                self.close(CloseCode::AWAY, "idle timeout".into(), now)
            }
            Due::Ping => self
                .session_mut()
                .map_or(Outcome::Keep, |s| s.ping().into()),
        })
    }

    /// The connection's next deadline, if it must go into the timer heap:
    /// only when it is earlier than the one there, so the heap holds
    /// about one entry per connection.
    #[inline]
    pub fn reschedule(&mut self, deadlines: &Deadlines) -> Option<Instant> {
        let at = deadlines.next(self)?;
        if self.scheduled.is_some_and(|s| s <= at) {
            return None;
        }
        self.scheduled = Some(at);
        Some(at)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        match &self.state {
            State::Upgrading(h) => h.peer,
            State::Open(s) => s.info.peer,
            State::Linger(l) => l.peer,
        }
    }

    /// A readiness event (or a resume) arrived: see `Stream::arm`.
    pub fn arm(&mut self, short_read_ends: bool) {
        match &mut self.state {
            State::Upgrading(h) => h.phase.arm(short_read_ends),
            State::Open(s) => s.stream_mut().arm(short_read_ends),
            State::Linger(l) => l.stream.arm(short_read_ends),
        }
    }

    /// The session, if the connection is open.
    pub fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Open(s) => Some(s),
            _ => None,
        }
    }

    /// The session, if the connection is open.
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Open(s) => Some(s),
            _ => None,
        }
    }
}

/// A connection that has said its last word: the write side is shut
/// (once what is queued is sent) and input is discarded until the peer
/// closes or `until` passes.
pub(super) struct Linger {
    stream: Stream,
    until: Instant,
    peer: SocketAddr,
}

impl Linger {
    /// Starts lingering on `stream`.
    pub fn new(mut stream: Stream, peer: SocketAddr, now: Instant) -> Box<Linger> {
        stream.close_write();
        Box::new(Linger {
            stream,
            until: now + CLOSE_GRACE,
            peer,
        })
    }

    /// Sends what is still queued, discards input; true once the peer has
    /// closed and our last words are sent (or the socket failed): the
    /// connection is done.
    pub fn step(&mut self) -> bool {
        // Our last words may still be queued behind a full socket; a peer
        // that only shut down its sending half still reads them.
        let said = self.stream.close_write();
        match discard(&mut self.stream) {
            Ok(peer_closed) => peer_closed && said,
            Err(_) => true,
        }
    }
}

/// Reads and drops input; `Ok(true)` once the peer has closed.
fn discard(stream: &mut Stream) -> io::Result<bool> {
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

/// What a connection's deadline found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Nothing yet (an early timer entry).
    Nothing,
    /// Drop the connection without a word, for this reason.
    Drop(&'static str),
    /// Idle too long: close with 1001.
    Close,
    /// Quiet for `ping_interval`: ping.
    Ping,
}

/// The time limits of a connection, from the configuration: the one place
/// that knows which deadline applies in which state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    handshake: Duration,
    ping: Option<Duration>,
    /// How long an open connection may be quiet before it is closed:
    /// `idle_timeout`, or without one, two pings' worth of time (a peer
    /// that does not answer them).
    limit: Option<Duration>,
    /// How long after its last frame an open connection with no ping out
    /// next needs attention: the earlier of `limit` and `ping`.
    quiet: Option<Duration>,
}

impl Deadlines {
    /// The limits of `server`.
    pub fn new(server: &ServerConfig) -> Deadlines {
        let ping = server.ping_interval;
        let limit = server.idle_timeout.or(ping.map(|p| p * 2));
        Deadlines {
            handshake: server.handshake_timeout,
            ping,
            limit,
            quiet: [limit, ping].into_iter().flatten().min(),
        }
    }

    /// The connection's deadlines with what each brings, most severe
    /// first.
    fn plan(&self, conn: &Conn) -> [(Option<Instant>, Due); 2] {
        match &conn.state {
            State::Upgrading(_) => [
                (
                    Some(conn.accepted + self.handshake),
                    Due::Drop("handshake_timeout passed"),
                ),
                (None, Due::Nothing),
            ],
            State::Linger(l) => [
                (Some(l.until), Due::Drop("linger time passed")),
                (None, Due::Nothing),
            ],
            State::Open(s) => match s.closing_since {
                Some(t) => [
                    (Some(t + CLOSE_GRACE), Due::Drop("no close reply in time")),
                    (None, Due::Nothing),
                ],
                None => {
                    let ping = self.ping.filter(|_| !s.ping_sent);
                    [
                        (self.limit.map(|l| s.last_rx + l), Due::Close),
                        (ping.map(|p| s.last_rx + p), Due::Ping),
                    ]
                }
            },
        }
    }

    /// When the connection next needs attention, if ever.
    #[inline]
    fn next(&self, conn: &Conn) -> Option<Instant> {
        let next = match &conn.state {
            // Asked after every drive of an open connection: the earliest
            // of its plan in one addition.
            State::Open(s) if s.closing_since.is_none() => {
                let quiet = if s.ping_sent { self.limit } else { self.quiet };
                quiet.map(|d| s.last_rx + d)
            }
            _ => self.earliest(conn),
        };
        debug_assert_eq!(next, self.earliest(conn));
        next
    }

    /// The earliest deadline of the connection's plan (out of line: the
    /// common case is `next`'s one addition).
    #[inline(never)]
    fn earliest(&self, conn: &Conn) -> Option<Instant> {
        self.plan(conn).iter().filter_map(|(at, _)| *at).min()
    }

    /// What is due at `now`.
    fn due(&self, conn: &Conn, now: Instant) -> Due {
        self.plan(conn)
            .into_iter()
            .find(|(at, _)| at.is_some_and(|t| now >= t))
            .map_or(Due::Nothing, |(_, due)| due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::socket::Socket;
    use crate::worker::stream::Transport;
    use nix::sys::socket::{setsockopt, sockopt};
    use std::io::Write as _;
    use std::net::{Shutdown, TcpListener, TcpStream};

    #[test]
    fn a_lingering_connection_sends_its_last_words_to_a_peer_that_only_stopped_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // A small send buffer, so that most of our last words stay queued.
        setsockopt(&server, sockopt::SndBuf, &4096).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = Stream::new(Transport::Plain(Socket::new(
            mio::net::TcpStream::from_std(server),
        )));
        let words: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        stream.write_all(&words).unwrap();
        assert!(stream.queued() > 0, "the socket took everything at once");
        // The peer stops sending (its EOF arrives at once on loopback) but
        // still reads.
        client.shutdown(Shutdown::Write).unwrap();
        let mut linger = Linger::new(stream, peer, Instant::now());
        assert!(!linger.step(), "done with our last words still queued");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).map(|_| got)
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !linger.step() {
            assert!(Instant::now() < deadline, "the last words were never sent");
            std::thread::yield_now();
        }
        assert!(
            reader.join().unwrap().unwrap() == words,
            "not all our words arrived"
        );
    }
}
