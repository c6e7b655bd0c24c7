//! Where a worker is in its own life (serving, retiring after a reload,
//! draining for a shutdown), what each signal asks of it, and what its
//! mode deadline finds due. The loop carries the answers out (closing
//! the accept gate, closing connections, scheduling the deadline); this
//! module only decides, so the rules read in one place.

use std::time::Instant;

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

    /// Starts retiring until `deadline`; false if the worker is not
    /// serving (already retiring or draining: nothing to do).
    pub fn retire(&mut self, deadline: Instant) -> bool {
        if !self.is_serving() {
            return false;
        }
        *self = Mode::Retiring { deadline };
        true
    }

    /// Starts draining until `deadline`; false if it already drains.
    pub fn drain(&mut self, deadline: Instant) -> bool {
        if self.is_draining() {
            return false;
        }
        *self = Mode::Draining { deadline };
        true
    }

    /// What is due at `now`.
    pub fn expired(&self, now: Instant) -> Expired {
        match *self {
            Mode::Retiring { deadline } if now >= deadline => Expired::Retiring,
            Mode::Draining { deadline } if now >= deadline => Expired::Draining,
            _ => Expired::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_worker_retires_once_drains_once_and_expires_at_its_deadlines() {
        let now = Instant::now();
        let mut mode = Mode::Serving;
        assert_eq!(mode.expired(now), Expired::Nothing);
        assert!(mode.retire(now + Duration::from_secs(1)));
        assert!(!mode.retire(now), "retiring twice");
        assert_eq!(mode.expired(now), Expired::Nothing);
        assert_eq!(
            mode.expired(now + Duration::from_secs(1)),
            Expired::Retiring
        );
        assert!(mode.drain(now + Duration::from_secs(2)));
        assert!(!mode.drain(now), "draining twice");
        assert!(!mode.retire(now), "a draining worker does not retire");
        assert_eq!(
            mode.expired(now + Duration::from_secs(2)),
            Expired::Draining
        );
        assert_eq!(Order::of(SIGQUIT), Some(Order::Retire));
        assert_eq!(Order::of(SIGINT), Some(Order::Drain));
    }
}
