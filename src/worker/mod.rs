//! A worker process: one single-threaded `mio` event loop that accepts
//! connections from the shared listening socket, runs their handshakes,
//! and drives their WebSockets through the route handlers.
//!
//! This module is the loop: it owns the connection table, the accept
//! gate, the timer heap and the worker's mode, hands each event to the
//! connection it is for and acts on the outcome the connection returns
//! (keep it, drive it again after the batch, remove it). Everything else
//! is below it and knows nothing of it: a connection's life and its
//! deadlines (`conn`), its upgrade (`upgrade`), the open WebSocket
//! (`session`), the route handlers and the actions they ask for
//! (`handlers`), broadcasts (`broadcast`), the programs of `exec` routes
//! (`programs`), the worker's mode and signals (`mode`) and the poll
//! tokens (`tokens`). Nothing is shared with other workers except the
//! listening socket and the relay link to the master.

mod accept;
mod access;
mod admit;
mod blocked;
mod broadcast;
mod children;
mod conn;
mod counters;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handlers;
mod mode;
mod programs;
mod rooms;
mod session;
mod slab;
mod socket;
mod spare;
mod spec;
mod stream;
pub(crate) mod timers;
mod tls;
mod tokens;
mod turn;
mod upgrade;

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::app::App;
use crate::config::Config;
use crate::deflate::MessageError;
use crate::handler::{Action, ConnId, Scope};
use crate::message::{CloseCode, Message};
use crate::relay::{Delivered, RelayLink, RoomKey};
use crate::signals::SignalPipe;
use accept::{Accepted, Gate};
pub(crate) use admit::Limits;
use broadcast::{target, Broadcast, Broadcasts};
use children::Program;
use conn::{Conn, Deadlines, Ending, Outcome, State, Upgraded, CLOSE_GRACE};
use counters::Counters;
use handlers::Handlers;
use mode::{Expired, Mode, Order};
use programs::Programs;
use session::{scratch, Batch, Read, Received, Session, READ_BUDGET};
use slab::Slab;
pub(crate) use spec::WorkerSpec;
use timers::Timers;
use tokens::{slot_of, token, Part, CHILDREN, LISTENER, RELAY, SIGNALS};
use upgrade::Upgrading;

/// A timer entry: a connection slot and serial, or the worker itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// A connection's deadline: its slot and serial.
    Conn(usize, u32),
    /// The deadline of the worker's mode (retiring, draining).
    Mode,
    /// The end of the back-off after an accept error.
    Resume,
    /// The next message of a delayed broadcast series.
    Delayed(u64),
    /// An orphaned program's next signal: 1 SIGTERM, 2 SIGKILL.
    Kill(i32, u8),
}

/// One worker process's state.
pub(crate) struct Worker {
    /// The worker's slot number (for the log).
    index: usize,
    /// Its pid: with a connection's serial, the connection's id.
    pid: u32,
    /// The `mio` poller; tokens in `tokens.rs`.
    poll: Poll,
    /// The shared listening socket.
    gate: Gate,
    /// The TLS acceptor, when `[tls]` is configured.
    tls: Option<crate::tls::Acceptor>,
    /// The per-address limits, when `[limits]` sets any.
    limits: Option<Limits>,
    /// The connection table.
    conns: Slab<Conn>,
    /// Every deadline of the worker (see `TimerKey`).
    timers: Timers<TimerKey>,
    /// The connections' time limits.
    deadlines: Deadlines,
    /// SIGTERM, SIGINT, SIGQUIT, SIGUSR1.
    signals: SignalPipe,
    /// The configuration generation.
    config: Rc<Config>,
    /// The routes.
    app: Rc<App>,
    /// One handler per route.
    handlers: Handlers,
    /// Serving, retiring or draining.
    mode: Mode,
    /// Rooms, the relay link, delayed series, end-of-turn flushes.
    broadcasts: Broadcasts,
    /// Connections whose reads were unpaused outside their own event.
    resume: Vec<usize>,
    /// The connections' read buffer.
    scratch: Box<[u8]>,
    /// Messages of one read, reused from read to read (its vector is
    /// taken out while they are dispatched).
    batch: Batch,
    /// Accepting resumed; accept between event batches.
    accept_pending: bool,
    /// The loop's clock, read once per poll.
    now: Instant,
    /// Shared counters (`stats.rs`); `STATS:` comments mark the call sites.
    stats: Counters,
    /// The programs of `exec` connections.
    programs: Programs,
}

