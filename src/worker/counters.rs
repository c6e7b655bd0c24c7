//! The worker's row of the master's shared counters (`stats.rs`), as the
//! loop counts into it: each count is one call where the loop acts, and
//! nothing when the daemon runs without counters. `STATS:` comments mark
//! the call sites.

use super::broadcast::Delivery;
use super::session::{Compressed, Echoed, Received};
use crate::stats::WorkerSlot;

/// This worker's counters, if the master keeps any.
#[derive(Clone, Copy)]
pub(super) struct Counters(Option<&'static WorkerSlot>);

impl Counters {
    /// Counts into `slot`, or nowhere.
    pub fn new(slot: Option<&'static WorkerSlot>) -> Counters {
        Counters(slot)
    }

    /// The row itself, for the upgrade, which counts refused handshakes
    /// on its own.
    pub fn slot(self) -> Option<&'static WorkerSlot> {
        self.0
    }

    /// A connection was accepted.
    pub fn accepted(self) {
        if let Some(s) = self.0 {
            WorkerSlot::add(&s.accepted, 1);
        }
    }

    /// `n` open connections have output the socket did not take now.
    pub fn send_blocked(self, n: usize) {
        if let Some(s) = self.0 {
            WorkerSlot::set(&s.send_blocked, n as u64);
        }
    }

    /// A WebSocket opened.
    pub fn opened(self) {
        if let Some(s) = self.0 {
            s.opened();
        }
    }

    /// A WebSocket closed (removed or failed into linger; once each).
    pub fn closed(self) {
        if let Some(s) = self.0 {
            s.closed();
        }
    }

    /// Counts a message read from a client (a data message in).
    #[inline]
    pub fn received(self, received: &Received) {
        if let (Some(s), Received::Message(m)) = (self.0, received) {
            s.message_in(m.len());
        }
    }

    /// Counts the messages the built-in `echo` answered while reading: in
    /// and out.
    #[inline]
    pub fn echoed(self, echoed: Echoed) {
        if let Some(s) = self.0.filter(|_| echoed.messages > 0) {
            WorkerSlot::add(&s.messages_in, echoed.messages);
            WorkerSlot::add(&s.bytes_in, echoed.bytes);
            WorkerSlot::add(&s.messages_out, echoed.messages);
            WorkerSlot::add(&s.bytes_out, echoed.bytes);
        }
    }

    /// A message of `len` bytes queued to one client, and the compression
    /// it took if any.
    #[inline]
    pub fn sent(self, len: usize, compressed: Option<Compressed>) {
        if let Some(s) = self.0 {
            s.message_out(len);
        }
        if let Some(c) = compressed {
            self.compressed(c);
        }
    }

    /// A message compressed for sending.
    #[inline]
    pub fn compressed(self, c: Compressed) {
        if let Some(s) = self.0 {
            s.compressed(c.raw, c.out);
        }
    }

    /// A broadcast of `len` bytes delivered: messages and bytes out once
    /// per receiver it was queued to, compressions once per compression
    /// made.
    pub fn delivered(self, delivery: &Delivery, len: usize) {
        if let Some(s) = self.0 {
            WorkerSlot::add(&s.messages_out, delivery.queued);
            WorkerSlot::add(&s.bytes_out, delivery.queued * len as u64);
            for c in &delivery.compressed {
                s.compressed(c.raw, c.out);
            }
        }
    }
}
