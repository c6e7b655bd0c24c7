//! The broadcast relay between workers.
//!
//! Every worker has one Unix stream socket pair to the master, made before
//! the worker is forked. A worker that broadcasts delivers to its own
//! clients at once and writes one relay frame to the master; the master
//! copies the frame, unread, into the outgoing queue of every other worker
//! link, and each worker delivers it to its matching clients. Frames from
//! one worker keep their order through the master, so a sender's messages
//! arrive in the order it sent them.
//!
//! Nothing here blocks: the sockets are non-blocking and each link has an
//! output queue bounded by [`MAX_QUEUE`]. A worker that stops reading
//! (wedged, or dead and not yet reaped) loses the frames that do not fit
//! its queue, with a warning, instead of holding up the master or the
//! other workers.
//!
//! `POST /publish` asks how many connections a broadcast reached: the
//! master sends the workers a *counted* broadcast carrying a request id,
//! and each worker answers with a [`Delivered`] frame on the same link
//! once it has queued the message to its connections.
//!
//! Frame layout (little endian): `u32 length` of the rest, then a tag
//! byte, then:
//!
//! - tags 0, 1, 2, a broadcast ([`RelayMessage`]): the tag is its scope
//!   (0 all, 1 route, 2 room), then `u64 skip` (a connection id not to
//!   deliver to, 0 for none), `u8 opcode` (1 text, 2 binary), the route
//!   template and the room's parameter values as `u32`-length strings
//!   (absent for "all"; values only for "room"), then the payload. The
//!   cluster helper carries exactly these bodies between instances.
//! - tag 3, a counted broadcast (master to worker): `u64 request`, then a
//!   broadcast body as above (from its scope byte on).
//! - tag 4, a delivery report (worker to master): `u64 request`,
//!   `u64 receivers`.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use log::warn;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::handler::{ConnId, ConnInfo, Scope};
use crate::message::Message;

/// The most bytes queued towards one peer before frames are dropped.
pub const MAX_QUEUE: usize = 64 << 20;

/// The set of connections a broadcast is for, in a form that can cross
/// process boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// Every connection.
    All,
    /// Every connection on a route template.
    Route(String),
    /// Every connection on a route template with these parameter values.
    Room(String, Vec<String>),
}

impl RoomKey {
    /// The key of `scope` as seen from `origin`.
    pub fn of(origin: &ConnInfo, scope: Scope) -> RoomKey {
        match scope {
            Scope::All => RoomKey::All,
            Scope::Route => RoomKey::Route(origin.route().to_string()),
            Scope::Room => RoomKey::Room(
                origin.route().to_string(),
                origin.params().map(|(_, v)| v.to_string()).collect(),
            ),
        }
    }
}

/// One broadcast as it travels between processes.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayMessage {
    /// Who receives it.
    pub key: RoomKey,
    /// A connection that must not receive it (the sender, for "others").
    pub skip: Option<ConnId>,
    /// A text or binary message.
    pub message: Message,
}

/// Tag of a counted broadcast (after the broadcast scopes 0 to 2).
const COUNTED: u8 = 3;
/// Tag of a delivery report.
const DELIVERED: u8 = 4;

/// Writes a frame to `out`: its length prefix around what `body` appends.
fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

impl RelayMessage {
    /// Appends the frame for this message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        framed(out, |out| self.encode_body(out));
    }

    /// Appends the frame of this message as a counted broadcast: the
    /// worker that delivers it answers with a [`Delivered`] for `request`.
    pub fn encode_counted(&self, request: u64, out: &mut Vec<u8>) {
        framed(out, |out| {
            out.push(COUNTED);
            out.extend_from_slice(&request.to_le_bytes());
            self.encode_body(out);
        });
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        let (scope, route, values): (u8, &str, &[String]) = match &self.key {
            RoomKey::All => (0, "", &[]),
            RoomKey::Route(r) => (1, r, &[]),
            RoomKey::Room(r, v) => (2, r, v),
        };
        out.push(scope);
        out.extend_from_slice(&self.skip.map_or(0, |c| c.0).to_le_bytes());
        let (opcode, payload): (u8, &[u8]) = match &self.message {
            Message::Text(t) => (1, t.as_bytes()),
            Message::Binary(b) => (2, b),
        };
        out.push(opcode);
        put_str(out, route.as_bytes());
        out.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for v in values {
            put_str(out, v.as_bytes());
        }
        out.extend_from_slice(payload);
    }

    /// Decodes one broadcast frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Option<RelayMessage> {
        let mut r = Reader(body);
        let scope = r.u8()?;
        let skip = r.u64()?;
        let opcode = r.u8()?;
        let route = r.string()?;
        let n = r.u32()? as usize;
        let mut values = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            values.push(r.string()?);
        }
        let key = match scope {
            0 => RoomKey::All,
            1 => RoomKey::Route(route),
            2 => RoomKey::Room(route, values),
            _ => return None,
        };
        let payload = r.0.to_vec();
        let message = match opcode {
            1 => Message::text(String::from_utf8(payload).ok()?),
            _ => Message::binary(payload),
        };
        Some(RelayMessage {
            key,
            skip: (skip != 0).then_some(ConnId(skip)),
            message,
        })
    }
}