/// Runs a worker until it has drained; returns the exit status.
pub(crate) fn run(spec: WorkerSpec) -> i32 {
    let index = spec.index;
    match Worker::new(spec).and_then(|mut w| w.run()) {
        Ok(()) => 0,
        Err(e) => {
            error!("worker {index}: {e}");
            3
        }
    }
}

impl Worker {
    /// Sets the worker up in the forked child: its poller, signal pipes,
    /// accept gate, relay link and one handler per route.
    fn new(spec: WorkerSpec) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let signals = SignalPipe::new(crate::signals::WORKER_SIGNALS)?;
        signals.register(poll.registry(), SIGNALS)?;
        // The master blocked these across the fork; our handlers are in
        // place now, so whatever arrived meanwhile is delivered to them.
        crate::signals::unblock(crate::signals::WORKER_SIGNALS);
        let local = spec.listener.local_addr()?;
        let server = &spec.config.server;
        let tls = spec.tls.is_some();
        let programs = Programs::new(
            &spec.app,
            poll.registry(),
            local,
            tls,
            server.max_send_buffer,
            Counters::new(spec.stats),
        )?;
        let gate = Gate::new(spec.listener, poll.registry(), LISTENER)?;
        let relay = match spec.relay {
            Some(sock) => {
                let mut link = RelayLink::new(sock)?;
                link.register(poll.registry(), RELAY)?;
                Some(link)
            }
            None => None,
        };
        Ok(Worker {
            index: spec.index,
            pid: std::process::id(),
            poll,
            gate,
            tls: spec.tls,
            limits: spec.limits,
            conns: Slab::default(),
            timers: Timers::default(),
            deadlines: Deadlines::new(server),
            signals,
            handlers: Handlers::new(spec.app.routes.iter().map(|(_, r)| (r.factory)()).collect()),
            config: spec.config,
            app: spec.app,
            mode: Mode::Serving,
            broadcasts: Broadcasts::new(relay),
            resume: Vec::new(),
            scratch: scratch(),
            batch: Batch::default(),
            accept_pending: false,
            now: Instant::now(),
            stats: Counters::new(spec.stats),
            programs,
        })
    }

    /// The event loop: poll, hand each event to what it is for, fire the
    /// due timers, do the deferred work; until the worker is done.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.now = Instant::now();
            let idle =
                self.resume.is_empty() && !self.accept_pending && !self.broadcasts.flush_pending();
            let timeout = if idle {
                self.timers.timeout(self.now)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.on_signals(),
                    RELAY => self.on_relay(event.is_readable(), event.is_writable()),
                    CHILDREN => {
                        let registry = self.poll.registry();
                        for (slot, outcome) in
                            self.programs.reap(registry, &mut self.conns, self.now)
                        {
                            self.act(slot, outcome);
                        }
                    }
                    Token(t) => self.on_conn_event(t, event),
                }
            }
            self.fire_timers();
            self.run_deferred();
            if let Some(n) = blocked::take_changed() {
                // STATS: connections whose socket is full (on transitions)
                self.stats.send_blocked(n);
            }
            if self.finished() {
                info!("worker {} pid {} done", self.index, self.pid);
                return Ok(());
            }
        }
    }

    /// An event for a connection's socket or for a pipe of its program.
    fn on_conn_event(&mut self, t: usize, event: &Event) {
        let (slot, part) = slot_of(t);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Part::Pipe(pipe) = part {
            let outcome = self
                .programs
                .on_pipe(self.poll.registry(), conn, pipe, self.now);
            return self.act(slot, outcome);
        }
        let short_read_ends = !(event.is_read_closed() || event.is_error());
        if !short_read_ends && conn.input_paused() {
            // Not being read, it would never see the end, and what the
            // client sent would never reach the program: the connection
            // goes now, and its program as any whose client left.
            debug!("an exec client hung up while its program's stdin was full");
            return self.remove(slot);
        }
        // A write-only edge says nothing new arrived: reads stay where
        // the last short read left them.
        if event.is_readable() || !short_read_ends {
            conn.arm(short_read_ends);
        }
        self.drive(slot)
    }

    /// Work queued while handling events, done between event batches so
    /// that nothing re-enters a connection that is being handled: reads
    /// resumed after a pause or an exhausted read budget (each slot once
    /// per turn, so one busy peer cannot hold the loop), accepts after a
    /// slot freed, and broadcasts from `on_close`.
    fn run_deferred(&mut self) {
        while let Some(b) = self.broadcasts.take_pending() {
            self.deliver(&b);
        }
        self.flush_queued();
        for slot in std::mem::take(&mut self.resume) {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.arm(false);
            }
            self.drive(slot);
        }
        if std::mem::take(&mut self.accept_pending) {
            self.accept();
        }
    }

    /// A draining or retiring worker is done once its last connection is.
    fn finished(&self) -> bool {
        !self.mode.is_serving() && self.conns.len() == 0 && self.programs.is_empty()
    }

    /// Carries out what a connection's work came to.
    fn act(&mut self, slot: usize, outcome: Outcome) {
        match outcome {
            Outcome::Keep => {}
            Outcome::Resume => self.resume.push(slot),
            Outcome::Remove => self.remove(slot),
        }
    }

    /// Lets the connection in `slot`, if any, do `work` and acts on the
    /// outcome.
    fn with_conn(&mut self, slot: usize, work: impl FnOnce(&mut Conn, Instant) -> Outcome) {
        if let Some(conn) = self.conns.get_mut(slot) {
            let outcome = work(conn, self.now);
            self.act(slot, outcome);
        }
    }

    // ---- signals and modes ----

    /// The worker's signals: what each orders (see `mode::Order`).
    fn on_signals(&mut self) {
        for sig in self.signals.take() {
            match Order::of(sig) {
                Some(Order::Drain) => self.start_drain(self.config.server.drain_timeout),
                Some(Order::Retire) => self.start_retire(),
                Some(Order::ReopenLogs) => crate::logging::reopen(),
                None => {}
            }
        }
    }

    /// Reload: stop accepting, keep serving until `drain_timeout`.
    fn start_retire(&mut self) {
        let timeout = self.config.server.drain_timeout;
        let open = self.conns.len();
        if let Some(deadline) = self.mode.retire(self.now, timeout, self.index, open) {
            self.stop_accepting(deadline);
        }
    }

    /// Shutdown: close every connection with 1001, wait `grace` for the
    /// replies.
    fn start_drain(&mut self, grace: Duration) {
        let open = self.conns.len();
        let Some(deadline) = self.mode.drain(self.now, grace, self.index, open) else {
            return;
        };
        self.stop_accepting(deadline);
        self.broadcasts.clear_delayed();
        for slot in 0..self.conns.capacity() {
            self.with_conn(slot, Conn::close_for_shutdown);
        }
    }

    /// The worker stops serving: no more accepts; the mode's `deadline`
    /// goes into the heap.
    fn stop_accepting(&mut self, deadline: Instant) {
        crate::proctitle::mark_draining();
        self.gate.close(self.poll.registry());
        self.timers.push(deadline, TimerKey::Mode);
    }

    /// The mode's deadline: a retiring worker closes what is still open,
    /// a draining one drops what did not finish closing.
    fn mode_timer(&mut self) {
        match self.mode.expired(self.now, self.index, self.conns.len()) {
            Expired::Nothing => {}
            Expired::Retiring => self.start_drain(CLOSE_GRACE),
            Expired::Draining => {
                for slot in 0..self.conns.capacity() {
                    self.remove(slot);
                }
            }
        }
    }

    // ---- accepting ----

    /// Accepts waiting connections until none is left or the worker is
    /// full (then the gate pauses until a slot frees).
    fn accept(&mut self) {
        let max = self.config.server.max_connections_per_worker;
        while self.gate.is_open() && self.conns.len() < max {
            match self.gate.accept() {
                Accepted::Conn(stream, peer) => self.add_conn(stream, peer),
                Accepted::None => return,
                Accepted::Failed(e) => {
                    // Out of file descriptors, most likely: back off for a
                    // moment rather than spin on a listener that stays ready.
                    warn!(
                        "worker {}: accept failed: {e}; pausing accepts for 100ms",
                        self.index
                    );
                    self.gate.pause(self.poll.registry());
                    self.timers
                        .push(self.now + Duration::from_millis(100), TimerKey::Resume);
                    return;
                }
            }
        }
        if self.gate.is_open() && self.conns.len() >= max {
            debug!(
                "worker {} at max_connections_per_worker; pausing accepts",
                self.index
            );
            self.gate.pause(self.poll.registry());
        }
    }

    /// Reopens the gate after a pause (a freed slot, or the back-off
    /// after an accept error).
    fn resume_accepting(&mut self) {
        if !self.mode.is_serving() {
            return;
        }
        // Connections may have queued while we were not listening; accept
        // them between event batches, never from inside the removal of
        // another connection.
        if self.gate.resume(self.poll.registry()) {
            self.accept_pending = true;
        }
    }

    /// A new connection: registered, put in the table and driven at once
    /// unless its first step waits for an event.
    fn add_conn(&mut self, tcp: TcpStream, peer: std::net::SocketAddr) {
        // STATS: accepted
        self.stats.accepted();
        let _ = tcp.set_nodelay(true);
        let (slot, serial) = self.conns.vacant();
        let fd = tcp.as_raw_fd();
        let proxy = self.config.server.proxy_protocol;
        let upgrading = Upgrading::start(tcp, self.tls.is_some(), proxy);
        let waits = upgrading.waits_for_event();
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            token(slot, Part::Socket),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(
                "worker {}: cannot register connection from {peer}: {e}",
                self.index
            );
            return;
        }
        let mut conn = Conn::new(serial, peer, upgrading, self.now);
        if !waits {
            // Registered (edge-triggered) before the first read: a short
            // read from here on empties the queue and the next bytes raise
            // an event.
            conn.arm(true);
            self.conns.insert(slot, conn);
            self.drive(slot);
        } else {
            // Not driven yet, but its handshake deadline runs from now.
            self.conns.insert(slot, conn);
            self.reschedule(slot);
        }
    }

    // ---- driving a connection ----

    /// Advances a connection as far as its socket allows.
    fn drive(&mut self, slot: usize) {
        // Each step returns whether to try the next state at once (the
        // data it needs may already be buffered).
        for _ in 0..4 {
            let Some(conn) = self.conns.get(slot) else {
                return;
            };
            let again = match &conn.state {
                State::Upgrading(_) => self.step_upgrading(slot),
                State::Open(_) if conn.exec.is_none() => {
                    self.read_open(slot);
                    false
                }
                State::Open(_) => {
                    // An `exec` connection: its client, unless the
                    // program's stdin is full, then the program's output.
                    if conn.input_paused() {
                        self.with_conn(slot, |c, _| c.flush());
                    } else {
                        self.read_open(slot);
                    }
                    self.exec_output(slot);
                    false
                }
                State::Linger(_) => {
                    self.with_conn(slot, |c, _| c.step_linger());
                    false
                }
            };
            if !again {
                break;
            }
        }
        self.reschedule(slot);
    }

    /// Moves what the program of the `exec` connection in `slot` printed
    /// to its client.
    fn exec_output(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            let outcome = self.programs.output(self.poll.registry(), conn, self.now);
            self.act(slot, outcome);
        }
    }

    /// One step of the upgrade, which consumes its state.
    fn step_upgrading(&mut self, slot: usize) -> bool {
        let Some(conn) = self.conns.take(slot) else {
            return false;
        };
        let mut ctx = upgrade::Context {
            config: &self.config,
            app: &self.app,
            handlers: self.handlers.by_route(),
            limits: self.limits.as_ref(),
            tls: self.tls.as_ref(),
            now: self.now,
            pid: self.pid,
            serial: conn.serial,
            peer: conn.peer(),
            stats: self.stats.slot(),
            exec_running: self.programs.running(),
        };
        match conn.upgrade(&mut ctx, self.config.server.max_frame_size) {
            Upgraded::Step(conn, again) => {
                self.conns.restore(slot, conn);
                again
            }
            Upgraded::Opened(conn) => {
                self.conns.restore(slot, conn);
                self.on_open(slot);
                true
            }
            Upgraded::Dropped => {
                self.release(slot);
                false
            }
        }
    }

    /// A WebSocket is open: start its program or tell its handler.
    fn on_open(&mut self, slot: usize) {
        // STATS: connections open (+1; -1 in `notify_close`)
        self.stats.opened();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(session) = conn.session_mut() {
            self.broadcasts.join(slot, session);
        }
        if self.programs.serves(conn) {
            let outcome = self
                .programs
                .start(self.poll.registry(), slot, conn, self.now);
            self.act(slot, outcome);
        } else if let Some(session) = conn.session() {
            self.handlers.call(session, |h, c| h.on_open(c));
            self.apply_actions(slot);
        }
        if self.mode.is_draining() {
            self.with_conn(slot, Conn::close_for_shutdown);
        }
    }

    /// Reads and dispatches messages until the socket would block, the
    /// read budget is spent or reading pauses, then flushes what the
    /// handlers queued (one write for all the replies of the burst).
    fn read_open(&mut self, slot: usize) {
        let now = self.now;
        let max_send_buffer = self.config.server.max_send_buffer;
        let mut budget = READ_BUDGET;
        let flush = loop {
            let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) else {
                break false;
            };
            let batch = &mut self.batch;
            let read = session.read(&mut self.scratch, &mut budget, now, max_send_buffer, batch);
            // STATS: messages and bytes in and out, for the built-in
            // echo's replies sent while reading
            self.stats.echoed(std::mem::take(&mut batch.echoed));
            // Empty when the built-in echo answered everything inline.
            // Popped one at a time: the batch keeps its capacity, and the
            // handler may use the worker in between.
            while let Some(received) = self.batch.received.pop_front() {
                self.dispatch(slot, received);
            }
            match read {
                // A program that does not keep up with its client's
                // input: stop reading the client until stdin drains.
                Read::More if self.conns.get_mut(slot).is_some_and(Conn::input_full) => break true,
                Read::More => {}
                Read::Stop { resume } => {
                    if resume {
                        self.resume.push(slot);
                    }
                    break true;
                }
                Read::Closed => {
                    self.end(slot, Ending::Closed);
                    break false;
                }
                Read::Failed(error) => {
                    self.fail(slot, error);
                    break false;
                }
            }
        };
        if flush {
            self.with_conn(slot, |c, _| c.flush());
        }
    }

    /// Hands one received message to the route's handler (or to the
    /// connection's program) and carries out what it asked for.
    fn dispatch(&mut self, slot: usize, received: Received) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let received = match (&mut conn.exec, received) {
            (Some(program), Received::Message(message)) => {
                self.programs.input(self.poll.registry(), program, message);
                return;
            }
            (_, received) => received,
        };
        let Some(session) = conn.session_mut() else {
            return;
        };
        // STATS: messages and bytes in (data messages)
        self.stats.received(&received);
        self.handlers.dispatch(session, received);
        self.apply_actions(slot);
    }

    /// Carries out what the last callback asked for.
    fn apply_actions(&mut self, slot: usize) {
        let mut actions = self.handlers.take_actions();
        for action in actions.drain(..) {
            match action {
                Action::Send(message) => {
                    let (max, stats) = (self.config.server.max_send_buffer, self.stats);
                    self.with_conn(slot, |c, _| c.send(message, max, stats));
                }
                Action::Close(code, reason) => {
                    self.with_conn(slot, |c, now| c.close(code, reason, now))
                }
                Action::Broadcast {
                    scope,
                    message,
                    skip_self,
                } => {
                    if let Some((key, skip)) = self.target(slot, scope, skip_self) {
                        self.broadcast(Broadcast { key, skip, message });
                    }
                }
                Action::BroadcastMany {
                    scope,
                    messages,
                    delay,
                    skip_self,
                } => {
                    if let Some((key, skip)) = self.target(slot, scope, skip_self) {
                        self.schedule_many(key, skip, messages, delay);
                    }
                }
            }
        }
        self.handlers.restore_actions(actions);
    }

    /// Who a broadcast from the open connection in `slot` is for.
    fn target(&self, slot: usize, scope: Scope, skip: bool) -> Option<(RoomKey, Option<ConnId>)> {
        let session = self.conns.get(slot).and_then(Conn::session)?;
        Some(target(&session.info, scope, skip))
    }

    /// A protocol error: tell the handler and the peer why (1002, 1007,
    /// 1009), then linger until the peer closes.
    fn fail(&mut self, slot: usize, error: MessageError) {
        let code = CloseCode::from(error.close_code());
        let reason = error.to_string();
        debug!("closing a connection with {code}: {reason}");
        if let Some(session) = self.conns.get(slot).and_then(Conn::session) {
            self.handlers.fail(session, &reason.clone().into());
        }
        self.end(slot, Ending::Failed(code, reason));
    }

    /// Ends the open connection in `slot` (see `Ending`): its handler is
    /// told, its program hung up; it lingers on or is forgotten.
    fn end(&mut self, slot: usize, ending: Ending) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        let Some(session) = conn.session_mut() else {
            return self.conns.restore(slot, conn);
        };
        self.notify_close(session);
        self.hang_up(conn.exec.take());
        match conn.end(ending, self.now) {
            Some(conn) => {
                self.conns.restore(slot, conn);
                // The readiness edge may already be spent: look for EOF now.
                self.with_conn(slot, |c, _| c.step_linger());
            }
            None => self.release(slot),
        }
    }

    // ---- broadcast ----

    /// Delivers a broadcast to the local connections it is for and,
    /// through the master, to the other workers.
    fn broadcast(&mut self, b: Broadcast) {
        self.broadcasts.publish(&b);
        // Receivers are flushed once at the end of this loop turn, so a
        // burst of broadcasts costs one write per receiver.
        self.deliver(&b);
    }

    /// Queues a broadcast to the local receivers; drops those that do not
    /// keep up. Returns how many it was queued to.
    fn deliver(&mut self, b: &Broadcast) -> u64 {
        let max = self.config.server.max_send_buffer;
        let delivered = self.broadcasts.deliver(&mut self.conns, b, max);
        // STATS: messages and bytes out (broadcast receivers), once per
        // broadcast; compressions, once per compression made
        self.stats.delivered(&delivered, b.message.len());
        for slot in delivered.dropped {
            self.remove(slot);
        }
        delivered.queued
    }

    /// Flushes the receivers of this turn's broadcasts, once each.
    fn flush_queued(&mut self) {
        let due = self.broadcasts.take_flush_due();
        for &slot in &due {
            if let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) {
                session.flush_due = false;
                self.with_conn(slot, |c, _| c.flush());
            }
        }
        self.broadcasts.end_turn(due);
    }

    /// A `broadcast_many`: the first message now, the rest one per
    /// `delay` (timers `Delayed`).
    fn schedule_many(
        &mut self,
        key: RoomKey,
        skip: Option<ConnId>,
        messages: Vec<Message>,
        delay: Duration,
    ) {
        let (first, id) = self.broadcasts.schedule(key, skip, messages, delay);
        if let Some(first) = first {
            self.broadcast(first);
        }
        if let Some(id) = id {
            self.timers.push(self.now + delay, TimerKey::Delayed(id));
        }
    }

    /// The next message of the delayed series `id`.
    fn fire_delayed(&mut self, id: u64) {
        let Some((b, again)) = self.broadcasts.fire(id) else {
            return;
        };
        if let Some(delay) = again {
            self.timers.push(self.now + delay, TimerKey::Delayed(id));
        }
        self.broadcast(b);
    }

    /// The relay link is ready: what the master relayed from the other
    /// workers is delivered here (and counted back for `POST /publish`).
    fn on_relay(&mut self, readable: bool, writable: bool) {
        let mut incoming = Vec::new();
        let registry = self.poll.registry();
        if !self
            .broadcasts
            .on_relay(registry, readable, writable, &mut incoming)
        {
            warn!("worker {}: relay link to the master closed", self.index);
        }
        // Receivers are flushed once at the end of the loop turn
        // (`run_deferred`): one write each for the whole batch.
        for m in incoming {
            let receivers = self.deliver(&Broadcast {
                key: m.message.key,
                skip: m.message.skip,
                message: m.message.message,
            });
            if let Some(request) = m.request {
                self.broadcasts.report(Delivered { request, receivers });
            }
        }
    }

    // ---- timers ----

    /// Fires every timer that is due: connections' deadlines, the mode's,
    /// the accept back-off, delayed broadcasts, orphaned programs' signals.
    fn fire_timers(&mut self) {
        while let Some((at, key)) = self.timers.pop_due(self.now) {
            match key {
                TimerKey::Conn(slot, serial) => {
                    let (deadlines, now) = (&self.deadlines, self.now);
                    let expired = self
                        .conns
                        .get_mut(slot)
                        .map(|c| c.expire(deadlines, serial, at, now));
                    if let Some(Some(outcome)) = expired {
                        self.act(slot, outcome);
                        self.reschedule(slot);
                    }
                }
                TimerKey::Mode => self.mode_timer(),
                TimerKey::Resume => self.resume_accepting(),
                TimerKey::Delayed(id) => self.fire_delayed(id),
                TimerKey::Kill(pid, stage) => {
                    if let Some(at) = self.programs.kill(pid, stage, self.now) {
                        self.timers.push(at, TimerKey::Kill(pid, stage + 1));
                    }
                }
            }
        }
    }

    /// Puts the connection's next deadline in the heap if it is earlier
    /// than the one already there. (Inlined, after every drive; it seldom
    /// pushes.)
    #[inline]
    fn reschedule(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(at) = conn.reschedule(&self.deadlines) {
            let key = TimerKey::Conn(slot, conn.serial);
            self.push_timer(at, key);
        }
    }

    /// Puts a deadline in the heap (out of line: see `reschedule`).
    #[inline(never)]
    fn push_timer(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(at, key);
    }

    // ---- removal ----

    /// Tells the handler an open connection is gone. The broadcasts it
    /// asks for still go, relayed now and delivered locally between event
    /// batches (a removal can happen inside a delivery loop).
    fn notify_close(&mut self, session: &mut Session) {
        // STATS: connections open (-1); every open connection ends here
        // once, whether removed or failed into linger.
        self.stats.closed();
        self.broadcasts.leave(session, &mut self.conns);
        for b in self.handlers.close(session) {
            self.broadcasts.defer(b);
        }
    }

    /// The connection of `program` is gone: its pipes close, and a
    /// program still running is ended after its grace time.
    fn hang_up(&mut self, program: Option<Box<Program>>) {
        let registry = self.poll.registry();
        if let Some((pid, at)) = self.programs.hang_up(registry, program, self.now) {
            self.timers.push(at, TimerKey::Kill(pid, 1));
        }
    }

    /// Removes the connection in `slot`, if any: its program is hung up,
    /// the handler of an open one told, the slot freed (see `release`).
    fn remove(&mut self, slot: usize) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        self.hang_up(conn.exec.take());
        if let Some(session) = conn.session_mut() {
            self.notify_close(session);
        }
        self.release(slot);
    }

    /// Frees a slot whose connection was taken out and, if accepting was
    /// paused for capacity, resumes it. The socket closes when the
    /// connection's state is dropped, and closing takes it out of the
    /// poller: no `EPOLL_CTL_DEL` first (one syscall per connection saved;
    /// a stray event from a socket an exec child still holds between its
    /// fork and its exec only makes the slot's next owner read once for
    /// nothing).
    fn release(&mut self, slot: usize) {
        self.conns.release(slot);
        if self.mode.is_serving() && !self.gate.is_open() {
            self.resume_accepting();
        }
    }
}
