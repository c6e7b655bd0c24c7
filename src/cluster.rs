//! The cluster helper: a process the master forks (and restarts with
//! back-off, like a worker) when `[cluster]` is configured, which carries
//! broadcasts between wssd instances through Redis pub/sub.
//!
//! To the master it is one more relay peer: the master copies every
//! worker's broadcast frame to it, and copies the frames it writes (from
//! other instances) to every worker. So the workers and the master's loop
//! never touch Redis and never wait for it; the helper uses the `redis`
//! crate's blocking connections, in threads of its own (the helper is a
//! forked child, so the master's "no threads" rule does not apply here):
//!
//! - the *link reader* takes frames from the master into a queue bounded
//!   by `max_pending` bytes (the oldest are dropped, and counted, when a
//!   slow or absent Redis lets it fill);
//! - the *publisher* sends them with `PUBLISH PREFIX:broadcast`, in order,
//!   over one connection (so Redis keeps this instance's order): whatever
//!   has queued up since its last round goes out pipelined, all commands
//!   in one write and then all replies read, rather than one round trip
//!   per message (which would cap an instance at one broadcast per Redis
//!   round-trip time, a few thousand a second with Redis on another
//!   machine);
//! - the *subscriber* listens on the same channel and writes what other
//!   instances published to the master, recognising this instance's own
//!   messages by the instance id they carry and skipping them;
//! - the main thread waits for SIGTERM (drain, reload, master gone) and
//!   exits, which closes the Redis connections.
//!
//! Each connection reconnects with back-off from 100 ms doubling to 10 s;
//! the helper logs once per change of state (connected, disconnected),
//! not per attempt or message.
//!
//! Message on the channel: `u8 version (1)`, `u16 length` (little endian)
//! and the publishing instance's id, then the relay frame body
//! (`relay::RelayMessage`, without its length prefix).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use log::{debug, error, info, warn};
use nix::sys::signal::{SigSet, Signal};

use crate::config::ClusterConfig;
use crate::relay::RelayMessage;
use crate::stats::ClusterCounters;

/// First reconnection delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Version byte of the channel message format.
const FORMAT: u8 = 1;
/// The most message bytes one pipelined round of PUBLISH commands
/// carries (a single larger message still goes, alone).
const BATCH_BYTES: usize = 1 << 20;

/// Runs the helper until SIGTERM; returns the exit status.
pub(crate) fn run(
    config: &ClusterConfig,
    instance_id: &str,
    link: UnixStream,
    counters: Option<&'static ClusterCounters>,
) -> i32 {
    static NO_COUNTERS: ClusterCounters = ClusterCounters {
        connected: AtomicU64::new(0),
        published: AtomicU64::new(0),
        received: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    };
    let counters = counters.unwrap_or(&NO_COUNTERS);
    counters.connected.store(0, Ordering::Relaxed);
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            error!("cluster: redis_url is not usable: {e}");
            return 2;
        }
    };
    let (reader, writer) = match link.set_nonblocking(false).and_then(|()| link.try_clone()) {
        Ok(w) => (link, w),
        Err(e) => {
            error!("cluster: relay link unusable: {e}");
            return 2;
        }
    };
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
        state: Mutex::new(State::default()),
        counters,
        cap: config.max_pending,
        place: redact(&config.redis_url),
    });
    let channel = format!("{}:broadcast", config.channel_prefix);
    let id = instance_id.as_bytes().to_vec();
    info!(
        "cluster helper for instance {instance_id}: Redis {} channel {channel}",
        shared.place
    );
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(|e| error!("cluster: cannot start the {name} thread: {e}"))
            .is_ok()
    };
    let started = [
        spawn("link", {
            let (shared, id) = (Arc::clone(&shared), id.clone());
            Box::new(move || read_link(reader, &shared, &id))
        }),
        spawn("publish", {
            let (shared, client, channel) = (Arc::clone(&shared), client.clone(), channel.clone());
            Box::new(move || publish_loop(&client, &channel, &shared))
        }),
        spawn("subscribe", {
            let shared = Arc::clone(&shared);
            Box::new(move || subscribe_loop(&client, &channel, &id, writer, &shared))
        }),
    ];
    if started.contains(&false) {
        return 2;
    }
    wait_for_stop();
    info!("cluster helper stopping: closing the Redis connections");
    // `connected` is left alone: a successor (reload with a new
    // `[cluster]`) may have connected already; the master clears it when
    // the current helper exits.
    0
}

/// Blocks until SIGTERM, SIGINT or SIGQUIT (blocked in this process since
/// the fork, so `sigwait` receives them). SIGHUP is ignored: the master
/// decides about reloads.
fn wait_for_stop() {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGHUP) => continue,
            Ok(_) => return,
            Err(e) => {
                error!("cluster: sigwait failed: {e}");
                return;
            }
        }
    }
}

