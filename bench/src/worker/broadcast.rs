//! Broadcast mode: the sender (connection 0, on worker 0) with its flow
//! control, the receivers' checks, and the per-message delivery table.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Next, Worker};
use crate::conn::{Conn, ConnError, ErrorKind, Phase};
use crate::payload;
use crate::shared::NOT_FINAL;

impl Worker {
    /// Broadcast: pumps the sender and, once the total is known, closes
    /// receivers that got everything.
    pub(super) fn broadcast_housekeeping(&mut self, now: Instant) {
        if self.index == 0 && self.started && !self.stopping {
            self.pump_sender(now);
        }
        if self.stopping && self.final_sent.is_none() {
            let total = self.shared.final_sent.load(Ordering::Acquire);
            if total != NOT_FINAL {
                self.final_sent = Some(total);
                let grace = now + self.plan.grace;
                let sender_gets_none = self.plan.exclude_sender;
                self.for_each_conn(now, move |_, conn, _| {
                    if conn.phase == Phase::Open {
                        if conn.recv_seq >= total || (sender_gets_none && conn.id == 0) {
                            conn.start_close(grace);
                        } else {
                            conn.deadline = Some(grace);
                        }
                    }
                    Ok(Next::Keep)
                });
            }
        }
    }

    /// Broadcast sender: keeps `window` messages not yet delivered to all.
    pub(super) fn pump_sender(&mut self, now: Instant) {
        let Some(mut conn) = self.slots.first_mut().and_then(Option::take) else {
            return;
        };
        let receivers = self.shared.receivers.load(Ordering::Acquire).max(1);
        let delivered = self.shared.deliveries.load(Ordering::Acquire) / receivers;
        let mut allowed = delivered + u64::from(self.plan.window);
        if now.duration_since(self.last_send) > Duration::from_secs(1) {
            // Some receiver is gone or stuck: keep going rather than stall.
            allowed = allowed.max(self.bcast_sent + 1);
        }
        let (op, size) = (self.opcode(), self.plan.size);
        while conn.phase == Phase::Open && self.bcast_sent < allowed {
            let (seq, stamp) = (self.bcast_sent, self.shared.now_ns(Instant::now()));
            conn.queue_frame(op, size, |b| payload::fill_stamp(b, seq, stamp));
            self.bcast_sent += 1;
            self.result.sent += 1;
            self.last_send = now;
            self.shared
                .bcast_sent
                .store(self.bcast_sent, Ordering::Release);
        }
        let outcome = conn.flush().map(|()| Next::Keep).map_err(ConnError::Io);
        self.settle(0, conn, outcome, now);
    }

    /// A broadcast message arrived at `conn`.
    pub(super) fn on_broadcast(&mut self, conn: &mut Conn, data: &[u8]) -> Result<(), ConnError> {
        if self.plan.exclude_sender && conn.id == 0 {
            return Err(ConnError::Unexpected(
                "the sender received a broadcast although --exclude-sender was given",
            ));
        }
        let published = self.shared.bcast_sent.load(Ordering::Acquire);
        let (seq, sent_ns) = match payload::check_stamp(data, self.plan.size) {
            Some((seq, ns)) if seq < published => (seq, ns),
            _ => {
                return Err(ConnError::Mismatch {
                    seq: conn.recv_seq,
                    at: 0,
                })
            }
        };
        if seq != conn.recv_seq {
            self.count_sequence_error(conn, seq);
        }
        conn.recv_seq = seq + 1;
        let now = Instant::now();
        let delay = self.shared.now_ns(now).saturating_sub(sent_ns);
        self.record_delivery(seq, delay);
        self.result.echoes += 1;
        self.complete(conn, now, delay);
        let receivers = self.shared.receivers.load(Ordering::Acquire).max(1);
        let before = self.shared.deliveries.fetch_add(1, Ordering::AcqRel);
        if (before + 1) / receivers > before / receivers {
            // A message reached everyone: the sender may send the next.
            let _ = self.shared.wakers[0].wake();
        }
        if self.final_sent.is_some_and(|t| conn.recv_seq >= t) {
            conn.start_close(now + self.plan.grace);
        }
        Ok(())
    }

    /// Counts a sequence gap at a broadcast receiver (not fatal).
    pub(super) fn count_sequence_error(&mut self, conn: &Conn, got: u64) {
        let missing = got.saturating_sub(conn.recv_seq).max(1);
        let index = ErrorKind::ALL
            .iter()
            .position(|k| *k == ErrorKind::Sequence)
            .unwrap_or(0);
        self.result.errors[index] += missing;
        self.shared.errors.fetch_add(missing, Ordering::Relaxed);
        self.shared.sample(
            format!("connection {}", conn.id),
            format!("expected broadcast message {}, got {got}", conn.recv_seq),
        );
    }

    /// Notes that message `seq` reached one more receiver after `delay` ns.
    pub(super) fn record_delivery(&mut self, seq: u64, delay: u64) {
        let Ok(i) = usize::try_from(seq) else { return };
        if i >= self.result.bcast.len() {
            self.result.bcast.resize(i + 1, (0, 0));
        }
        let entry = &mut self.result.bcast[i];
        entry.0 += 1;
        entry.1 = entry.1.max(delay);
    }
}
