//! A worker process: one single-threaded `mio` event loop that accepts
//! connections from the shared listening socket, runs their handshakes,
//! and drives their WebSockets through the route handlers.
//!
//! The loop owns the connection table, the accept gate, the timer heap,
//! the worker's mode (serving, retiring, draining) and one handler per
//! route. Each connection does its own work (`upgrade`, `session`,
//! `conn`) and returns what came of it; the loop carries out what
//! crosses connections: handler actions, broadcasts (`broadcast`),
//! removals and re-entry. Nothing is shared with other workers except
//! the listening socket and the relay link to the master.

mod accept;
mod access;
mod admit;
mod broadcast;
mod children;
mod conn;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod programs;
mod session;
mod slab;
mod socket;
mod stream;
pub(crate) mod timers;
mod turn;
mod upgrade;

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::app::App;
use crate::config::{Config, ExecConfig};
use crate::deflate::MessageError;
use crate::exec::{Output, Pipe};
use crate::handler::{Action, Conn as HandlerConn, ConnId, Handler, HandlerError, Scope};
use crate::message::{CloseCode, Message};
use crate::relay::{Delivered, RelayLink, RoomKey};
use crate::signals::SignalPipe;
use crate::stats::WorkerSlot;
use accept::{Accepted, Gate};
pub(crate) use admit::Limits;
use broadcast::{Broadcast, Broadcasts};
use children::{Children, Owner, Program};
use conn::{Conn, Deadlines, Due, Handshake, Linger, State, CLOSE_GRACE};
use session::{Flush, Read, Received, Sent, Session, READ_BUDGET};
use slab::Slab;
use stream::Stream;
use timers::Timers;
use upgrade::{Step, Upgrading};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const RELAY: Token = Token(2);
const CHILDREN: Token = Token(3);
const FIRST_CONN: usize = 4;
/// Each connection slot owns this many consecutive tokens: its socket,
/// then the stdin, stdout and stderr pipes of its program (`exec` routes).
/// A slot's tokens are fixed, so pipes need no table of their own.
const TOKENS_PER_SLOT: usize = 4;

/// What a connection token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Socket,
    Pipe(Pipe),
}

/// The token of `part` of the connection in `slot`.
fn token(slot: usize, part: Part) -> Token {
    let offset = match part {
        Part::Socket => 0,
        Part::Pipe(Pipe::Stdin) => 1,
        Part::Pipe(Pipe::Stdout) => 2,
        Part::Pipe(Pipe::Stderr) => 3,
    };
    Token(FIRST_CONN + slot * TOKENS_PER_SLOT + offset)
}

/// The slot and part a connection token stands for.
fn slot_of(t: usize) -> (usize, Part) {
    let i = t - FIRST_CONN;
    let part = match i % TOKENS_PER_SLOT {
        0 => Part::Socket,
        1 => Part::Pipe(Pipe::Stdin),
        2 => Part::Pipe(Pipe::Stdout),
        _ => Part::Pipe(Pipe::Stderr),
    };
    (i / TOKENS_PER_SLOT, part)
}

/// What the master hands a freshly forked worker.
pub(crate) struct WorkerSpec {
    /// The worker's slot number, kept across restarts.
    pub index: usize,
    /// The configuration generation.
    pub config: Rc<Config>,
    /// Routes and handler factories.
    pub app: Rc<App>,
    /// The listening socket, shared with the siblings; the worker owns
    /// its descriptor and closes it when it stops accepting.
    pub listener: std::net::TcpListener,
    /// The worker's end of its relay link to the master.
    pub relay: Option<std::os::unix::net::UnixStream>,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<openssl::ssl::SslAcceptor>,
    /// This worker's counters in the master's shared table.
    pub stats: Option<&'static WorkerSlot>,
    /// The per-address limits and this worker's owner id in them, when
    /// `[limits]` sets any.
    pub limits: Option<Limits>,
}

