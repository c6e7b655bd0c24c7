//! One benchmark thread: a mio event loop driving its share of the
//! connections. This module owns the loop, connection life cycles
//! (launch, connect, upgrade, frames, deadlines, failures); `modes` owns
//! what echo, handshake and idle connections do with messages, and
//! `broadcast` the sender and receivers of broadcast mode.

mod broadcast;
mod modes;

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::args::Mode;
use super::conn::{Conn, ConnError, ErrorKind, Phase};
use super::deflate::{self, Codec, Spare};
use super::frame::{
    self, FrameHead, ResponseError, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
};
use super::histogram::Histogram;
use super::net;
use super::plan::Plan;
use super::shared::Shared;
use super::stream::{Stream, TlsStep};

/// Token of the waker that interrupts a worker's poll.
pub const WAKE: Token = Token(usize::MAX);
/// How often deadlines are checked and progress is published.
const TICK: Duration = Duration::from_millis(100);
/// Size of the read scratch buffer.
const SCRATCH: usize = 64 * 1024;
/// What one worker measured.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// Latencies (ns): echo round trips, handshake cycles or broadcast
    /// delivery delays.
    pub latency: Histogram,
    /// Echoes verified (broadcast: messages received).
    pub echoes: u64,
    /// Echo requests (or broadcast messages) sent.
    pub sent: u64,
    /// Handshake cycles completed.
    pub handshakes: u64,
    /// Units completed per connection: `(connection index, count)`.
    pub per_conn: Vec<(u32, u64)>,
    /// Error counts, indexed like [`ErrorKind::ALL`].
    pub errors: [u64; ErrorKind::ALL.len()],
    /// When the last unit completed.
    pub last_done: Option<Instant>,
    /// Broadcast: per sequence number, receivers and the largest delay.
    pub bcast: Vec<(u64, u64)>,
    /// Bytes written to sockets, all connections together.
    pub wire_out: u64,
    /// Bytes read from sockets, all connections together.
    pub wire_in: u64,
    /// Connections that became ready, per endpoint (URL).
    pub ready_per_endpoint: Vec<u64>,
    /// The first permessage-deflate answer accepted, canonical form.
    pub deflate_answer: Option<String>,
}

/// What happens to a connection after an event.
enum Next {
    /// Keep it.
    Keep,
    /// Its close handshake completed.
    Done,
}

/// One event-loop thread.
pub struct Worker {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    /// Index of this worker (worker 0 owns the broadcast sender).
    index: usize,
    /// Connection index of each slot.
    ids: Vec<u32>,
    /// The live connection of each slot (the slot is the mio token).
    slots: Vec<Option<Conn>>,
    /// Units completed by earlier connections of each slot.
    slot_done: Vec<u64>,
    /// Slots waiting to be (re)connected.
    to_launch: Vec<usize>,
    /// Handshake mode: slots whose connection failed, retried next tick.
    retry: Vec<usize>,
    /// Launched and not yet ready (start-barrier modes).
    in_setup: usize,
    /// Live connections.
    live: usize,
    scratch: Vec<u8>,
    started: bool,
    stopping: bool,
    /// Broadcast: total sent, once known.
    final_sent: Option<u64>,
    /// Broadcast: messages this (sender) worker sent.
    bcast_sent: u64,
    /// Broadcast: when the sender last sent.
    last_send: Instant,
    /// Completed units not yet published to `Shared::completed`.
    unflushed: u64,
    next_tick: Instant,
    /// Deflate state of the directions without context takeover.
    spare: Spare,
    /// A message before compression.
    plain: Vec<u8>,
    /// A compressed message (sent or received).
    packed: Vec<u8>,
    /// A received message after inflation.
    inflated: Vec<u8>,
    /// The expected payload, regenerated to check a JSON echo.
    expect: Vec<u8>,
    result: WorkerResult,
}

