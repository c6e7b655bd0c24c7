//! The helper's one loop: a `mio` poller over the master's relay link and
//! the two Redis connections (non-blocking once set up). Frames from the
//! master go into the bounded queue and out as pipelined `PUBLISH` rounds
//! in the same turn; messages from the subscription go to the master.
//!
//! One thread does it all so that a message costs no hand-off between
//! threads (no futex wake, no second thread to schedule): a broadcast
//! wakes the loop once when it arrives from the master and once when
//! Redis answers, and this instance's own copy of it, which the
//! subscription brings back with that answer, is read and skipped in the
//! same turn. Only (re)connecting blocks, so it runs in a connector
//! thread (`conn::connect_in_background`) that hands the connection over.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use log::{debug, error, info};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use redis::{ConnectionInfo, RedisError, Value};

use super::conn::{connect_in_background, RedisConn, Role};
use super::queue::Queue;
use super::{decode, encode, Status};
use crate::relay::{Link, RelayMessage};
use crate::stats::ClusterCounters;

const LINK: Token = Token(0);
const PUBLISH: Token = Token(1);
const SUBSCRIBE: Token = Token(2);
const WAKE: Token = Token(3);

/// The most message bytes one pipelined round of PUBLISH commands
/// carries (a single larger message still goes, alone).
const BATCH_BYTES: usize = 1 << 20;
/// Bytes waiting for the master past which the subscription is not read
/// (Redis holds the rest, as it did for a blocked subscriber thread).
const LINK_BACKLOG: usize = 1 << 20;

/// What the loop needs to know besides its sockets.
pub(super) struct Setup {
    /// Where Redis is and how to log in.
    pub info: ConnectionInfo,
    /// `PREFIX:broadcast`.
    pub channel: String,
    /// This instance's id, which its channel messages carry.
    pub id: Vec<u8>,
    /// `max_pending`.
    pub cap: usize,
    /// Connection states, shared with the connector threads.
    pub status: Arc<Status>,
    /// The helper's counters in the shared status table.
    pub counters: &'static ClusterCounters,
}

/// The publishing side: the connection, the round in flight, and what a
/// lost connection left unconfirmed.
#[derive(Default)]
struct Publisher {
    conn: Option<RedisConn>,
    /// The packed commands of the round, and how much of them is written.
    out: Vec<u8>,
    written: usize,
    /// The messages of the round, and how many Redis confirmed.
    round: Vec<Vec<u8>>,
    confirmed: usize,
    /// Whether the round is a second try.
    retried: bool,
    /// Registered for writability too (only while a round is not all
    /// written: otherwise each read by Redis would wake the loop).
    polled_for_write: bool,
    /// The poller saw the connection closed or failed: look even when no
    /// reply is due, so that a Redis gone while idle is noticed now.
    closed: bool,
    /// Messages of a round that a dead connection did not confirm: tried
    /// once more on the next connection (a Redis restart is usually
    /// noticed this way), then dropped.
    retry: Vec<Vec<u8>>,
}

/// The loop's state.
pub(super) struct Pump {
    poll: Poll,
    link: Link,
    queue: Queue,
    publisher: Publisher,
    subscriber: Option<RedisConn>,
    /// The subscription may have more to read (edge-triggered poller).
    sub_ready: bool,
    setup: Setup,
    scratch: Vec<u8>,
    /// The link is registered for writability too (while it has a queue).
    link_polled_for_write: bool,
    connected: Receiver<(Role, RedisConn)>,
    connected_tx: Sender<(Role, RedisConn)>,
    waker: Arc<Waker>,
}

impl Pump {
    /// Sets the loop up over the master's link and starts connecting.
    pub fn new(link: std::os::unix::net::UnixStream, setup: Setup) -> std::io::Result<Pump> {
        let poll = Poll::new()?;
        let link = Link::new(link)?;
        link.register_for(poll.registry(), LINK, Interest::READABLE, false)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (connected_tx, connected) = mpsc::channel();
        let pump = Pump {
            poll,
            link,
            queue: Queue::new(setup.cap),
            publisher: Publisher::default(),
            subscriber: None,
            sub_ready: false,
            setup,
            scratch: Vec::new(),
            link_polled_for_write: false,
            connected,
            connected_tx,
            waker,
        };
        pump.connect(Role::Publish)?;
        pump.connect(Role::Subscribe)?;
        Ok(pump)
    }