/// Where the worker is in its own life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Accepting and serving.
    Serving,
    /// Replaced by a reload: not accepting, serving open connections
    /// until they close or `deadline`.
    Retiring { deadline: Instant },
    /// Shutting down: close frames sent, waiting for replies until
    /// `deadline`.
    Draining { deadline: Instant },
}

/// A timer entry: a connection slot and serial, or the worker itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Conn(usize, u32),
    Mode,
    Resume,
    Delayed(u64),
    /// An orphaned program's next signal: 1 SIGTERM, 2 SIGKILL.
    Kill(i32, u8),
}

/// One worker process's state.
pub(crate) struct Worker {
    index: usize,
    pid: u32,
    poll: Poll,
    gate: Gate,
    tls: Option<openssl::ssl::SslAcceptor>,
    limits: Option<Limits>,
    conns: Slab<Conn>,
    timers: Timers<TimerKey>,
    deadlines: Deadlines,
    signals: SignalPipe,
    config: Rc<Config>,
    app: Rc<App>,
    handlers: Vec<Box<dyn Handler>>,
    actions: Vec<Action>,
    mode: Mode,
    broadcasts: Broadcasts,
    /// Connections whose reads were unpaused outside their own event.
    resume: Vec<usize>,
    /// Messages of one read, reused from read to read.
    batch: Vec<Received>,
    /// Accepting resumed; accept between event batches.
    accept_pending: bool,
    now: Instant,
    /// Shared counters (`stats.rs`); `STATS:` comments mark the call sites.
    stats: Option<&'static WorkerSlot>,
    /// Per route index: its `exec` program and message limit, if any.
    exec_routes: Vec<Option<(Rc<ExecConfig>, usize)>>,
    /// The programs of `exec` connections.
    children: Children,
    /// SIGCHLD, which reaps them.
    child_signals: SignalPipe,
    /// The listening address, for the programs' `SERVER_PORT`.
    local: std::net::SocketAddr,
    /// A program's stdout is read into this, reused.
    exec_buf: Vec<u8>,
    /// A read's messages, reused.
    exec_out: Vec<Output>,
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
    fn new(spec: WorkerSpec) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let signals = SignalPipe::new(crate::signals::WORKER_SIGNALS)?;
        signals.register(poll.registry(), SIGNALS)?;
        // The master blocked these across the fork; our handlers are in
        // place now, so whatever arrived meanwhile is delivered to them.
        crate::signals::unblock(crate::signals::WORKER_SIGNALS);
        let child_signals = SignalPipe::new(&[signal_hook::consts::SIGCHLD])?;
        child_signals.register(poll.registry(), CHILDREN)?;
        let local = spec.listener.local_addr()?;
        let gate = Gate::new(spec.listener, poll.registry(), LISTENER)?;
        let relay = match spec.relay {
            Some(sock) => {
                let mut link = RelayLink::new(sock)?;
                link.register(poll.registry(), RELAY)?;
                Some(link)
            }
            None => None,
        };
        let handlers = spec.app.routes.iter().map(|(_, r)| (r.factory)()).collect();
        let exec_routes: Vec<_> = spec
            .app
            .routes
            .iter()
            .map(|(_, r)| r.exec.clone().map(|e| (e, r.max_message_size)))
            .collect();
        Ok(Worker {
            index: spec.index,
            pid: std::process::id(),
            poll,
            gate,
            tls: spec.tls,
            limits: spec.limits,
            conns: Slab::default(),
            timers: Timers::default(),
            deadlines: Deadlines::new(&spec.config.server),
            signals,
            config: spec.config,
            app: spec.app,
            handlers,
            actions: Vec::new(),
            mode: Mode::Serving,
            broadcasts: Broadcasts::new(relay),
            resume: Vec::new(),
            batch: Vec::new(),
            accept_pending: false,
            now: Instant::now(),
            stats: spec.stats,
            children: Children::new(exec_routes.len()),
            exec_routes,
            child_signals,
            local,
            exec_buf: Vec::new(),
            exec_out: Vec::new(),
        })
    }

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
                    CHILDREN => self.on_sigchld(),
                    Token(t) => {
                        let (slot, part) = slot_of(t);
                        if let Part::Pipe(pipe) = part {
                            self.on_pipe(slot, pipe);
                            continue;
                        }
                        let short_read_ends = !(event.is_read_closed() || event.is_error());
                        if !short_read_ends && self.exec_input_paused(slot) {
                            // Not being read, it would never see the end.
                            self.exec_client_gone(slot);
                            continue;
                        }
                        // A write-only edge says nothing new arrived: reads
                        // stay where the last short read left them.
                        let reads = event.is_readable() || !short_read_ends;
                        if let (true, Some(conn)) = (reads, self.conns.get_mut(slot)) {
                            conn.arm(short_read_ends);
                        }
                        self.drive(slot)
                    }
                }
            }
            self.fire_timers();
            self.run_deferred();
            if self.finished() {
                info!("worker {} pid {} done", self.index, self.pid);
                return Ok(());
            }
        }
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
        self.mode != Mode::Serving && self.conns.len() == 0 && self.children.is_empty()
    }

    // ---- signals and modes ----

    fn on_signals(&mut self) {
        for sig in self.signals.take() {
            match sig {
                signal_hook::consts::SIGTERM | signal_hook::consts::SIGINT => self.start_drain(),
                signal_hook::consts::SIGQUIT => self.start_retire(),
                signal_hook::consts::SIGUSR1 => crate::logging::reopen(),
                _ => {}
            }
        }
    }

    /// Reload: stop accepting, keep serving until `drain_timeout`.
    fn start_retire(&mut self) {
        if self.mode != Mode::Serving {
            return;
        }
        info!(
            "worker {} retiring: {} connections, drain deadline {:?}",
            self.index,
            self.conns.len(),
            self.config.server.drain_timeout
        );
        crate::proctitle::mark_draining();
        self.gate.close(self.poll.registry());
        let deadline = self.now + self.config.server.drain_timeout;
        self.mode = Mode::Retiring { deadline };
        self.timers.push(deadline, TimerKey::Mode);
    }

    /// Shutdown: close every connection with 1001, wait for the replies.
    fn start_drain(&mut self) {
        if matches!(self.mode, Mode::Draining { .. }) {
            return;
        }
        info!(
            "worker {} draining {} connections",
            self.index,
            self.conns.len()
        );
        crate::proctitle::mark_draining();
        self.gate.close(self.poll.registry());
        let deadline = self.now + self.config.server.drain_timeout;
        self.mode = Mode::Draining { deadline };
        self.timers.push(deadline, TimerKey::Mode);
        self.broadcasts.clear_delayed();
        for slot in 0..self.conns.capacity() {
            self.close_for_shutdown(slot);
        }
    }

    /// Closes one connection because the worker is going away.
    fn close_for_shutdown(&mut self, slot: usize) {
        let now = self.now;
        let flush = match self.conns.get_mut(slot).map(|c| &mut c.state) {
            None | Some(State::Linger(_)) => return,
            Some(State::Open(session)) => session.close_for_shutdown(now),
            Some(State::Upgrading(_)) => {
                self.remove(slot);
                return;
            }
        };
        self.after_flush(slot, flush);
    }

    // ---- accepting ----

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

    fn resume_accepting(&mut self) {
        if self.mode != Mode::Serving {
            return;
        }
        // Connections may have queued while we were not listening; accept
        // them between event batches, never from inside the removal of
        // another connection.
        if self.gate.resume(self.poll.registry()) {
            self.accept_pending = true;
        }
    }

    fn add_conn(&mut self, tcp: TcpStream, peer: std::net::SocketAddr) {
        // STATS: accepted
        if let Some(s) = self.stats {
            WorkerSlot::add(&s.accepted, 1);
        }
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
        let conn = Conn {
            serial,
            accepted: self.now,
            scheduled: None,
            state: State::Upgrading(Box::new(Handshake {
                peer,
                phase: upgrading,
            })),
            exec: None,
        };
        self.conns.insert(slot, conn);
        if !waits {
            // Registered (edge-triggered) before the first read: a short
            // read from here on empties the queue and the next bytes raise
            // an event.
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.arm(true);
            }
            self.drive(slot);
        } else {
            // Not driven yet, but its handshake deadline runs from now.
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
            let exec = conn.exec.is_some();
            let again = match &conn.state {
                State::Upgrading(_) => self.step_upgrading(slot),
                State::Open(_) if !exec => {
                    self.read_open(slot);
                    false
                }
                State::Open(_) => {
                    if self.exec_input_paused(slot) {
                        self.flush(slot);
                    } else {
                        self.read_open(slot);
                    }
                    self.exec_output(slot);
                    false
                }
                State::Linger(_) => {
                    self.step_linger(slot);
                    false
                }
            };
            if !again {
                break;
            }
        }
        self.reschedule(slot);
    }

    /// One step of the upgrade, which consumes its state.
    fn step_upgrading(&mut self, slot: usize) -> bool {
        let Some(mut conn) = self.conns.take(slot) else {
            return false;
        };
        let Handshake { peer, phase } = match conn.state {
            State::Upgrading(h) => *h,
            other => {
                conn.state = other;
                self.conns.restore(slot, conn);
                return false;
            }
        };
        let mut ctx = upgrade::Context {
            config: &self.config,
            app: &self.app,
            handlers: &mut self.handlers,
            limits: self.limits.as_ref(),
            tls: self.tls.as_ref(),
            now: self.now,
            pid: self.pid,
            serial: conn.serial,
            peer,
            stats: self.stats,
            exec_running: self.children.running(),
        };
        let handshake = |peer, phase| State::Upgrading(Box::new(Handshake { peer, phase }));
        let (state, again) = match phase.step(&mut ctx) {
            Step::Wait(u) => (handshake(peer, u), false),
            Step::Again(u) => (handshake(peer, u), true),
            // The PROXY header named the client: it is the peer from now on.
            Step::Proxied(u, client) => (handshake(client, u), true),
            Step::Open(stream, up) => {
                let max_frame = self.config.server.max_frame_size;
                let session = Session::new(stream, *up, max_frame, self.now);
                (State::Open(Box::new(session)), true)
            }
            Step::Refused(stream) => (State::Linger(Linger::new(stream, peer, self.now)), true),
            Step::Drop => {
                // The socket is closed already (which took it out of the
                // poller).
                self.forget(slot, None);
                return false;
            }
        };
        let opened = matches!(state, State::Open(_));
        conn.state = state;
        self.conns.restore(slot, conn);
        if opened {
            self.on_open(slot);
        }
        again
    }

    /// A WebSocket is open: tell the handler.
    fn on_open(&mut self, slot: usize) {
        // STATS: connections open (+1; -1 in `notify_close`)
        if let Some(s) = self.stats {
            s.opened();
        }
        if self.exec_route(slot).is_some() {
            self.exec_start(slot);
        } else {
            self.call(slot, |h, c| h.on_open(c));
            self.apply_actions(slot);
        }
        if matches!(self.mode, Mode::Draining { .. }) {
            self.close_for_shutdown(slot);
        }
    }

    fn step_linger(&mut self, slot: usize) {
        let done = match self.conns.get_mut(slot).map(|c| &mut c.state) {
            Some(State::Linger(linger)) => linger.step(),
            _ => false,
        };
        if done {
            self.remove(slot);
        }
    }

    /// Reads and dispatches messages until the socket would block, the
    /// read budget is spent or reading pauses, then flushes what the
    /// handlers queued (one write for all the replies of the burst).
    fn read_open(&mut self, slot: usize) {
        let now = self.now;
        let max_send_buffer = self.config.server.max_send_buffer;
        let mut budget = READ_BUDGET;
        let mut batch = std::mem::take(&mut self.batch);
        let flush = loop {
            let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) else {
                break false;
            };
            let read = session.read(&mut budget, now, max_send_buffer, &mut batch);
            // Empty when the built-in echo answered everything inline.
            if !batch.is_empty() {
                for received in batch.drain(..) {
                    self.dispatch(slot, received);
                }
            }
            match read {
                // A program that does not keep up with its client's
                // input: stop reading the client until stdin drains.
                Read::More if self.exec_input_full(slot) => break true,
                Read::More => {}
                Read::Stop { resume } => {
                    if resume {
                        self.resume.push(slot);
                    }
                    break true;
                }
                Read::Closed => {
                    self.closed(slot);
                    break false;
                }
                Read::Failed(error) => {
                    self.fail(slot, error);
                    break false;
                }
            }
        };
        self.batch = batch;
        if flush {
            self.flush(slot);
        }
    }

    /// Hands one received message to the route's handler and carries out
    /// what it asked for.
    fn dispatch(&mut self, slot: usize, received: Received) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let received = match (&mut conn.exec, received) {
            (Some(program), Received::Message(message)) => {
                let lines = self.exec_routes[program.route]
                    .as_ref()
                    .is_some_and(|(e, _)| e.mode == crate::config::ExecMode::Lines);
                programs::input(&mut program.process, self.poll.registry(), message, lines);
                return;
            }
            (_, received) => received,
        };
        let Some(session) = conn.session_mut() else {
            return;
        };
        // STATS: messages and bytes in (data messages), and out for the
        // built-in echo's replies sent while reading
        match (self.stats, &received) {
            (Some(s), Received::Message(m)) => s.message_in(m.len()),
            (Some(s), Received::Echoed(len)) => {
                s.message_in(*len);
                s.message_out(*len);
                return;
            }
            (None, Received::Echoed(_)) => return,
            _ => {}
        }
        if let Some(handler) = self.handlers.get_mut(session.route) {
            session.dispatch(handler.as_mut(), &mut self.actions, received);
        }
        self.apply_actions(slot);
    }

    /// Calls a handler callback for the open connection in `slot`.
    fn call<F>(&mut self, slot: usize, f: F)
    where
        F: FnOnce(&mut dyn Handler, &mut HandlerConn<'_>) -> Result<(), HandlerError>,
    {
        let Some(session) = self.conns.get(slot).and_then(Conn::session) else {
            return;
        };
        if let Some(handler) = self.handlers.get_mut(session.route) {
            session.call(handler.as_mut(), &mut self.actions, f);
        }
    }

    /// Carries out what the last callback asked for.
    fn apply_actions(&mut self, slot: usize) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Send(message) => self.send(slot, message),
                Action::Close(code, reason) => self.close(slot, code, reason),
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
        self.actions = actions;
    }

    /// Who a broadcast from the connection in `slot` is for: the room key
    /// of `scope` and, for "others", the sender to skip.
    fn target(
        &self,
        slot: usize,
        scope: Scope,
        skip_self: bool,
    ) -> Option<(RoomKey, Option<ConnId>)> {
        let session = self.conns.get(slot).and_then(Conn::session)?;
        Some((
            RoomKey::of(&session.info, scope),
            skip_self.then_some(session.info.id),
        ))
    }

    /// Queues a message to one connection (flushed later).
    fn send(&mut self, slot: usize, message: Message) {
        let limit = self.config.server.max_send_buffer;
        let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) else {
            return;
        };
        let len = message.len();
        match session.send(message, limit) {
            Sent::Drop => self.remove(slot),
            // STATS: messages and bytes out, and the compression if any
            Sent::Queued { compressed } => {
                if let Some(s) = self.stats {
                    s.message_out(len);
                    if let Some(c) = compressed {
                        s.compressed(c.raw, c.out);
                    }
                }
            }
        }
    }

    fn close(&mut self, slot: usize, code: CloseCode, reason: String) {
        let now = self.now;
        let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) else {
            return;
        };
        let flush = session.close(code, reason, now);
        self.after_flush(slot, flush);
    }

    /// A protocol error: tell the handler and the peer why (1002, 1007,
    /// 1009), then linger until the peer closes.
    fn fail(&mut self, slot: usize, error: MessageError) {
        let code = CloseCode::from(error.close_code());
        let reason = error.to_string();
        debug!("closing a connection with {code}: {reason}");
        let err: HandlerError = reason.clone().into();
        self.call(slot, |h, c| {
            h.on_error(c, &err);
            Ok(())
        });
        self.actions.clear();
        self.linger(slot, |session| session.fail(code, &reason));
    }

    /// The close handshake is over, or the peer is gone. A connection
    /// whose last frames the socket has not taken yet (a burst of echoes
    /// and the close reply to a peer that does not read while it sends)
    /// lingers until they are sent, the peer is gone or the linger time
    /// passes; the others are removed at once.
    fn closed(&mut self, slot: usize) {
        let unsent = self
            .conns
            .get(slot)
            .and_then(Conn::session)
            .is_some_and(|s| s.queued() > 0);
        if unsent {
            self.linger(slot, |session| session.into_stream());
        } else {
            self.remove(slot);
        }
    }

    /// Ends the open connection in `slot` for the handler and lingers on
    /// the stream that `last_words` leaves (it queues what is still to be
    /// said and flushes it as far as the socket takes it).
    fn linger(&mut self, slot: usize, last_words: impl FnOnce(Box<Session>) -> Stream) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        let mut session = match conn.state {
            State::Open(session) => session,
            other => {
                conn.state = other;
                self.conns.restore(slot, conn);
                return;
            }
        };
        self.notify_close(&mut session);
        let peer = session.info.peer;
        let stream = last_words(session);
        self.exec_hang_up(conn.exec.take());
        conn.state = State::Linger(Linger::new(stream, peer, self.now));
        self.conns.restore(slot, conn);
        // The readiness edge may already be spent: look for EOF now.
        self.step_linger(slot);
    }

    /// Writes queued output; pauses reading while the socket is full.
    fn flush(&mut self, slot: usize) {
        let Some(session) = self.conns.get_mut(slot).and_then(Conn::session_mut) else {
            return;
        };
        let flush = session.flush();
        self.after_flush(slot, flush);
    }

    /// Acts on a connection's flush outcome.
    fn after_flush(&mut self, slot: usize, flush: Flush) {
        match flush {
            // Input may have waited while we were paused, and its
            // readiness edge is spent: read it after this event.
            Flush::Done { resume: true } => self.resume.push(slot),
            Flush::Done { resume: false } | Flush::Blocked => {}
            Flush::Broken => self.remove(slot),
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
        if let Some(s) = self.stats {
            WorkerSlot::add(&s.messages_out, delivered.queued);
            WorkerSlot::add(&s.bytes_out, delivered.queued * b.message.len() as u64);
            for c in &delivered.compressed {
                s.compressed(c.raw, c.out);
            }
        }
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
                self.flush(slot);
            }
        }
        self.broadcasts.end_turn(due);
    }

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

    fn fire_delayed(&mut self, id: u64) {
        let Some((b, again)) = self.broadcasts.fire(id) else {
            return;
        };
        if let Some(delay) = again {
            self.timers.push(self.now + delay, TimerKey::Delayed(id));
        }
        self.broadcast(b);
    }

    fn on_relay(&mut self, readable: bool, writable: bool) {
        let Some(link) = self.broadcasts.relay.as_mut() else {
            return;
        };
        if writable {
            link.flush();
        }
        if !readable {
            return;
        }
        let mut incoming = Vec::new();
        let alive = link.receive(&mut incoming);
        if !alive {
            // The master is gone; PDEATHSIG will end us, but do not spin.
            warn!("worker {}: relay link to the master closed", self.index);
            if let Some(mut link) = self.broadcasts.relay.take() {
                link.deregister(self.poll.registry());
            }
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

    fn fire_timers(&mut self) {
        while let Some((at, key)) = self.timers.pop_due(self.now) {
            match key {
                TimerKey::Conn(slot, serial) => self.conn_timer(slot, serial, at),
                TimerKey::Mode => self.mode_timer(),
                TimerKey::Resume => self.resume_accepting(),
                TimerKey::Delayed(id) => self.fire_delayed(id),
                TimerKey::Kill(pid, stage) => self.kill_timer(pid, stage),
            }
        }
    }

    fn mode_timer(&mut self) {
        match self.mode {
            Mode::Retiring { deadline } if self.now >= deadline => {
                info!(
                    "worker {}: drain_timeout passed with {} connections open; closing them",
                    self.index,
                    self.conns.len()
                );
                self.mode = Mode::Serving;
                self.start_drain();
                let deadline = self.now + CLOSE_GRACE;
                self.mode = Mode::Draining { deadline };
                self.timers.push(deadline, TimerKey::Mode);
            }
            Mode::Draining { deadline } if self.now >= deadline => {
                info!(
                    "worker {}: {} connections did not finish closing in time; dropping them",
                    self.index,
                    self.conns.len()
                );
                for slot in 0..self.conns.capacity() {
                    self.remove(slot);
                }
            }
            _ => {}
        }
    }

    fn conn_timer(&mut self, slot: usize, serial: u32, at: Instant) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.serial != serial || conn.scheduled != Some(at) {
            return;
        }
        conn.scheduled = None;
        match self.deadlines.due(conn, now) {
            Due::Nothing => {}
            Due::Drop(why) => {
                debug!("dropping connection from {}: {why}", conn.peer());
                self.remove(slot);
                return;
            }
            Due::Close => {
                debug!("connection from {} idle; closing it", conn.peer());
                self.close(slot, CloseCode::AWAY, "idle timeout".into());
            }
            Due::Ping => {
                if let Some(session) = conn.session_mut() {
                    let flush = session.ping();
                    self.after_flush(slot, flush);
                }
            }
        }
        self.reschedule(slot);
    }

    /// Puts the connection's next deadline in the heap if it is earlier
    /// than the one already there.
    fn reschedule(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(at) = self.deadlines.next(conn) {
            if conn.scheduled.is_none_or(|s| at < s) {
                conn.scheduled = Some(at);
                self.timers.push(at, TimerKey::Conn(slot, conn.serial));
            }
        }
    }

    // ---- removal ----

    /// Tells the handler an open connection is gone. A closing connection
    /// cannot send; broadcasts it asked for still go, relayed now and
    /// delivered locally between event batches (a removal can happen
    /// inside a delivery loop).
    fn notify_close(&mut self, session: &mut Session) {
        // STATS: connections open (-1); every open connection ends here
        // once, whether removed or failed into linger.
        if let Some(s) = self.stats {
            s.closed();
        }
        if let Some(handler) = self.handlers.get_mut(session.route) {
            session.notify_close(handler.as_mut(), &mut self.actions);
        }
        for action in std::mem::take(&mut self.actions) {
            if let Action::Broadcast { scope, message, .. } = action {
                self.broadcasts.defer(Broadcast {
                    key: RoomKey::of(&session.info, scope),
                    skip: Some(session.info.id),
                    message,
                });
            }
        }
    }

    /// Forgets the connection in `slot`, if any (see `forget`).
    fn remove(&mut self, slot: usize) {
        let Some(mut conn) = self.conns.take(slot) else {
            return;
        };
        self.exec_hang_up(conn.exec.take());
        match conn.state {
            State::Open(session) => self.forget(slot, Some(session)),
            _ => self.forget(slot, None),
        }
    }

    /// Forgets a connection taken out of `slot`: tells the handler of an
    /// open one, frees the slot and, if accepting was paused for capacity,
    /// resumes it. The socket closes when the connection's state is
    /// dropped, and closing takes it out of the poller: no
    /// `EPOLL_CTL_DEL` first (one syscall per connection saved; a stray
    /// event from a socket an exec child still holds between its fork and
    /// its exec only makes the slot's next owner read once for nothing).
    fn forget(&mut self, slot: usize, open: Option<Box<Session>>) {
        self.conns.release(slot);
        if let Some(mut session) = open {
            self.notify_close(&mut session);
        }
        if self.mode == Mode::Serving && !self.gate.is_open() {
            self.resume_accepting();
        }
    }
}
