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

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::session::Session;
use super::stream::Stream;
use super::upgrade::Upgrading;
use crate::config::ServerConfig;

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
    pub exec: Option<Box<super::children::Program>>,
}

impl Conn {
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
pub(super) enum Due {
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
    idle: Option<Duration>,
    ping: Option<Duration>,
}

impl Deadlines {
    /// The limits of `server`.
    pub fn new(server: &ServerConfig) -> Deadlines {
        Deadlines {
            handshake: server.handshake_timeout,
            idle: server.idle_timeout,
            ping: server.ping_interval,
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
                    // Without an idle timeout, a peer that does not answer
                    // two pings' worth of time is closed.
                    let limit = self.idle.or(self.ping.map(|p| p * 2));
                    let ping = self.ping.filter(|_| !s.ping_sent);
                    [
                        (limit.map(|l| s.last_rx + l), Due::Close),
                        (ping.map(|p| s.last_rx + p), Due::Ping),
                    ]
                }
            },
        }
    }

    /// When the connection next needs attention, if ever.
    pub fn next(&self, conn: &Conn) -> Option<Instant> {
        self.plan(conn).iter().filter_map(|(at, _)| *at).min()
    }

    /// What is due at `now`.
    pub fn due(&self, conn: &Conn, now: Instant) -> Due {
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
