//! State shared by the main thread and the workers: phase flags, counters
//! for the setup barrier and the progress line, broadcast flow control, the
//! workers' wakers and the first error messages.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::Instant;

use mio::Waker;

/// Error messages kept for the report.
const MAX_SAMPLES: usize = 10;
/// `Shared::final_sent` before the broadcast sender has stopped.
pub const NOT_FINAL: u64 = u64::MAX;

/// State shared by the main thread and all workers.
#[derive(Debug)]
pub struct Shared {
    /// Time origin for broadcast timestamps.
    pub epoch: Instant,
    /// Set by the main thread when measurement starts.
    pub start: AtomicBool,
    /// Set by the main thread when measurement ends.
    pub stop: AtomicBool,
    /// Connections ready (open; in idle mode, first echo verified).
    pub ready: AtomicU64,
    /// Connections that failed before becoming ready.
    pub failed: AtomicU64,
    /// Completed units (for progress; published every tick).
    pub completed: AtomicU64,
    /// Errors so far (for progress).
    pub errors: AtomicU64,
    /// Broadcast: messages received by all clients.
    pub deliveries: AtomicU64,
    /// Broadcast: number of receivers the sender waits for.
    pub receivers: AtomicU64,
    /// Broadcast: messages sent so far.
    pub bcast_sent: AtomicU64,
    /// Broadcast: messages sent in total, once the sender stopped.
    pub final_sent: AtomicU64,
    /// One waker per worker (index = worker).
    pub wakers: Vec<Waker>,
    /// The first distinct error messages: where first seen, the message,
    /// how many times it occurred.
    samples: Mutex<Vec<(String, String, u64)>>,
}

impl Shared {
    /// Fresh shared state for workers woken by `wakers`.
    pub fn new(wakers: Vec<Waker>) -> Self {
        Shared {
            epoch: Instant::now(),
            start: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            receivers: AtomicU64::new(1),
            bcast_sent: AtomicU64::new(0),
            final_sent: AtomicU64::new(NOT_FINAL),
            wakers,
            samples: Mutex::new(Vec::new()),
        }
    }

    /// Wakes every worker.
    pub fn wake_all(&self) {
        for w in &self.wakers {
            // A failed wake only delays the worker until its next tick.
            let _ = w.wake();
        }
    }

    /// Keeps error `message` seen at `whom` if it is new and fewer than
    /// [`MAX_SAMPLES`] are kept; counts repeats.
    pub fn sample(&self, whom: String, message: String) {
        let Ok(mut samples) = self.samples.lock() else {
            return;
        };
        if let Some(s) = samples.iter_mut().find(|s| s.1 == message) {
            s.2 += 1;
        } else if samples.len() < MAX_SAMPLES {
            samples.push((whom, message, 1));
        }
    }

    /// The kept error messages, as `WHERE: MESSAGE [(N times)]`.
    pub fn samples(&self) -> Vec<String> {
        let Ok(samples) = self.samples.lock() else {
            return Vec::new();
        };
        samples
            .iter()
            .map(|(whom, message, n)| match n {
                1 => format!("{whom}: {message}"),
                n => format!("{whom}: {message} ({n} times)"),
            })
            .collect()
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}