impl Worker {
    /// A worker for connection indexes `ids`, polling with `poll`.
    pub fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        poll: Poll,
        index: usize,
        ids: Vec<u32>,
    ) -> Self {
        let n = ids.len();
        let now = Instant::now();
        Worker {
            shared,
            poll,
            index,
            slots: (0..n).map(|_| None).collect(),
            slot_done: vec![0; n],
            to_launch: (0..n).rev().collect(),
            retry: Vec::new(),
            ids,
            in_setup: 0,
            live: 0,
            scratch: vec![0; SCRATCH],
            started: false,
            stopping: false,
            final_sent: None,
            bcast_sent: 0,
            last_send: now,
            unflushed: 0,
            next_tick: now,
            spare: Spare::default(),
            plain: Vec::new(),
            packed: Vec::new(),
            inflated: Vec::new(),
            expect: Vec::new(),
            result: WorkerResult {
                ready_per_endpoint: vec![0; plan.endpoints.len()],
                ..WorkerResult::default()
            },
            plan,
        }
    }

    /// Runs the event loop until the run is over; returns the measurements.
    pub fn run(mut self) -> WorkerResult {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.shared.sample(
                        format!("worker {}", self.index),
                        format!("poll failed: {e}"),
                    );
                    break;
                }
            }
            for event in events.iter() {
                if event.token() != WAKE {
                    // After EOF or an error, read until the socket says so.
                    let drain = event.is_read_closed() || event.is_error();
                    self.on_event(event.token().0, drain);
                }
            }
            self.housekeeping();
            if self.stopping && self.live == 0 {
                break;
            }
        }
        self.finish()
    }

    /// Collects per-connection counts and returns the result.
    fn finish(mut self) -> WorkerResult {
        self.publish_progress();
        for (slot, conn) in self.slots.iter().enumerate() {
            if let Some(c) = conn {
                self.slot_done[slot] += c.completed;
                self.result.wire_out += c.wire_out;
                self.result.wire_in += c.wire_in;
            }
        }
        self.result.per_conn = self
            .ids
            .iter()
            .copied()
            .zip(self.slot_done.iter().copied())
            .collect();
        self.result
    }

    /// Whether this mode waits for all connections before measuring.
    fn has_barrier(&self) -> bool {
        self.plan.mode != Mode::Handshake
    }

    /// The data opcode of this run.
    fn opcode(&self) -> u8 {
        if self.plan.text {
            OP_TEXT
        } else {
            OP_BINARY
        }
    }

    // ----- loop housekeeping -------------------------------------------

    /// Start/stop transitions, the broadcast sender, launches, deadlines.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if !self.started && self.shared.start.load(Ordering::Acquire) {
            self.started = true;
            self.on_start(now);
        }
        if !self.stopping && self.shared.stop.load(Ordering::Acquire) {
            self.stopping = true;
            self.on_stop(now);
        }
        if self.plan.mode == Mode::Broadcast {
            self.broadcast_housekeeping(now);
        }
        self.launch(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.scan_deadlines(now);
            self.publish_progress();
            if !self.stopping {
                // Failed slots are retried once per tick (a natural backoff).
                self.to_launch.append(&mut self.retry);
            }
        }
    }

    /// Publishes completed units for the progress line.
    fn publish_progress(&mut self) {
        if self.unflushed > 0 {
            self.shared
                .completed
                .fetch_add(self.unflushed, Ordering::Relaxed);
            self.unflushed = 0;
        }
    }

    /// Starts connects while under the setup concurrency limit.
    fn launch(&mut self, now: Instant) {
        if self.stopping || (!self.has_barrier() && !self.started) {
            return;
        }
        while self.in_setup < self.plan.max_pending || !self.has_barrier() {
            let Some(slot) = self.to_launch.pop() else {
                break;
            };
            let id = self.ids[slot];
            match self.open(slot, now) {
                Ok(conn) => {
                    self.slots[slot] = Some(conn);
                    self.live += 1;
                    if self.has_barrier() {
                        self.in_setup += 1;
                    }
                }
                Err(e) => {
                    self.count_error(&e, id);
                    if self.has_barrier() {
                        self.shared.failed.fetch_add(1, Ordering::AcqRel);
                    } else {
                        self.retry.push(slot);
                    }
                }
            }
        }
    }

    /// Starts the connect of `slot`.
    fn open(&mut self, slot: usize, now: Instant) -> Result<Conn, ConnError> {
        let id = self.ids[slot];
        let source = net::source_addr(id, self.plan.source_addrs);
        let addr = self.plan.endpoint(id).target.addr;
        let mut stream = net::connect(addr, source).map_err(ConnError::Connect)?;
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(ConnError::Io)?;
        let mut conn = Conn::new(id, Stream::Tcp(stream), now);
        conn.deadline = Some(now + self.plan.connect_timeout);
        // Handshake mode: sequence numbers continue over the slot's cycles.
        conn.send_seq = self.slot_done[slot];
        conn.recv_seq = self.slot_done[slot];
        Ok(conn)
    }

    /// Applies `f` to every live connection, handling its outcome.
    fn for_each_conn(
        &mut self,
        now: Instant,
        f: impl Fn(&mut Self, &mut Conn, Instant) -> Result<Next, ConnError>,
    ) {
        for slot in 0..self.slots.len() {
            let Some(mut conn) = self.slots[slot].take() else {
                continue;
            };
            let outcome = f(self, &mut conn, now).and_then(|next| {
                conn.flush().map_err(ConnError::Io)?;
                Ok(next)
            });
            self.settle(slot, conn, outcome, now);
        }
    }

    /// Fails connections whose deadline passed; finishes lingering closes.
    fn scan_deadlines(&mut self, now: Instant) {
        let total = self.final_sent;
        for slot in 0..self.slots.len() {
            let expired =
                matches!(&self.slots[slot], Some(c) if c.deadline.is_some_and(|d| d <= now));
            if !expired {
                continue;
            }
            let Some(conn) = self.slots[slot].take() else {
                continue;
            };
            let outcome = match conn.phase {
                Phase::Connecting | Phase::TlsHandshake | Phase::Upgrading => {
                    Err(ConnError::SetupTimeout(conn.phase))
                }
                Phase::Closing if conn.got_close => Ok(Next::Done),
                Phase::Closing => Err(ConnError::CloseTimeout),
                Phase::Open => {
                    let lost = match total {
                        Some(t) => t.saturating_sub(conn.recv_seq),
                        None => conn.sent_at.len() as u64,
                    };
                    Err(ConnError::Timeout { lost })
                }
            };
            self.settle(slot, conn, outcome, now);
        }
    }

    // ----- connection events -------------------------------------------

    /// Handles a readiness event on `slot`.
    fn on_event(&mut self, slot: usize, drain: bool) {
        let Some(mut conn) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let outcome = self.drive(&mut conn, drain);
        self.settle(slot, conn, outcome, Instant::now());
    }

    /// Puts a connection back, or ends it after success or failure.
    fn settle(
        &mut self,
        slot: usize,
        mut conn: Conn,
        outcome: Result<Next, ConnError>,
        now: Instant,
    ) {
        match outcome {
            Ok(Next::Keep) => self.slots[slot] = Some(conn),
            Ok(Next::Done) => {
                if self.plan.mode == Mode::Handshake {
                    conn.completed += 1;
                    self.result.handshakes += 1;
                    self.unflushed += 1;
                    self.result.latency.record(elapsed_ns(conn.started, now));
                    self.result.last_done = Some(now);
                }
                self.end(slot, conn);
                if self.plan.mode == Mode::Handshake && !self.stopping {
                    self.to_launch.push(slot);
                }
            }
            Err(e) => {
                self.count_error(&e, conn.id);
                conn.abort(&e);
                if self.has_barrier() && !conn.ready {
                    self.in_setup = self.in_setup.saturating_sub(1);
                    self.shared.failed.fetch_add(1, Ordering::AcqRel);
                }
                if self.plan.mode == Mode::Broadcast && conn.ready {
                    // The sender should not wait for this receiver any more.
                    let _ = self.shared.receivers.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |r| Some(r.saturating_sub(1).max(1)),
                    );
                }
                self.end(slot, conn);
                if self.plan.mode == Mode::Handshake && !self.stopping {
                    self.retry.push(slot);
                }
            }
        }
    }

    /// Forgets a connection, keeping its count.
    fn end(&mut self, slot: usize, conn: Conn) {
        self.slot_done[slot] += conn.completed;
        self.result.wire_out += conn.wire_out;
        self.result.wire_in += conn.wire_in;
        // Closing the socket deregisters it too; this just keeps mio tidy.
        let fd = conn.stream.as_raw_fd();
        if fd >= 0 {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.live -= 1;
    }

    /// Counts an error and keeps its message.
    fn count_error(&mut self, e: &ConnError, id: u32) {
        let kind = e.kind();
        let index = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.result.errors[index] += e.weight();
        self.shared.errors.fetch_add(e.weight(), Ordering::Relaxed);
        self.shared
            .sample(format!("connection {id}"), e.to_string());
    }

    /// Progresses a connection after a readiness event.
    fn drive(&mut self, conn: &mut Conn, drain: bool) -> Result<Next, ConnError> {
        let plan = Arc::clone(&self.plan);
        let endpoint = plan.endpoint(conn.id);
        if conn.phase == Phase::Connecting {
            let Some(tcp) = conn.stream.tcp() else {
                return Err(ConnError::Eof);
            };
            match net::connect_done(tcp) {
                Ok(true) if endpoint.tls.is_some() => conn.phase = Phase::TlsHandshake,
                Ok(true) => {
                    conn.phase = Phase::Upgrading;
                    conn.queue_raw(&endpoint.handshake.request);
                }
                Ok(false) => return Ok(Next::Keep),
                Err(e) => return Err(ConnError::Connect(e)),
            }
        }
        if conn.phase == Phase::TlsHandshake {
            let Some(tls) = &endpoint.tls else {
                return Err(ConnError::Unexpected("TLS handshake without TLS"));
            };
            match conn.stream.tls_step(tls).map_err(ConnError::Tls)? {
                TlsStep::Pending => return Ok(Next::Keep),
                TlsStep::Done => {
                    conn.phase = Phase::Upgrading;
                    conn.queue_raw(&endpoint.handshake.request);
                }
            }
        }
        // TLS may hold decrypted bytes back that raise no new edge.
        let drain = drain || conn.stream.buffers_reads();
        if let Next::Done = self.read_all(conn, drain)? {
            return Ok(Next::Done);
        }
        conn.flush().map_err(ConnError::Io)?;
        Ok(Next::Keep)
    }

    /// Reads until the socket is drained, handling what arrives.
    ///
    /// A short read of a TCP socket means its receive queue was emptied,
    /// and new data raises a new edge, so the loop stops there and saves
    /// the `read` that would return `WouldBlock` (one syscall per message
    /// in echo mode), unless `drain` asks to read until EOF or an error.
    fn read_all(&mut self, conn: &mut Conn, drain: bool) -> Result<Next, ConnError> {
        loop {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.on_eof(conn),
                Ok(n) => {
                    conn.wire_in += n as u64;
                    conn.rbuf.extend_from_slice(&self.scratch[..n]);
                    self.parse(conn)?;
                    if n < self.scratch.len() && !drain {
                        return Ok(Next::Keep);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Keep),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if conn.phase == Phase::Closing && conn.got_close => return Ok(Next::Done),
                Err(_) if conn.phase == Phase::Upgrading => return Err(ConnError::HandshakeEof),
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// The server closed the TCP connection.
    fn on_eof(&mut self, conn: &mut Conn) -> Result<Next, ConnError> {
        match conn.phase {
            Phase::Closing if conn.got_close => Ok(Next::Done),
            Phase::Connecting | Phase::TlsHandshake | Phase::Upgrading => {
                Err(ConnError::HandshakeEof)
            }
            _ => Err(ConnError::Eof),
        }
    }

    /// Parses what `conn.rbuf` holds.
    fn parse(&mut self, conn: &mut Conn) -> Result<(), ConnError> {
        let mut buf = std::mem::take(&mut conn.rbuf);
        let used = self.parse_buf(conn, &buf)?;
        buf.drain(..used);
        conn.rbuf = buf;
        Ok(())
    }

    /// Handles the handshake response and complete frames in `buf`;
    /// returns how many bytes were consumed.
    fn parse_buf(&mut self, conn: &mut Conn, buf: &[u8]) -> Result<usize, ConnError> {
        let mut pos = 0;
        if conn.phase == Phase::Upgrading {
            let accept = &self.plan.endpoint(conn.id).handshake.accept;
            match frame::parse_response(buf, accept) {
                Err(e) => return Err(ConnError::Handshake(e)),
                Ok(None) => return Ok(0),
                Ok(Some(response)) => {
                    pos = response.len;
                    conn.deflate = self.negotiate(&response.extensions)?;
                    conn.phase = Phase::Open;
                    self.on_open(conn, Instant::now())?;
                }
            }
        }
        let max = self.plan.size.max(1 << 20);
        let deflate = conn.deflate.is_some();
        while let Some(head) =
            frame::parse_head(&buf[pos..], max, deflate).map_err(ConnError::Frame)?
        {
            if buf.len() - pos < head.total_len() {
                break;
            }
            let payload = &buf[pos + head.header_len..pos + head.total_len()];
            pos += head.total_len();
            self.on_frame(conn, head, payload)?;
        }
        Ok(pos)
    }

    /// Handles one complete frame.
    fn on_frame(
        &mut self,
        conn: &mut Conn,
        head: FrameHead,
        payload: &[u8],
    ) -> Result<(), ConnError> {
        match head.opcode {
            OP_PING => {
                conn.queue_frame(OP_PONG, payload.len(), |b| b.copy_from_slice(payload));
                Ok(())
            }
            OP_PONG => Ok(()),
            OP_CLOSE => self.on_close_frame(conn, payload),
            OP_CONT => {
                let Some((op, compressed, mut data)) = conn.frag.take() else {
                    return Err(ConnError::Unexpected(
                        "continuation frame without a message",
                    ));
                };
                data.extend_from_slice(payload);
                if head.fin {
                    self.on_data(conn, op, compressed, &data)
                } else {
                    conn.frag = Some((op, compressed, data));
                    Ok(())
                }
            }
            op => {
                if conn.frag.is_some() {
                    return Err(ConnError::Unexpected("new message inside a fragmented one"));
                }
                if head.fin {
                    self.on_data(conn, op, head.rsv1, payload)
                } else {
                    conn.frag = Some((op, head.rsv1, payload.to_vec()));
                    Ok(())
                }
            }
        }
    }

    /// A complete data message as received: inflates it if compressed.
    fn on_data(
        &mut self,
        conn: &mut Conn,
        opcode: u8,
        compressed: bool,
        data: &[u8],
    ) -> Result<(), ConnError> {
        if !compressed {
            return self.on_message(conn, opcode, data);
        }
        let Some(codec) = conn.deflate.as_mut() else {
            return Err(ConnError::Unexpected(
                "compressed message without permessage-deflate",
            ));
        };
        let mut inflated = std::mem::take(&mut self.inflated);
        let limit = self.plan.size.max(1 << 20);
        let result = codec
            .inflate(&mut self.spare, data, limit, &mut inflated)
            .map_err(ConnError::Deflate)
            .and_then(|()| self.on_message(conn, opcode, &inflated));
        self.inflated = inflated;
        result
    }

    /// Checks the server's `Sec-WebSocket-Extensions` answer against what
    /// was offered; returns the connection's codec if deflate was agreed.
    fn negotiate(&mut self, answer: &[String]) -> Result<Option<Codec>, ConnError> {
        let refuse = |e: ResponseError| Err(ConnError::Handshake(e));
        if !self.plan.deflate {
            return match answer.iter().find(|v| !v.trim().is_empty()) {
                Some(v) => refuse(ResponseError::Extension(format!(
                    "server accepted extension {v:?}, none was offered"
                ))),
                None => Ok(None),
            };
        }
        match deflate::parse_answer(answer) {
            Err(e) => refuse(ResponseError::Extension(e.to_string())),
            Ok(None) => refuse(ResponseError::DeflateDeclined),
            Ok(Some(params)) => {
                if self.result.deflate_answer.is_none() {
                    self.result.deflate_answer = Some(params.to_string());
                }
                let single = matches!(self.plan.mode, Mode::Idle | Mode::Handshake);
                Ok(Some(Codec::new(params, single)))
            }
        }
    }

    /// Queues one data message of `len` bytes written by `fill`,
    /// compressed when the connection negotiated permessage-deflate.
    fn queue_message(
        &mut self,
        conn: &mut Conn,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), ConnError> {
        let opcode = self.opcode();
        let Some(codec) = conn.deflate.as_mut() else {
            conn.queue_frame(opcode, len, fill);
            return Ok(());
        };
        self.plain.clear();
        self.plain.resize(len, 0);
        fill(&mut self.plain);
        codec
            .compress(&mut self.spare, &self.plain, &mut self.packed)
            .map_err(ConnError::Deflate)?;
        conn.queue_compressed(opcode, &self.packed);
        Ok(())
    }

    /// A close frame from the server.
    fn on_close_frame(&mut self, conn: &mut Conn, payload: &[u8]) -> Result<(), ConnError> {
        if conn.phase == Phase::Closing {
            conn.got_close = true;
            // Wait briefly for the server to close the TCP connection.
            conn.deadline = Some(Instant::now() + Duration::from_secs(1));
            return Ok(());
        }
        let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        Err(ConnError::ServerClose(code))
    }
}

/// Nanoseconds from `from` to `to`.
fn elapsed_ns(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}
