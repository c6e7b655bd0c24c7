//! The sweep that gives quiet TLS sessions' record buffers back.
//!
//! OpenSSL's record buffers (about 34 KiB per session, see `crate::tls`)
//! stay with a session while it is busy, so that a message does not cost
//! two large allocations; a session that was not read or written during
//! one whole sweep interval frees them. The loop lists a session the
//! first time it is used after a release ([`Sweep::note`]) and visits the
//! list every [`INTERVAL`] while it is not empty, so an idle worker does
//! not wake for it and an idle connection holds no buffer after at most
//! two intervals (one whose buffers still hold data keeps them until they
//! are sent or read; one in the middle of its TLS handshake keeps them
//! until the handshake ends or `handshake_timeout` passes).

use std::time::{Duration, Instant};

use super::conn::Conn;
use super::slab::Slab;

/// How often the listed sessions are visited: a session quiet for
/// between one and two intervals gives its buffers back.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);

/// The TLS connections that may hold record buffers, as (slot, serial).
#[derive(Default)]
pub(super) struct Sweep {
    listed: Vec<(usize, u32)>,
    /// A visit is in the timer heap.
    scheduled: bool,
}

impl Sweep {
    /// Lists the connection in `slot` if its TLS session was used since
    /// its buffers were last given back; true if it was listed now.
    pub fn note(&mut self, slot: usize, conn: &mut Conn) -> bool {
        if !conn.stream_mut().is_some_and(|s| s.tls_newly_used()) {
            return false;
        }
        self.listed.push((slot, conn.serial));
        true
    }

    /// Visits every listed connection (see `Stream::tls_sweep`); drops
    /// those that gave their buffers back or are gone.
    pub fn visit(&mut self, conns: &mut Slab<Conn>) {
        self.scheduled = false;
        self.listed.retain(|&(slot, serial)| {
            conns
                .get_mut(slot)
                .filter(|c| c.serial == serial)
                .and_then(Conn::stream_mut)
                .is_some_and(|s| s.tls_sweep())
        });
    }

    /// When the next visit is due, if the caller must put it in the
    /// timer heap: some connection is listed and no visit is there yet.
    pub fn next_visit(&mut self, now: Instant) -> Option<Instant> {
        if self.scheduled || self.listed.is_empty() {
            return None;
        }
        self.scheduled = true;
        Some(now + INTERVAL)
    }

    /// How many connections are listed (for the status page).
    pub fn len(&self) -> usize {
        self.listed.len()
    }
}
