//! The cluster helper: a process the master forks (and restarts with
//! back-off, like a worker) when `[cluster]` is configured, which carries
//! broadcasts between wssd instances through Redis pub/sub.
//!
//! To the master it is one more relay peer: the master copies every
//! worker's broadcast frame to it, and copies the frames it writes (from
//! other instances) to every worker. So the workers and the master's loop
//! never touch Redis and never wait for it. Inside the helper:
//!
//! - one loop (`pump`) drives the master's link and two non-blocking Redis
//!   connections: frames from the master go into a queue bounded by
//!   `max_pending` bytes (the oldest are dropped, and counted, when a slow
//!   or absent Redis lets it fill, `queue`) and out with `PUBLISH
//!   PREFIX:broadcast`, in order, on one connection, whatever has queued
//!   up since the last round pipelined (all commands in one write, then
//!   the replies); the subscription's messages from other instances go to
//!   the master, this instance's own recognised by the instance id they
//!   carry and skipped;
//! - connecting (TCP, TLS, AUTH, SELECT, SUBSCRIBE: blocking, with
//!   timeouts) happens in a connector thread per lost connection
//!   (`conn`), which retries with back-off from 100 ms doubling to 10 s
//!   and hands the connection to the loop;
//! - the main thread waits for SIGTERM (drain, reload, master gone) and
//!   exits, which closes the Redis connections.
//!
//! The helper logs once per change of state (connected, disconnected),
//! not per attempt or message.
//!
//! Message on the channel: `u8 version (1)`, `u16 length` (little endian)
//! and the publishing instance's id, then the relay frame body
//! (`relay::RelayMessage`, without its length prefix).

mod conn;
mod pump;
mod queue;

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use nix::sys::signal::{SigSet, Signal};

use crate::config::ClusterConfig;
use crate::stats::ClusterCounters;
use conn::Role;
use pump::{Pump, Setup};

/// First reconnection delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Version byte of the channel message format.
const FORMAT: u8 = 1;

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
    let info = match redis::Client::open(config.redis_url.as_str()) {
        Ok(c) => c.get_connection_info().clone(),
        Err(e) => {
            error!("cluster: redis_url is not usable: {e}");
            return 2;
        }
    };
    let status = Arc::new(Status {
        state: Mutex::new(State::default()),
        counters,
        place: redact(&config.redis_url),
    });
    let channel = format!("{}:broadcast", config.channel_prefix);
    info!(
        "cluster helper for instance {instance_id}: Redis {} channel {channel}",
        status.place
    );
    let setup = Setup {
        info,
        channel,
        id: instance_id.as_bytes().to_vec(),
        cap: config.max_pending,
        status,
        counters,
    };
    let started = Pump::new(link, setup).and_then(|pump| {
        std::thread::Builder::new()
            .name("relay".to_string())
            .spawn(move || pump.run())
    });
    if let Err(e) = started {
        error!("cluster: cannot start the helper's loop: {e}");
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

/// Connection states, for logging once per change.
#[derive(Default)]
struct State {
    publisher: bool,
    subscriber: bool,
    /// What was last logged: `None` before the first outcome.
    logged: Option<bool>,
}

/// The state of the helper's two Redis connections, which the loop and
/// the connector threads report (only on changes, never per message).
pub(super) struct Status {
    state: Mutex<State>,
    counters: &'static ClusterCounters,
    /// The Redis URL without its password, for log lines.
    place: String,
}

impl Status {
    /// Records a connection's state; logs when the whole changes.
    fn set(&self, role: Role, up: bool, why: Option<&redis::RedisError>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        match role {
            Role::Publish => s.publisher = up,
            Role::Subscribe => s.subscriber = up,
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

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