/// What waits for the publisher, bounded in bytes.
#[derive(Default)]
struct Queue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// Connection states, for logging once per change.
#[derive(Default)]
struct State {
    publisher: bool,
    subscriber: bool,
    /// What was last logged: `None` before the first outcome.
    logged: Option<bool>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    state: Mutex<State>,
    counters: &'static ClusterCounters,
    cap: usize,
    /// The Redis URL without its password, for log lines.
    place: String,
}

impl Shared {
    /// Records a connection's state; logs when the whole changes.
    fn set(&self, publisher: bool, up: bool, why: Option<&redis::RedisError>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if publisher {
            s.publisher = up;
        } else {
            s.subscriber = up;
        }
        let connected = s.publisher && s.subscriber;
        self.counters
            .connected
            .store(u64::from(connected), Ordering::Relaxed);
        // "Down" is logged as soon as either side fails; "up" once both are.
        let report = if connected {
            Some(true)
        } else if up {
            None
        } else {
            Some(false)
        };
        if let Some(now) = report {
            if s.logged != Some(now) {
                s.logged = Some(now);
                if now {
                    info!("cluster: connected to Redis at {}", self.place);
                } else {
                    let why = why.map_or_else(String::new, |e| format!(": {e}"));
                    warn!(
                        "cluster: Redis at {} unavailable{why}; local delivery goes on, reconnecting with back-off (broadcasts are not shared meanwhile)",
                        self.place
                    );
                }
            }
        }
    }

    /// Queues messages for Redis, dropping the oldest over the cap, and
    /// wakes the publisher once for all of them.
    fn push(&self, messages: impl IntoIterator<Item = Vec<u8>>) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        for message in messages {
            q.bytes += message.len();
            q.messages.push_back(message);
        }
        while q.bytes > self.cap {
            let Some(old) = q.messages.pop_front() else {
                break;
            };
            q.bytes -= old.len();
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    "cluster: over max_pending ({} bytes) waiting for Redis: {n} broadcasts dropped so far",
                    self.cap
                );
            }
        }
        self.ready.notify_one();
    }

    /// Waits for messages to publish and moves into `batch` the oldest
    /// ones, in order: at least one, then more while they fit in
    /// `max_bytes`. False if the queue is unusable (a thread panicked).
    fn pop_batch(&self, batch: &mut Vec<Vec<u8>>, max_bytes: usize) -> bool {
        let Ok(mut q) = self.queue.lock() else {
            return false;
        };
        while q.messages.is_empty() {
            q = match self.ready.wait(q) {
                Ok(q) => q,
                Err(_) => return false,
            };
        }
        let mut bytes = 0;
        while let Some(m) = q.messages.front() {
            if !batch.is_empty() && bytes + m.len() > max_bytes {
                break;
            }
            bytes += m.len();
            let Some(m) = q.messages.pop_front() else {
                break;
            };
            q.bytes -= m.len();
            batch.push(m);
        }
        true
    }
}

/// Reads relay frames from the master and queues them for Redis. The
/// master gone means the daemon is gone: the helper exits.
fn read_link(mut link: UnixStream, shared: &Shared, id: &[u8]) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match link.read(&mut chunk) {
            Ok(0) | Err(_) => {
                info!("cluster: the master closed the relay link; exiting");
                std::process::exit(0);
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        let mut messages = Vec::new();
        while buf.len() - pos >= 4 {
            let len =
                u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
            if buf.len() - pos - 4 < len {
                break;
            }
            messages.push(encode(id, &buf[pos + 4..pos + 4 + len]));
            pos += 4 + len;
        }
        buf.drain(..pos);
        if !messages.is_empty() {
            shared.push(messages);
        }
    }
}

/// The channel message for one relay frame body.
fn encode(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + id.len() + body.len());
    out.push(FORMAT);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(body);
    out
}

/// The publisher's id and the relay frame body of a channel message.
fn decode(message: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&format, rest) = message.split_first()?;
    if format != FORMAT || rest.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let rest = &rest[2..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Doubles a back-off delay up to the maximum.
fn next_backoff(delay: Duration) -> Duration {
    (delay * 2).min(BACKOFF_MAX)
}

/// Publishes queued messages, pipelined, reconnecting with back-off.
fn publish_loop(client: &redis::Client, channel: &str, shared: &Shared) {
    let mut delay = BACKOFF_START;
    // Messages of a round that Redis did not confirm, on a connection
    // found dead: they are tried once more on the next connection (a
    // Redis restart is usually noticed this way), then dropped.
    let mut retry: Vec<Vec<u8>> = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut packed = Vec::new();
    loop {
        let mut conn = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                shared.set(true, false, Some(&e));
                debug!("cluster: publisher: {e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = next_backoff(delay);
                continue;
            }
        };
        delay = BACKOFF_START;
        shared.set(true, true, None);
        loop {
            let retried = !retry.is_empty();
            batch.clear();
            if retried {
                batch.append(&mut retry);
            } else if !shared.pop_batch(&mut batch, BATCH_BYTES) {
                return;
            }
            let (confirmed, failed) = publish_round(&mut conn, channel, &batch, &mut packed);
            shared
                .counters
                .published
                .fetch_add(confirmed as u64, Ordering::Relaxed);
            if let Some(e) = failed {
                let unconfirmed = batch.drain(confirmed..);
                if retried {
                    // Not promised while disconnected: these are lost.
                    shared
                        .counters
                        .dropped
                        .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
                } else {
                    retry.extend(unconfirmed);
                }
                shared.set(true, false, Some(&e));
                break;
            }
        }
    }
}