    /// Starts a connector thread for `role`.
    fn connect(&self, role: Role) -> std::io::Result<()> {
        connect_in_background(
            self.setup.info.clone(),
            role,
            self.setup.channel.clone(),
            Arc::clone(&self.setup.status),
            self.connected_tx.clone(),
            Arc::clone(&self.waker),
        )
    }

    /// Runs until the master closes the link (then the process exits).
    pub fn run(mut self) -> ! {
        let mut events = Events::with_capacity(16);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                error!("cluster: poll failed: {e}");
                std::process::exit(1);
            }
            let (mut link_readable, mut link_closed) = (false, false);
            for event in events.iter() {
                match event.token() {
                    LINK => {
                        link_readable |= event.is_readable() || event.is_read_closed();
                        link_closed |= event.is_read_closed() || event.is_error();
                    }
                    SUBSCRIBE => {
                        self.sub_ready = true;
                        if let Some(conn) = self.subscriber.as_mut() {
                            conn.polled(event.is_read_closed() || event.is_error());
                        }
                    }
                    // Replies are read in the turn below when due.
                    PUBLISH => {
                        let closed = event.is_read_closed() || event.is_error();
                        self.publisher.closed |= closed;
                        if let Some(conn) = self.publisher.conn.as_mut() {
                            conn.polled(closed);
                        }
                    }
                    _ => {}
                }
            }
            self.adopt_connections();
            if link_readable {
                self.read_link(!link_closed);
            }
            self.pump_publisher();
            self.pump_subscriber();
        }
    }

    /// Takes the connections the connector threads made.
    fn adopt_connections(&mut self) {
        while let Ok((role, conn)) = self.connected.try_recv() {
            let token = match role {
                Role::Publish => PUBLISH,
                Role::Subscribe => SUBSCRIBE,
            };
            // Writability only while a round is not all written.
            let interest = Interest::READABLE;
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&conn.fd()), token, interest)
            {
                error!("cluster: cannot poll the Redis connection: {e}");
                self.reconnect(role);
                continue;
            }
            self.setup.status.set(role, true, None);
            match role {
                Role::Publish => self.publisher.conn = Some(conn),
                Role::Subscribe => {
                    self.subscriber = Some(conn);
                    self.sub_ready = true;
                }
            }
        }
    }

    fn reconnect(&self, role: Role) {
        if let Err(e) = self.connect(role) {
            error!("cluster: cannot start a connector thread: {e}; exiting (the master restarts the helper)");
            std::process::exit(1);
        }
    }

    /// Moves the master's frames into the queue, as channel messages.
    fn read_link(&mut self, stop_at_short: bool) {
        let (queue, id, dropped) = (
            &mut self.queue,
            &self.setup.id,
            &self.setup.counters.dropped,
        );
        let alive = self.link.read_frames_until(stop_at_short, |frame| {
            queue.push(encode(id, &frame[4..]), dropped);
        });
        if !alive {
            info!("cluster: the master closed the relay link; exiting");
            std::process::exit(0);
        }
    }

    /// Reads the round's replies, starts the next round when it is
    /// confirmed, and writes what is unwritten.
    fn pump_publisher(&mut self) {
        if self.publisher.conn.is_none() {
            return;
        }
        let result = self.read_replies().and_then(|()| {
            if self.publisher.confirmed == self.publisher.round.len() {
                self.start_round();
            }
            self.write_round()
        });
        if let Err(e) = result {
            self.publisher_failed(e);
        }
    }

    fn read_replies(&mut self) -> Result<(), RedisError> {
        let p = &mut self.publisher;
        let Some(conn) = p.conn.as_mut() else {
            return Ok(());
        };
        while p.confirmed < p.round.len() {
            let Some(reply) = conn.next_value()? else {
                break;
            };
            reply.extract_error()?;
            p.confirmed += 1;
            self.setup
                .counters
                .published
                .fetch_add(1, Ordering::Relaxed);
        }
        if p.closed && p.confirmed == p.round.len() {
            // Nothing is due, so anything but "no more now" (the end of
            // the stream, an error) is the connection failing.
            p.closed = false;
            if let Some(v) = conn.next_value()? {
                debug!("cluster: unexpected value from Redis on the publishing connection: {v:?}");
            }
        }
        Ok(())
    }

    /// Packs the next round: a retry first, else whatever queued up (up
    /// to `BATCH_BYTES`), all PUBLISH commands in one buffer.
    fn start_round(&mut self) {
        let p = &mut self.publisher;
        p.round.clear();
        p.confirmed = 0;
        p.retried = !p.retry.is_empty();
        if p.retried {
            p.round.append(&mut p.retry);
        } else {
            self.queue.pop_batch(&mut p.round, BATCH_BYTES);
        }
        if p.out.capacity() > 2 * BATCH_BYTES {
            // One huge message went out: do not keep its buffer.
            p.out = Vec::new();
        }
        p.out.clear();
        p.written = 0;
        for message in &p.round {
            redis::cmd("PUBLISH")
                .arg(&self.setup.channel)
                .arg(message.as_slice())
                .write_packed_command(&mut p.out);
        }
    }

    fn write_round(&mut self) -> Result<(), RedisError> {
        let p = &mut self.publisher;
        let Some(conn) = p.conn.as_mut() else {
            return Ok(());
        };
        while p.written < p.out.len() {
            match conn.write(&p.out[p.written..])? {
                0 => break,
                n => p.written += n,
            }
        }
        let want = p.written < p.out.len();
        if want != p.polled_for_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut SourceFd(&conn.fd()), PUBLISH, interest)?;
            p.polled_for_write = want;
        }
        Ok(())
    }

    /// Drops the publishing connection: what it did not confirm is tried
    /// once more on the next one (or, already a second try, dropped).
    fn publisher_failed(&mut self, e: RedisError) {
        let p = &mut self.publisher;
        if let Some(conn) = p.conn.take() {
            deregister(self.poll.registry(), &conn);
        }
        let unconfirmed: Vec<Vec<u8>> = p.round.drain(p.confirmed..).collect();
        if p.retried {
            // Not promised while disconnected: these are lost.
            self.setup
                .counters
                .dropped
                .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
        } else {
            p.retry = unconfirmed;
        }
        p.round.clear();
        p.confirmed = 0;
        p.out.clear();
        p.written = 0;
        p.closed = false;
        p.polled_for_write = false;
        self.setup.status.set(Role::Publish, false, Some(&e));
        self.reconnect(Role::Publish);
    }

    /// Hands other instances' messages to the master while it keeps up,
    /// and writes them.
    fn pump_subscriber(&mut self) {
        loop {
            while self.sub_ready && self.link.pending() < LINK_BACKLOG {
                let Some(conn) = self.subscriber.as_mut() else {
                    self.sub_ready = false;
                    break;
                };
                match conn.next_value() {
                    Ok(Some(value)) => self.deliver(value),
                    Ok(None) => self.sub_ready = false,
                    Err(e) => self.subscriber_failed(e),
                }
            }
            self.link.flush();
            if !self.sub_ready || self.link.pending() >= LINK_BACKLOG {
                break;
            }
        }
        let want = self.link.pending() > 0;
        if want != self.link_polled_for_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = self
                .link
                .register_for(self.poll.registry(), LINK, interest, true)
            {
                error!("cluster: cannot poll the relay link: {e}; exiting");
                std::process::exit(1);
            }
            self.link_polled_for_write = want;
        }
    }

    /// One message from the subscription: to the master unless it is
    /// this instance's own.
    fn deliver(&mut self, value: Value) {
        let Some(message) = redis::Msg::from_owned_value(value) else {
            return;
        };
        let Some((id, body)) = decode(message.get_payload_bytes()) else {
            debug!("cluster: ignoring a message on the channel that is not wssd's");
            return;
        };
        if id == self.setup.id.as_slice() {
            return;
        }
        let Some(mut relayed) = RelayMessage::decode(body) else {
            debug!("cluster: ignoring a malformed broadcast from another instance");
            return;
        };
        // A connection id of another instance means nothing here.
        relayed.skip = None;
        self.scratch.clear();
        relayed.encode(&mut self.scratch);
        self.link.push_frame(&self.scratch);
        self.setup.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    fn subscriber_failed(&mut self, e: RedisError) {
        if let Some(conn) = self.subscriber.take() {
            deregister(self.poll.registry(), &conn);
        }
        self.sub_ready = false;
        self.setup.status.set(Role::Subscribe, false, Some(&e));
        self.reconnect(Role::Subscribe);
    }
}

fn deregister(registry: &Registry, conn: &RedisConn) {
    let _ = registry.deregister(&mut SourceFd(&conn.fd()));
}