/// A broadcast as a worker reads it from its link.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The broadcast.
    pub message: RelayMessage,
    /// For a counted broadcast, the request to answer with [`Delivered`].
    pub request: Option<u64>,
}

impl Incoming {
    /// Decodes a broadcast or counted broadcast frame body (without its
    /// length prefix); `None` for anything else.
    pub fn decode(body: &[u8]) -> Option<Incoming> {
        let mut r = Reader(body);
        if r.u8()? != COUNTED {
            return RelayMessage::decode(body).map(|message| Incoming {
                message,
                request: None,
            });
        }
        let request = r.u64()?;
        Some(Incoming {
            message: RelayMessage::decode(r.0)?,
            request: Some(request),
        })
    }
}

/// A worker's answer to a counted broadcast: how many of its connections
/// the message was queued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The request of the counted broadcast.
    pub request: u64,
    /// The worker's connections it was queued to.
    pub receivers: u64,
}

impl Delivered {
    /// Appends the frame of this report to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        framed(out, |out| {
            out.push(DELIVERED);
            out.extend_from_slice(&self.request.to_le_bytes());
            out.extend_from_slice(&self.receivers.to_le_bytes());
        });
    }

    /// Decodes a frame body (without its length prefix) if it is a
    /// delivery report; `None` for anything else (a broadcast).
    pub fn decode(body: &[u8]) -> Option<Delivered> {
        let mut r = Reader(body);
        if r.u8()? != DELIVERED {
            return None;
        }
        let d = Delivered {
            request: r.u64()?,
            receivers: r.u64()?,
        };
        r.0.is_empty().then_some(d)
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A non-blocking framed link: one end of a worker's socket pair.
pub struct Link {
    sock: UnixStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    dropped: u64,
}

impl Link {
    /// Wraps one end of a socket pair, making it non-blocking.
    pub fn new(sock: UnixStream) -> io::Result<Link> {
        sock.set_nonblocking(true)?;
        Ok(Link {
            sock,
            inbox: Vec::new(),
            outbox: Vec::new(),
            dropped: 0,
        })
    }

    /// Registers the link for reading and writing (edge-triggered).
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.sock.as_raw_fd()),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Removes the link from the poller.
    pub fn deregister(&self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.sock.as_raw_fd()));
    }

    /// Registers the link, or changes its registration, for `interest`
    /// only: for a loop that asks for writability only while its queue
    /// is not empty (every read by the peer would wake it otherwise).
    pub fn register_for(
        &self,
        registry: &Registry,
        token: Token,
        interest: Interest,
        again: bool,
    ) -> io::Result<()> {
        let fd = &mut SourceFd(&self.sock.as_raw_fd());
        if again {
            registry.reregister(fd, token, interest)
        } else {
            registry.register(fd, token, interest)
        }
    }

    /// Queues a whole frame (length prefix included) and tries to send.
    /// Returns false if the frame was dropped because the queue is full.
    pub fn queue_frame(&mut self, frame: &[u8]) -> bool {
        let queued = self.push_frame(frame);
        if queued {
            self.flush();
        }
        queued
    }

    /// Queues a whole frame without writing it (`flush` sends the batch).
    /// Returns false if the frame was dropped because the queue is full.
    pub fn push_frame(&mut self, frame: &[u8]) -> bool {
        if self.outbox.len() + frame.len() > MAX_QUEUE {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                warn!(
                    "relay peer is not reading: {} broadcast frames dropped so far",
                    self.dropped
                );
            }
            return false;
        }
        self.outbox.extend_from_slice(frame);
        true
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Writes what the socket accepts of the queue.
    pub fn flush(&mut self) {
        let mut written = 0;
        while written < self.outbox.len() {
            match (&self.sock).write(&self.outbox[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.outbox.drain(..written);
        if self.outbox.capacity() > (1 << 20) && self.outbox.len() < (1 << 16) {
            self.outbox.shrink_to(1 << 16);
        }
    }

    /// Reads what is available and calls `frame` with each whole frame
    /// (length prefix included). Returns false once the peer has closed.
    pub fn read_frames(&mut self, frame: impl FnMut(&[u8])) -> bool {
        self.read_frames_until(false, frame)
    }

    /// [`Link::read_frames`], stopping after a read shorter than asked
    /// for if `stop_at_short`: the socket had no more then, and an
    /// edge-triggered poller reports whatever comes later, so the read
    /// that would only say "no more" is saved. Not for a wake-up that
    /// also reported the peer's close (which may need a read to see).
    pub fn read_frames_until(&mut self, stop_at_short: bool, mut frame: impl FnMut(&[u8])) -> bool {
        let mut alive = true;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match (&self.sock).read(&mut chunk) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(n) => {
                    self.inbox.extend_from_slice(&chunk[..n]);
                    if stop_at_short && n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    alive = false;
                    break;
                }
            }
        }
        let mut pos = 0;
        while self.inbox.len() - pos >= 4 {
            let len = u32::from_le_bytes([
                self.inbox[pos],
                self.inbox[pos + 1],
                self.inbox[pos + 2],
                self.inbox[pos + 3],
            ]) as usize;
            if self.inbox.len() - pos - 4 < len {
                break;
            }
            frame(&self.inbox[pos..pos + 4 + len]);
            pos += 4 + len;
        }
        self.inbox.drain(..pos);
        alive
    }
}

