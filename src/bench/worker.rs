//! One benchmark thread: a mio event loop driving its share of the
//! connections, with the per-mode behaviour (echo, handshake, idle,
//! broadcast) and the state shared with the other threads.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, ConnError, ErrorKind, Phase};
use super::frame::{self, FrameHead, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};
use super::histogram::Histogram;
use super::{net, payload, Mode, Plan};

/// Token of the waker that interrupts a worker's poll.
pub const WAKE: Token = Token(usize::MAX);
/// How often deadlines are checked and progress is published.
const TICK: Duration = Duration::from_millis(100);
/// Size of the read scratch buffer.
const SCRATCH: usize = 64 * 1024;
/// Error messages kept for the report.
const MAX_SAMPLES: usize = 10;
/// `Shared::final_sent` before the broadcast sender has stopped.
const NOT_FINAL: u64 = u64::MAX;

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
    fn sample(&self, whom: String, message: String) {
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
    fn now_ns(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

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
            plan,
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
            result: WorkerResult::default(),
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
        let mut stream = net::connect(self.plan.target.addr, source).map_err(ConnError::Connect)?;
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(ConnError::Io)?;
        let mut conn = Conn::new(id, stream, now);
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

    /// Measurement starts: echo connections fill their window.
    fn on_start(&mut self, now: Instant) {
        if self.plan.mode == Mode::Echo {
            self.for_each_conn(now, |w, conn, now| {
                if conn.phase == Phase::Open {
                    w.send_window(conn, now);
                }
                Ok(Next::Keep)
            });
        }
    }

    /// Measurement ends: connections drain and close.
    fn on_stop(&mut self, now: Instant) {
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

    /// Broadcast: pumps the sender and, once the total is known, closes
    /// receivers that got everything.
    fn broadcast_housekeeping(&mut self, now: Instant) {
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
    fn pump_sender(&mut self, now: Instant) {
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
                Phase::Connecting | Phase::Upgrading => Err(ConnError::SetupTimeout(conn.phase)),
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
    fn end(&mut self, slot: usize, mut conn: Conn) {
        self.slot_done[slot] += conn.completed;
        // Closing the socket deregisters it too; this just keeps mio tidy.
        let _ = self.poll.registry().deregister(&mut conn.stream);
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
        if conn.phase == Phase::Connecting {
            match net::connect_done(&conn.stream) {
                Ok(true) => {
                    conn.phase = Phase::Upgrading;
                    conn.queue_raw(&self.plan.handshake.request);
                }
                Ok(false) => return Ok(Next::Keep),
                Err(e) => return Err(ConnError::Connect(e)),
            }
        }
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
            Phase::Connecting | Phase::Upgrading => Err(ConnError::HandshakeEof),
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
            match frame::parse_response(buf, &self.plan.handshake.accept) {
                Err(e) => return Err(ConnError::Handshake(e)),
                Ok(None) => return Ok(0),
                Ok(Some(n)) => {
                    pos = n;
                    conn.phase = Phase::Open;
                    self.on_open(conn, Instant::now());
                }
            }
        }
        let max = self.plan.size.max(1 << 20);
        while let Some(head) = frame::parse_head(&buf[pos..], max).map_err(ConnError::Frame)? {
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
                let Some((op, mut data)) = conn.frag.take() else {
                    return Err(ConnError::Unexpected(
                        "continuation frame without a message",
                    ));
                };
                data.extend_from_slice(payload);
                if head.fin {
                    self.on_message(conn, op, &data)
                } else {
                    conn.frag = Some((op, data));
                    Ok(())
                }
            }
            op => {
                if conn.frag.is_some() {
                    return Err(ConnError::Unexpected("new message inside a fragmented one"));
                }
                if head.fin {
                    self.on_message(conn, op, payload)
                } else {
                    conn.frag = Some((op, payload.to_vec()));
                    Ok(())
                }
            }
        }
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

    /// The connection is upgraded.
    fn on_open(&mut self, conn: &mut Conn, now: Instant) {
        if self.stopping && self.plan.mode != Mode::Handshake {
            self.mark_ready(conn);
            conn.start_close(now + self.plan.grace);
            return;
        }
        match self.plan.mode {
            Mode::Echo => {
                conn.deadline = None;
                self.mark_ready(conn);
                if self.started && !self.stopping {
                    self.send_window(conn, now);
                }
            }
            Mode::Broadcast => {
                conn.deadline = None;
                self.mark_ready(conn);
            }
            Mode::Handshake | Mode::Idle => self.send_echo(conn, now),
        }
    }

    /// Counts the connection for the start barrier.
    fn mark_ready(&mut self, conn: &mut Conn) {
        if !conn.ready {
            conn.ready = true;
            self.in_setup = self.in_setup.saturating_sub(1);
            self.shared.ready.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Sends echo requests until `window` are in flight.
    fn send_window(&mut self, conn: &mut Conn, now: Instant) {
        while conn.sent_at.len() < self.plan.window as usize {
            self.send_echo(conn, now);
        }
    }

    /// Queues the next echo request of `conn`.
    fn send_echo(&mut self, conn: &mut Conn, now: Instant) {
        let (id, seq) = (conn.id, conn.send_seq);
        conn.queue_frame(self.opcode(), self.plan.size, |b| {
            payload::fill_echo(b, id, seq)
        });
        conn.send_seq += 1;
        conn.sent_at.push_back(now);
        self.result.sent += 1;
    }

    /// A complete data message.
    fn on_message(&mut self, conn: &mut Conn, opcode: u8, data: &[u8]) -> Result<(), ConnError> {
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
        if let Some(at) = payload::check_echo(data, self.plan.size, conn.id, seq) {
            return Err(ConnError::Mismatch { seq, at });
        }
        conn.recv_seq += 1;
        self.result.echoes += 1;
        let now = Instant::now();
        match self.plan.mode {
            Mode::Echo => {
                self.complete(conn, now, elapsed_ns(sent, now));
                if !self.stopping {
                    self.send_echo(conn, now);
                } else if conn.sent_at.is_empty() {
                    conn.start_close(now + self.plan.grace);
                }
            }
            Mode::Idle => {
                conn.deadline = None;
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
    fn complete(&mut self, conn: &mut Conn, now: Instant, latency_ns: u64) {
        conn.completed += 1;
        self.unflushed += 1;
        self.result.latency.record(latency_ns);
        self.result.last_done = Some(now);
    }

    /// A broadcast message arrived at `conn`.
    fn on_broadcast(&mut self, conn: &mut Conn, data: &[u8]) -> Result<(), ConnError> {
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
    fn count_sequence_error(&mut self, conn: &Conn, got: u64) {
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
    fn record_delivery(&mut self, seq: u64, delay: u64) {
        let Ok(i) = usize::try_from(seq) else { return };
        if i >= self.result.bcast.len() {
            self.result.bcast.resize(i + 1, (0, 0));
        }
        let entry = &mut self.result.bcast[i];
        entry.0 += 1;
        entry.1 = entry.1.max(delay);
    }
}

/// Nanoseconds from `from` to `to`.
fn elapsed_ns(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}
