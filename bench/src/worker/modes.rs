//! What echo, handshake and idle connections do: the start barrier,
//! sending echo requests, checking echoes, and the end of measurement.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{elapsed_ns, Next, Worker};
use crate::args::{Mode, PayloadKind};
use crate::conn::{Conn, ConnError, Phase};
use crate::payload;

impl Worker {
    /// Measurement starts: echo connections fill their window.
    pub(super) fn on_start(&mut self, now: Instant) {
        if self.plan.mode == Mode::Echo {
            self.for_each_conn(now, |w, conn, now| {
                if conn.phase == Phase::Open {
                    w.send_window(conn, now)?;
                }
                Ok(Next::Keep)
            });
        }
    }

    /// Measurement ends: connections drain and close.
    pub(super) fn on_stop(&mut self, now: Instant) {
        self.to_launch.clear();
        let grace = now + self.plan.grace;
        match self.plan.mode {
            Mode::Echo | Mode::Idle => self.for_each_conn(now, move |_, conn, _| {
                match conn.phase {
                    Phase::Open if conn.sent_at.is_empty() => conn.start_close(grace),
                    Phase::Open => conn.deadline = Some(grace),
                    _ => {}
                }
                Ok(Next::Keep)
            }),
            Mode::Broadcast => {
                if self.index == 0 {
                    self.shared
                        .final_sent
                        .store(self.bcast_sent, Ordering::Release);
                    self.shared.wake_all();
                }
            }
            Mode::Handshake => {}
        }
    }

    /// The connection is upgraded.
    pub(super) fn on_open(&mut self, conn: &mut Conn, now: Instant) -> Result<(), ConnError> {
        if self.stopping && self.plan.mode != Mode::Handshake {
            self.mark_ready(conn);
            conn.start_close(now + self.plan.grace);
            return Ok(());
        }
        match self.plan.mode {
            Mode::Echo => {
                conn.deadline = None;
                self.mark_ready(conn);
                if self.started && !self.stopping {
                    self.send_window(conn, now)?;
                }
                Ok(())
            }
            Mode::Broadcast => {
                conn.deadline = None;
                self.mark_ready(conn);
                Ok(())
            }
            Mode::Handshake | Mode::Idle => self.send_echo(conn, now),
        }
    }

    /// Counts the connection for the start barrier.
    pub(super) fn mark_ready(&mut self, conn: &mut Conn) {
        if !conn.ready {
            conn.ready = true;
            let endpoint = conn.id as usize % self.plan.endpoints.len();
            self.result.ready_per_endpoint[endpoint] += 1;
            self.in_setup = self.in_setup.saturating_sub(1);
            self.shared.ready.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Sends echo requests until `window` are in flight.
    pub(super) fn send_window(&mut self, conn: &mut Conn, now: Instant) -> Result<(), ConnError> {
        while conn.sent_at.len() < self.plan.window as usize {
            self.send_echo(conn, now)?;
        }
        Ok(())
    }

    /// Queues the next echo request of `conn`.
    pub(super) fn send_echo(&mut self, conn: &mut Conn, now: Instant) -> Result<(), ConnError> {
        let (id, seq, kind) = (conn.id, conn.send_seq, self.plan.payload);
        self.queue_message(conn, self.plan.size, |b| match kind {
            PayloadKind::Pattern => payload::fill_echo(b, id, seq),
            PayloadKind::Json => payload::fill_json(b, id, seq),
        })?;
        conn.send_seq += 1;
        conn.sent_at.push_back(now);
        self.result.sent += 1;
        Ok(())
    }

    /// A complete data message.
    pub(super) fn on_message(
        &mut self,
        conn: &mut Conn,
        opcode: u8,
        data: &[u8],
    ) -> Result<(), ConnError> {
        if conn.phase == Phase::Closing {
            return Ok(());
        }
        if opcode != self.opcode() {
            return Err(ConnError::WrongOpcode(opcode));
        }
        if self.plan.mode == Mode::Broadcast {
            return self.on_broadcast(conn, data);
        }
        let Some(sent) = conn.sent_at.pop_front() else {
            return Err(ConnError::Unexpected(
                "message received with no request in flight",
            ));
        };
        let seq = conn.recv_seq;
        let (size, id) = (self.plan.size, conn.id);
        let differs = match self.plan.payload {
            PayloadKind::Pattern => payload::check_echo(data, size, id, seq),
            PayloadKind::Json => payload::check_json(data, size, id, seq, &mut self.expect),
        };
        if let Some(at) = differs {
            return Err(ConnError::Mismatch { seq, at });
        }
        conn.recv_seq += 1;
        self.result.echoes += 1;
        let now = Instant::now();
        match self.plan.mode {
            Mode::Echo => {
                self.complete(conn, now, elapsed_ns(sent, now));
                if !self.stopping {
                    self.send_echo(conn, now)?;
                } else if conn.sent_at.is_empty() {
                    conn.start_close(now + self.plan.grace);
                }
            }
            Mode::Idle => {
                conn.deadline = None;
                // Held connections exchange no more data messages: keep no
                // deflate state for them in the bench.
                if let Some(codec) = conn.deflate.as_mut() {
                    codec.release();
                }
                self.complete(conn, now, elapsed_ns(sent, now));
                self.mark_ready(conn);
                if self.stopping {
                    conn.start_close(now + self.plan.grace);
                }
            }
            Mode::Handshake => conn.start_close(now + self.plan.grace),
            Mode::Broadcast => {}
        }
        Ok(())
    }

    /// Counts one completed unit with its latency.
    pub(super) fn complete(&mut self, conn: &mut Conn, now: Instant, latency_ns: u64) {
        conn.completed += 1;
        self.unflushed += 1;
        self.result.latency.record(latency_ns);
        self.result.last_done = Some(now);
    }
}
