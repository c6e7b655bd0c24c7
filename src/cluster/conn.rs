//! One connection to Redis as the helper's loop uses it: opened and set up
//! (connect, TLS for `rediss://`, AUTH, SELECT, SUBSCRIBE) with ordinary
//! blocking calls and timeouts in a connector thread, off the message path,
//! then switched to non-blocking and driven by the loop with the `redis`
//! crate's command encoder and reply parser.
//!
//! The parser keeps partial replies between reads, so a reply split over
//! several reads (or a socket that would block mid-reply) is resumed where
//! it stopped; it also keeps whatever it read past the setup replies (a
//! message published just after SUBSCRIBE), which is why it travels with
//! the socket.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use native_tls::{HandshakeError, TlsConnector, TlsStream};
use redis::{ConnectionAddr, ConnectionInfo, RedisResult, Value};

use super::{next_backoff, Status, BACKOFF_START};

/// How long connecting, the TLS handshake and each setup reply may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Sends `PUBLISH` commands.
    Publish,
    /// Subscribed to the channel.
    Subscribe,
}

/// The socket under a Redis connection.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    /// Opens the socket (and TLS) to `addr`, with timeouts set.
    fn open(addr: &ConnectionAddr) -> io::Result<Stream> {
        let stream = match addr {
            ConnectionAddr::Tcp(host, port) => Stream::Tcp(tcp(host, *port)?),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                let tls = TlsConnector::builder()
                    .danger_accept_invalid_certs(*insecure)
                    .danger_accept_invalid_hostnames(*insecure)
                    .build()
                    .map_err(io::Error::other)?;
                match tls.connect(host, tcp(host, *port)?) {
                    Ok(s) => Stream::Tls(Box::new(s)),
                    Err(HandshakeError::Failure(e)) => return Err(io::Error::other(e)),
                    Err(HandshakeError::WouldBlock(_)) => {
                        return Err(io::ErrorKind::TimedOut.into())
                    }
                }
            }
            ConnectionAddr::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                Stream::Unix(s)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("unsupported Redis address {other:?}"),
                ))
            }
        };
        Ok(stream)
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Tls(s) => s.get_ref().set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }
}

