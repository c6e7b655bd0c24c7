//! Where a worker is in its own life (serving, retiring after a reload,
//! draining for a shutdown), what each signal asks of it, and what its
//! mode deadline finds due. The loop carries the answers out (closing
//! the accept gate, closing connections, scheduling the deadline); this
//! module decides and says so in the log, so the rules read in one place.

use std::time::{Duration, Instant};

use log::info;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};

/// What a signal asks the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// SIGTERM, SIGINT: shut down (close every connection with 1001).
    Drain,
    /// SIGQUIT: a reload replaced us; stop accepting, serve what is open.
    Retire,
    /// SIGUSR1: reopen the log file (rotation).
    ReopenLogs,
}

impl Order {
    /// The order a worker signal carries, if any.
    pub fn of(signal: i32) -> Option<Order> {
        match signal {
            SIGTERM | SIGINT => Some(Order::Drain),
            SIGQUIT => Some(Order::Retire),
            SIGUSR1 => Some(Order::ReopenLogs),
            _ => None,
        }
    }
}

/// What the mode's deadline found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// Nothing (an early or stale timer entry).
    Nothing,
    /// Retiring took longer than `drain_timeout`: close what is open.
    Retiring,
    /// Connections did not finish their close handshake in time: drop them.
    Draining,
}

/// Where the worker is in its own life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Accepting and serving.
    Serving,
    /// Replaced by a reload: not accepting, serving open connections
    /// until they close or `deadline`.
    Retiring { deadline: Instant },
    /// Shutting down: close frames sent, waiting for replies until
    /// `deadline`.
    Draining { deadline: Instant },
}

impl Mode {
    /// Whether the worker accepts and serves as usual.
    pub fn is_serving(&self) -> bool {
        *self == Mode::Serving
    }

    /// Whether the worker is shutting down (new connections are closed
    /// as soon as they open).
    pub fn is_draining(&self) -> bool {
        matches!(self, Mode::Draining { .. })
    }

    /// Reload: retires (no more accepts, open connections served until
    /// `drain_timeout` from `now`); returns that deadline, or `None` if
    /// the worker is not serving (already retiring or draining).
    /// `worker` and `open` are for the log.
    pub fn retire(
        &mut self,
        now: Instant,
        drain_timeout: Duration,
        worker: usize,
        open: usize,
    ) -> Option<Instant> {
        if !self.is_serving() {
            return None;
        }
        info!("worker {worker} retiring: {open} connections, drain deadline {drain_timeout:?}");
        let deadline = now + drain_timeout;
        *self = Mode::Retiring { deadline };
        Some(deadline)
    }

    /// Shutdown: drains (every connection closed with 1001, their replies
    /// awaited for `grace` from `now`); returns that deadline, or `None`
    /// if it drains already.
    pub fn drain(
        &mut self,
        now: Instant,
        grace: Duration,
        worker: usize,
        open: usize,
    ) -> Option<Instant> {
        if self.is_draining() {
            return None;
        }
        info!("worker {worker} draining {open} connections");
        let deadline = now + grace;
        *self = Mode::Draining { deadline };
        Some(deadline)
    }

    /// What is due at `now`.
    pub fn expired(&self, now: Instant, worker: usize, open: usize) -> Expired {
        match *self {
            Mode::Retiring { deadline } if now >= deadline => {
                info!("worker {worker}: drain_timeout passed with {open} connections open; closing them");
                Expired::Retiring
            }
            Mode::Draining { deadline } if now >= deadline => {
                info!("worker {worker}: {open} connections did not finish closing in time; dropping them");
                Expired::Draining
            }
            _ => Expired::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_retires_once_drains_once_and_expires_at_its_deadlines() {
        let (now, s) = (Instant::now(), Duration::from_secs(1));
        let mut mode = Mode::Serving;
        assert_eq!(mode.expired(now, 0, 0), Expired::Nothing);
        assert_eq!(mode.retire(now, s, 0, 0), Some(now + s));
        assert_eq!(mode.retire(now, s, 0, 0), None, "retiring twice");
        assert_eq!(mode.expired(now, 0, 0), Expired::Nothing);
        assert_eq!(mode.expired(now + s, 0, 0), Expired::Retiring);
        assert_eq!(mode.drain(now, 2 * s, 0, 0), Some(now + 2 * s));
        assert_eq!(mode.drain(now, s, 0, 0), None, "draining twice");
        assert_eq!(
            mode.retire(now, s, 0, 0),
            None,
            "no retiring while draining"
        );
        assert_eq!(mode.expired(now + s, 0, 0), Expired::Nothing);
        assert_eq!(mode.expired(now + 2 * s, 0, 0), Expired::Draining);
        assert_eq!(Order::of(SIGQUIT), Some(Order::Retire));
        assert_eq!(Order::of(SIGINT), Some(Order::Drain));
    }
}