/// A worker's side of the relay.
pub struct RelayLink {
    link: Link,
    scratch: Vec<u8>,
}

impl RelayLink {
    /// Wraps the worker's end of its socket pair.
    pub fn new(sock: UnixStream) -> io::Result<RelayLink> {
        Ok(RelayLink {
            link: Link::new(sock)?,
            scratch: Vec::new(),
        })
    }

    /// Registers the link with the worker's poller.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.link.register(registry, token)
    }

    /// Removes the link from the poller.
    pub fn deregister(&mut self, registry: &Registry) {
        self.link.deregister(registry);
    }

    /// Sends a broadcast to the master for the other workers.
    pub fn publish(&mut self, message: &RelayMessage) {
        self.scratch.clear();
        message.encode(&mut self.scratch);
        let frame = std::mem::take(&mut self.scratch);
        self.link.queue_frame(&frame);
        self.scratch = frame;
    }

    /// Writes what is queued.
    pub fn flush(&mut self) {
        self.link.flush();
    }

    /// Answers a counted broadcast (`POST /publish`) to the master.
    pub fn report(&mut self, delivered: Delivered) {
        self.scratch.clear();
        delivered.encode(&mut self.scratch);
        let frame = std::mem::take(&mut self.scratch);
        self.link.queue_frame(&frame);
        self.scratch = frame;
    }

    /// Decodes the broadcasts that arrived; false once the master is gone.
    pub fn receive(&mut self, into: &mut Vec<Incoming>) -> bool {
        self.link.read_frames(|frame| {
            if let Some(m) = Incoming::decode(&frame[4..]) {
                into.push(m);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let m = RelayMessage {
            key: RoomKey::Room("/chat/{room}".into(), vec!["lobby".into()]),
            skip: Some(ConnId(42)),
            message: Message::text("héllo"),
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(RelayMessage::decode(&out[4..]), Some(m));
        assert!(RelayMessage::decode(&out[4..10]).is_none());
    }

    #[test]
    fn counted_broadcasts_and_reports_round_trip() {
        let m = RelayMessage {
            key: RoomKey::Route("/chat/{room}".into()),
            skip: None,
            message: Message::binary(vec![1, 2, 3]),
        };
        let mut out = Vec::new();
        m.encode_counted(7, &mut out);
        let got = Incoming::decode(&out[4..]).unwrap();
        assert_eq!((got.message, got.request), (m.clone(), Some(7)));
        assert_eq!(Delivered::decode(&out[4..]), None);
        out.clear();
        m.encode(&mut out);
        assert_eq!(Incoming::decode(&out[4..]).unwrap().request, None);
        assert_eq!(Delivered::decode(&out[4..]), None);

        let d = Delivered {
            request: 7,
            receivers: 3,
        };
        out.clear();
        d.encode(&mut out);
        assert_eq!(out.len(), 4 + 17);
        assert_eq!(Delivered::decode(&out[4..]), Some(d));
        assert_eq!(Incoming::decode(&out[4..]), None);
        assert_eq!(Delivered::decode(&out[4..12]), None);
    }

    #[test]
    fn links_carry_frames_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = Link::new(a).unwrap();
        let mut b = Link::new(b).unwrap();
        for i in 0..100u32 {
            let m = RelayMessage {
                key: RoomKey::All,
                skip: None,
                message: Message::binary(i.to_le_bytes().to_vec()),
            };
            let mut f = Vec::new();
            m.encode(&mut f);
            assert!(a.queue_frame(&f));
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            b.read_frames(|f| got.push(RelayMessage::decode(&f[4..]).unwrap()));
        }
        for (i, m) in got.iter().enumerate() {
            assert_eq!(
                m.message,
                Message::binary((i as u32).to_le_bytes().to_vec())
            );
        }
    }
}