/// A TCP connection to the first address of `host` that answers in time.
fn tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Read for Stream {
    /// Retries a read interrupted by a signal (the parser would take it
    /// for a broken connection).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let r = match self {
                Stream::Tcp(s) => s.read(buf),
                Stream::Tls(s) => s.read(buf),
                Stream::Unix(s) => s.read(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// A set-up, non-blocking connection to Redis.
pub(super) struct RedisConn {
    stream: Stream,
    parser: redis::Parser,
    /// A read since the last wake-up got less than it asked for: the
    /// socket had no more then (see [`ShortReads`]).
    drained: bool,
    /// Whether a short read means the socket is drained: not over TLS
    /// (a read returns one record, more may wait in the socket), nor
    /// once the poller reported the peer's close.
    trust_short: bool,
}

impl RedisConn {
    /// Connects and sets the connection up for `role` (AUTH, SELECT and,
    /// for the subscriber, SUBSCRIBE `channel`), blocking with timeouts;
    /// then makes it non-blocking.
    fn open(info: &ConnectionInfo, role: Role, channel: &str) -> RedisResult<RedisConn> {
        let mut stream = Stream::open(info.addr())?;
        let settings = info.redis_settings();
        let mut setup = Vec::new();
        let mut replies = 0;
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password).write_packed_command(&mut setup);
            replies += 1;
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .write_packed_command(&mut setup);
            replies += 1;
        }
        // Every connection waits for an answer from Redis before it
        // counts as up: a TCP connect alone can succeed on a Redis that
        // is dying (the kernel completes it from the listen backlog), and
        // "connected" would be logged for a connection that never worked.
        match role {
            Role::Subscribe => redis::cmd("SUBSCRIBE")
                .arg(channel)
                .write_packed_command(&mut setup),
            Role::Publish => redis::cmd("PING").write_packed_command(&mut setup),
        }
        replies += 1;
        stream.write_all(&setup)?;
        let mut parser = redis::Parser::new();
        for _ in 0..replies {
            parser.parse_value(&mut stream)?.extract_error()?;
        }
        stream.set_nonblocking()?;
        let trust_short = !matches!(stream, Stream::Tls(_));
        Ok(RedisConn {
            stream,
            parser,
            drained: false,
            trust_short,
        })
    }

    /// The next whole reply or message, `None` when the socket has no
    /// more for now. An error means the connection is unusable.
    pub fn next_value(&mut self) -> RedisResult<Option<Value>> {
        let mut reader = ShortReads {
            stream: &mut self.stream,
            drained: &mut self.drained,
            trust_short: self.trust_short,
        };
        match self.parser.parse_value(&mut reader) {
            Ok(v) => Ok(Some(v)),
            // The socket is non-blocking, so no read times out: a
            // "timeout" is the socket saying it has nothing more now.
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The poller reported the socket (readable, or `closed`): reads may
    /// find more.
    pub fn polled(&mut self, closed: bool) {
        self.drained = false;
        self.trust_short &= !closed;
    }

    /// Writes from `buf`; returns how much the socket took (0 when it
    /// would block).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(buf) {
                Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The socket, for the poller.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

/// The socket as the parser reads it: after a short read it says "would
/// block" without asking the kernel, which would only say the same (an
/// edge-triggered poller reports what arrives later). Saves one read per
/// wake-up.
struct ShortReads<'a> {
    stream: &'a mut Stream,
    drained: &'a mut bool,
    trust_short: bool,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.stream.read(buf)?;
        if self.trust_short && n > 0 && n < buf.len() {
            *self.drained = true;
        }
        Ok(n)
    }
}

/// Starts a thread that connects for `role`, retrying with back-off (100
/// ms doubling to 10 s), and hands the connection to the loop through
/// `done`, waking it with `waker`. Failures are reported to `status`,
/// which logs only changes.
pub(super) fn connect_in_background(
    info: ConnectionInfo,
    role: Role,
    channel: String,
    status: Arc<Status>,
    done: Sender<(Role, RedisConn)>,
    waker: Arc<mio::Waker>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("connect-{role:?}").to_lowercase())
        .spawn(move || {
            let mut delay = BACKOFF_START;
            loop {
                match RedisConn::open(&info, role, &channel) {
                    Ok(conn) => {
                        // The loop gone means the helper is exiting.
                        if done.send((role, conn)).is_ok() {
                            let _ = waker.wake();
                        }
                        return;
                    }
                    Err(e) => {
                        status.set(role, false, Some(&e));
                        debug!("cluster: {role:?} connection: {e}; retrying in {delay:?}");
                        std::thread::sleep(delay);
                        delay = next_backoff(delay);
                    }
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over one end of a socket pair, as the loop has it.
    fn pair() -> (RedisConn, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let conn = RedisConn {
            stream: Stream::Unix(ours),
            parser: redis::Parser::new(),
            drained: false,
            trust_short: true,
        };
        (conn, theirs)
    }

    #[test]
    fn a_message_split_over_reads_is_resumed_where_it_stopped() {
        let (mut conn, mut redis) = pair();
        let whole = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n:1\r\n";
        let (first, rest) = whole.split_at(20);
        assert_eq!(conn.next_value().expect("no error"), None);
        redis.write_all(first).expect("write");
        conn.polled(false);
        assert_eq!(conn.next_value().expect("no error"), None, "half a message");
        redis.write_all(rest).expect("write");
        conn.polled(false);
        let msg = redis::Msg::from_owned_value(conn.next_value().unwrap().unwrap()).unwrap();
        assert_eq!(
            (msg.get_channel_name(), msg.get_payload_bytes()),
            ("chan", &b"hello"[..])
        );
        assert_eq!(conn.next_value().unwrap(), Some(Value::Int(1)));
        assert_eq!(conn.next_value().unwrap(), None);
    }

    #[test]
    fn after_a_short_read_more_is_read_only_once_polled_again() {
        let (mut conn, mut redis) = pair();
        redis.write_all(b":1\r\n").expect("write");
        assert_eq!(conn.next_value().unwrap(), Some(Value::Int(1)));
        redis.write_all(b":2\r\n").expect("write");
        // The short read said the socket was drained: no read until the
        // poller reports the socket again.
        assert_eq!(conn.next_value().unwrap(), None);
        conn.polled(false);
        assert_eq!(conn.next_value().unwrap(), Some(Value::Int(2)));
        // The peer's close is found once the poller reports it.
        drop(redis);
        conn.polled(true);
        assert!(conn.next_value().is_err());
    }
}