/// One pipelined round: a PUBLISH on `channel` for each message of
/// `batch`, all written at once, then the replies read in order. Returns
/// how many Redis confirmed (the first ones) and, if it stopped short, why.
fn publish_round(
    conn: &mut redis::Connection,
    channel: &str,
    batch: &[Vec<u8>],
    packed: &mut Vec<u8>,
) -> (usize, Option<redis::RedisError>) {
    packed.clear();
    for message in batch {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message.as_slice())
            .write_packed_command(packed);
    }
    if let Err(e) = conn.send_packed_command(packed) {
        return (0, Some(e));
    }
    if packed.capacity() > 2 * BATCH_BYTES {
        // One huge message went out: do not keep its buffer.
        *packed = Vec::new();
    }
    for confirmed in 0..batch.len() {
        if let Err(e) = conn.recv_response().and_then(redis::Value::extract_error) {
            return (confirmed, Some(e));
        }
    }
    (batch.len(), None)
}

/// Receives other instances' messages and hands them to the master.
fn subscribe_loop(
    client: &redis::Client,
    channel: &str,
    own: &[u8],
    mut link: UnixStream,
    shared: &Shared,
) {
    let mut delay = BACKOFF_START;
    let mut frame = Vec::new();
    loop {
        let mut conn = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                shared.set(false, false, Some(&e));
                debug!("cluster: subscriber: {e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = next_backoff(delay);
                continue;
            }
        };
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.subscribe(channel) {
            shared.set(false, false, Some(&e));
            std::thread::sleep(delay);
            delay = next_backoff(delay);
            continue;
        }
        delay = BACKOFF_START;
        shared.set(false, true, None);
        loop {
            let message = match pubsub.get_message() {
                Ok(m) => m,
                Err(e) => {
                    shared.set(false, false, Some(&e));
                    break;
                }
            };
            let Some((id, body)) = decode(message.get_payload_bytes()) else {
                debug!("cluster: ignoring a message on {channel} that is not wssd's");
                continue;
            };
            if id == own {
                continue;
            }
            let Some(mut relayed) = RelayMessage::decode(body) else {
                debug!("cluster: ignoring a malformed broadcast from another instance");
                continue;
            };
            // A connection id of another instance means nothing here.
            relayed.skip = None;
            frame.clear();
            relayed.encode(&mut frame);
            if link.write_all(&frame).is_err() {
                info!("cluster: the master closed the relay link; exiting");
                std::process::exit(0);
            }
            shared.counters.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `redis://:secret@host:6379/0` → `redis://***@host:6379/0`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_carry_the_instance_id() {
        let m = encode(b"host-42", b"body");
        assert_eq!(decode(&m), Some((&b"host-42"[..], &b"body"[..])));
        assert_eq!(decode(b"\x02\x00\x00"), None);
        assert_eq!(decode(b"\x01\x09\x00abc"), None);
    }

    fn shared(cap: usize) -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            state: Mutex::new(State::default()),
            counters: Box::leak(Box::default()),
            cap,
            place: String::new(),
        }
    }

    #[test]
    fn the_publisher_takes_what_queued_up_in_order_within_the_batch_size() {
        let s = shared(1 << 20);
        s.push((0..10u8).map(|i| vec![i; 100]));
        let mut batch = Vec::new();
        assert!(s.pop_batch(&mut batch, 450));
        assert_eq!(batch, (0..4u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        batch.clear();
        assert!(s.pop_batch(&mut batch, 1 << 20));
        assert_eq!(batch, (4..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        // A message over the batch size still goes, alone.
        s.push([vec![1; 1000], vec![2; 10]]);
        batch.clear();
        assert!(s.pop_batch(&mut batch, 100));
        assert_eq!(batch, [vec![1; 1000]]);
        let q = s.queue.lock().unwrap();
        assert_eq!((q.messages.len(), q.bytes), (1, 10));
    }

    #[test]
    fn the_queue_drops_the_oldest_over_max_pending() {
        let s = shared(250);
        s.push((0..4u8).map(|i| vec![i; 100]));
        assert_eq!(s.counters.dropped.load(Ordering::Relaxed), 2);
        let mut batch = Vec::new();
        assert!(s.pop_batch(&mut batch, 1 << 20));
        assert_eq!(batch, [vec![2; 100], vec![3; 100]]);
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
