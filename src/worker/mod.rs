//! A worker process: one single-threaded `mio` event loop that accepts
//! connections from the shared listening socket, runs their handshakes,
//! and drives their WebSockets through the route handlers.
//!
//! The worker owns its connections, its timer heap and one handler per
//! route; nothing is shared with other workers except the listening
//! socket and the relay link to the master (for broadcasts).

mod conn;
mod stream;
pub(crate) mod timers;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::config::Config;
use crate::handler::{Action, Conn as HandlerConn, ConnId, ConnInfo, Handler, HandlerError, Scope};
use crate::handshake::{self, Reject};
use crate::relay::{RelayLink, RelayMessage, RoomKey};
use crate::server::App;
use crate::signals::SignalPipe;
use crate::textcheck::TextChecked;
use conn::{Conn, HeadRead, Open, Phase, Upgrade, CLOSE_GRACE};
use stream::{Stream, Transport};
use timers::Timers;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const RELAY: Token = Token(2);
const FIRST_CONN: usize = 3;

/// tungstenite's read buffer per connection: small, because idle
/// connections dominate memory (its 128 KiB default costs ~135 KiB each).
/// Socket reads themselves go through a 64 KiB buffer shared by the
/// worker's connections (see `stream.rs`), so this does not limit them.
const READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before a socket write.
const WRITE_BUFFER: usize = 64 * 1024;
/// Output queued to one connection above which its reading pauses until
/// the socket takes it: a client cannot grow its own queue by not reading.
const PAUSE_QUEUED: usize = 256 * 1024;
/// Messages read from one connection before the others get a turn.
const READ_BUDGET: usize = 256;

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
    pub tls: Option<native_tls::TlsAcceptor>,
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
}

/// A broadcast waiting for its turn (`broadcast_many` with a delay).
struct Delayed {
    id: u64,
    key: RoomKey,
    skip: Option<ConnId>,
    messages: std::collections::VecDeque<Message>,
    delay: Duration,
}

/// One worker process's state.
pub(crate) struct Worker {
    index: usize,
    pid: u32,
    poll: Poll,
    listener: Option<TcpListener>,
    listening: bool,
    tls: Option<native_tls::TlsAcceptor>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    serial: u32,
    timers: Timers<TimerKey>,
    signals: SignalPipe,
    config: Rc<Config>,
    app: Rc<App>,
    handlers: Vec<Box<dyn Handler>>,
    actions: Vec<Action>,
    mode: Mode,
    relay: Option<RelayLink>,
    delayed: Vec<Delayed>,
    next_delayed: u64,
    /// Connections whose reads were unpaused outside their own event.
    resume: Vec<usize>,
    /// Broadcasts asked for in `on_close`, delivered between event batches.
    pending: std::collections::VecDeque<(RoomKey, Option<ConnId>, Message)>,
    /// Accepting resumed; accept between event batches.
    accept_pending: bool,
    /// Receivers a broadcast queued output for this loop turn.
    flush_due: Vec<usize>,
    now: Instant,
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
        spec.listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(spec.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let relay = match spec.relay {
            Some(sock) => {
                let mut link = RelayLink::new(sock)?;
                link.register(poll.registry(), RELAY)?;
                Some(link)
            }
            None => None,
        };
        let handlers = spec.app.routes.iter().map(|(_, r)| (r.factory)()).collect();
        Ok(Worker {
            index: spec.index,
            pid: std::process::id(),
            poll,
            listener: Some(listener),
            listening: true,
            tls: spec.tls,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            serial: 0,
            timers: Timers::default(),
            signals,
            config: spec.config,
            app: spec.app,
            handlers,
            actions: Vec::new(),
            mode: Mode::Serving,
            relay,
            delayed: Vec::new(),
            next_delayed: 0,
            resume: Vec::new(),
            pending: std::collections::VecDeque::new(),
            accept_pending: false,
            flush_due: Vec::new(),
            now: Instant::now(),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.now = Instant::now();
            let idle = self.resume.is_empty() && !self.accept_pending && self.flush_due.is_empty();
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
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        self.arm(slot, !(event.is_read_closed() || event.is_error()));
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
        while let Some((key, skip, message)) = self.pending.pop_front() {
            self.deliver(&key, skip, &message);
        }
        self.flush_queued();
        for slot in std::mem::take(&mut self.resume) {
            self.arm(slot, false);
            self.drive(slot);
        }
        if std::mem::take(&mut self.accept_pending) {
            self.accept();
        }
    }

    /// A draining or retiring worker is done once its last connection is.
    fn finished(&self) -> bool {
        self.mode != Mode::Serving && self.live == 0
    }

    // ---- signals and modes ----

    fn on_signals(&mut self) {
        for sig in self.signals.take() {
            match sig {
                signal_hook::consts::SIGTERM | signal_hook::consts::SIGINT => self.start_drain(),
                signal_hook::consts::SIGQUIT => self.start_retire(),
                _ => {}
            }
        }
    }

    fn stop_listening(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.listening = false;
    }

    /// Reload: stop accepting, keep serving until `drain_timeout`.
    fn start_retire(&mut self) {
        if self.mode != Mode::Serving {
            return;
        }
        info!(
            "worker {} retiring: {} connections, drain deadline {:?}",
            self.index, self.live, self.config.server.drain_timeout
        );
        self.stop_listening();
        let deadline = self.now + self.config.server.drain_timeout;
        self.mode = Mode::Retiring { deadline };
        self.timers.push(deadline, TimerKey::Mode);
    }

    /// Shutdown: close every connection with 1001, wait for the replies.
    fn start_drain(&mut self) {
        if matches!(self.mode, Mode::Draining { .. }) {
            return;
        }
        info!("worker {} draining {} connections", self.index, self.live);
        self.stop_listening();
        let deadline = self.now + self.config.server.drain_timeout;
        self.mode = Mode::Draining { deadline };
        self.timers.push(deadline, TimerKey::Mode);
        self.delayed.clear();
        for slot in 0..self.conns.len() {
            self.close_for_shutdown(slot);
        }
    }

    /// Closes one connection because the worker is going away.
    fn close_for_shutdown(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match &mut conn.phase {
            Phase::Open(open) => {
                if open.closing_since.is_none() {
                    open.closing_since = Some(self.now);
                    let _ = open.ws.close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "server shutting down".into(),
                    }));
                }
                self.flush(slot);
            }
            Phase::Linger { .. } => {}
            _ => self.remove(slot),
        }
    }

    // ---- accepting ----

    fn accept(&mut self) {
        while self.listening && self.live < self.config.server.max_connections_per_worker {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: back off for a
                    // moment rather than spin on a listener that stays ready.
                    warn!(
                        "worker {}: accept failed: {e}; pausing accepts for 100ms",
                        self.index
                    );
                    self.pause_accepting();
                    self.timers
                        .push(self.now + Duration::from_millis(100), TimerKey::Resume);
                    return;
                }
            }
        }
        if self.listening && self.live >= self.config.server.max_connections_per_worker {
            debug!(
                "worker {} at max_connections_per_worker; pausing accepts",
                self.index
            );
            self.pause_accepting();
        }
    }

    fn pause_accepting(&mut self) {
        if let Some(l) = self.listener.as_mut() {
            let _ = self.poll.registry().deregister(l);
        }
        self.listening = false;
    }

    fn resume_accepting(&mut self) {
        if self.listening || self.mode != Mode::Serving {
            return;
        }
        if let Some(l) = self.listener.as_mut() {
            if self
                .poll
                .registry()
                .register(l, LISTENER, Interest::READABLE)
                .is_ok()
            {
                self.listening = true;
                // Connections may have queued while we were not listening;
                // accept them between event batches, never from inside the
                // removal of another connection.
                self.accept_pending = true;
            }
        }
    }

    fn add_conn(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.serial = self.serial.wrapping_add(1);
        let fd = tcp.as_raw_fd();
        let phase = match &self.tls {
            None => Phase::Request {
                stream: Stream::new(Transport::Plain(tcp)),
                buf: Vec::new(),
            },
            Some(acceptor) => match acceptor.accept(tcp) {
                Ok(tls) => Phase::Request {
                    stream: Stream::new(Transport::Tls(Box::new(tls))),
                    buf: Vec::new(),
                },
                Err(native_tls::HandshakeError::WouldBlock(mid)) => {
                    Phase::TlsHandshake(Box::new(mid))
                }
                Err(native_tls::HandshakeError::Failure(e)) => {
                    debug!("TLS handshake with {peer} failed: {e}");
                    self.free.push(slot);
                    return;
                }
            },
        };
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(slot + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(
                "worker {}: cannot register connection from {peer}: {e}",
                self.index
            );
            self.free.push(slot);
            return;
        }
        self.conns[slot] = Some(Conn {
            serial: self.serial,
            accepted: self.now,
            phase,
            scheduled: None,
            linger_until: None,
            peer,
        });
        self.live += 1;
        self.drive(slot);
    }

    // ---- driving a connection ----

    /// Advances a connection as far as its socket allows.
    fn drive(&mut self, slot: usize) {
        // Each phase step returns whether to try the next phase at once
        // (the data it needs may already be buffered).
        for _ in 0..4 {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let again = match &conn.phase {
                Phase::TlsHandshake(_) => self.step_tls(slot),
                Phase::Request { .. } => self.step_request(slot),
                Phase::Response { .. } => self.step_response(slot),
                Phase::Open(_) => {
                    self.step_open(slot);
                    false
                }
                Phase::Linger { .. } => self.step_linger(slot),
                Phase::Gone => false,
            };
            if !again {
                break;
            }
        }
        self.reschedule(slot);
    }

    /// A readiness event (or a resume) for `slot`: see `Stream::arm`.
    fn arm(&mut self, slot: usize, short_read_ends: bool) {
        let stream = match self.conn_mut(slot).map(|c| &mut c.phase) {
            Some(Phase::Request { stream, .. })
            | Some(Phase::Response { stream, .. })
            | Some(Phase::Linger { stream }) => stream,
            Some(Phase::Open(open)) => open.ws.get_mut(),
            _ => return,
        };
        stream.arm(short_read_ends);
    }

    fn conn_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    fn take_phase(&mut self, slot: usize) -> Phase {
        match self.conn_mut(slot) {
            Some(c) => std::mem::replace(&mut c.phase, Phase::Gone),
            None => Phase::Gone,
        }
    }

    fn set_phase(&mut self, slot: usize, phase: Phase) {
        if let Some(c) = self.conn_mut(slot) {
            c.phase = phase;
        }
    }

    fn step_tls(&mut self, slot: usize) -> bool {
        let Phase::TlsHandshake(mid) = self.take_phase(slot) else {
            return false;
        };
        match mid.handshake() {
            Ok(tls) => {
                self.set_phase(
                    slot,
                    Phase::Request {
                        stream: Stream::new(Transport::Tls(Box::new(tls))),
                        buf: Vec::new(),
                    },
                );
                true
            }
            Err(native_tls::HandshakeError::WouldBlock(mid)) => {
                self.set_phase(slot, Phase::TlsHandshake(Box::new(mid)));
                false
            }
            Err(native_tls::HandshakeError::Failure(e)) => {
                let peer = self.conn_mut(slot).map(|c| c.peer);
                debug!("TLS handshake with {peer:?} failed: {e}");
                self.remove(slot);
                false
            }
        }
    }

    fn step_request(&mut self, slot: usize) -> bool {
        let max_head = self.config.server.max_request_head;
        let Phase::Request {
            mut stream,
            mut buf,
        } = self.take_phase(slot)
        else {
            return false;
        };
        let before = buf.len();
        let read = conn::read_head(&mut stream, &mut buf, max_head);
        // Parse the first bytes (garbage is refused at once) and then only
        // when a head could have ended: a client sending a byte at a time
        // must not make us re-parse the whole head per byte.
        let parsed = if before == 0 || handshake::may_end_head(&buf, before) {
            handshake::parse_request(&buf, max_head)
        } else if buf.len() > max_head {
            Err(Reject::HeadTooLarge(max_head))
        } else {
            Ok(None)
        };
        let outcome = match (read, parsed) {
            (_, Ok(Some((req, head_len)))) => self.decide(slot, req, buf.split_off(head_len)),
            (_, Err(reject)) => Err(reject),
            (Ok(HeadRead::WouldBlock), Ok(None)) => {
                self.set_phase(slot, Phase::Request { stream, buf });
                return false;
            }
            (Ok(HeadRead::Full), Ok(None)) => Err(Reject::HeadTooLarge(max_head)),
            (Ok(HeadRead::Eof), Ok(None)) | (Err(_), Ok(None)) => {
                self.remove(slot);
                return false;
            }
        };
        let (out, upgrade) = match outcome {
            Ok(upgrade) => (handshake::accept_response(&upgrade.1), Some(upgrade.0)),
            Err(reject) => {
                debug!(
                    "refused {:?}: {reject}",
                    self.conn_mut(slot).map(|c| c.peer)
                );
                (reject.response(), None)
            }
        };
        self.set_phase(
            slot,
            Phase::Response {
                stream,
                out,
                pos: 0,
                upgrade,
            },
        );
        true
    }

    /// Routes and checks a complete request: the upgrade to perform (with
    /// the client's key), or why not.
    fn decide(
        &mut self,
        slot: usize,
        req: handshake::Request,
        leftover: Vec<u8>,
    ) -> Result<(Box<Upgrade>, String), Reject> {
        let (m, params) = self
            .app
            .routes
            .find(&req.path)
            .ok_or_else(|| Reject::NotFound(req.path.clone()))?;
        let key = handshake::validate_upgrade(&req)?.to_string();
        let allowed = &self.config.server.allowed_origins;
        if !allowed.is_empty() {
            match req.header("Origin") {
                None => return Err(Reject::Forbidden("an Origin header is required".into())),
                Some(o) if !handshake::origin_allowed(o, allowed) => {
                    return Err(Reject::Forbidden(format!("origin {o} is not allowed")))
                }
                Some(_) => {}
            }
        }
        let (route, max_message_size) = (m.index, m.target.max_message_size);
        let template = m.template.as_str().to_string();
        let peer = self
            .conn_mut(slot)
            .map(|c| c.peer)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let serial = self.conn_mut(slot).map_or(0, |c| c.serial);
        let info = ConnInfo {
            id: ConnId::new(self.pid, serial),
            peer,
            path: req.path,
            query: req.query,
            headers: req.headers,
            params,
            route: template,
            subprotocol: None,
            value: Default::default(),
        };
        Ok((
            Box::new(Upgrade {
                info,
                route,
                leftover,
                max_message_size,
            }),
            key,
        ))
    }

    fn step_response(&mut self, slot: usize) -> bool {
        let Phase::Response {
            mut stream,
            out,
            mut pos,
            upgrade,
        } = self.take_phase(slot)
        else {
            return false;
        };
        match conn::write_out(&mut stream, &out, &mut pos) {
            Ok(false) => {
                self.set_phase(
                    slot,
                    Phase::Response {
                        stream,
                        out,
                        pos,
                        upgrade,
                    },
                );
                false
            }
            Err(_) => {
                self.remove(slot);
                false
            }
            Ok(true) => match upgrade {
                Some(up) => {
                    self.open(slot, stream, *up);
                    true
                }
                None => {
                    self.linger(slot, stream);
                    true
                }
            },
        }
    }

    /// Turns a connection whose 101 is written into a WebSocket.
    fn open(&mut self, slot: usize, stream: Stream, up: Upgrade) {
        let s = &self.config.server;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(up.max_message_size))
            .max_frame_size(Some(s.max_frame_size.min(up.max_message_size)));
        let stream = TextChecked::frames(stream, &up.leftover);
        let ws = WebSocket::from_partially_read(stream, up.leftover, Role::Server, Some(config));
        let open = Open {
            ws,
            info: up.info,
            route: up.route,
            last_rx: self.now,
            ping_sent: false,
            closing_since: None,
            flush_due: false,
            peer_close: None,
            read_paused: false,
        };
        self.set_phase(slot, Phase::Open(Box::new(open)));
        self.call(slot, |h, c| h.on_open(c));
        self.apply_actions(slot);
        if matches!(self.mode, Mode::Draining { .. }) {
            self.close_for_shutdown(slot);
        }
    }

    fn linger(&mut self, slot: usize, mut stream: Stream) {
        stream.close_write();
        let until = self.now + CLOSE_GRACE;
        if let Some(c) = self.conn_mut(slot) {
            c.linger_until = Some(until);
        }
        self.set_phase(slot, Phase::Linger { stream });
    }

    fn step_linger(&mut self, slot: usize) -> bool {
        let done = match self.conn_mut(slot).map(|c| &mut c.phase) {
            Some(Phase::Linger { stream }) => {
                // Our last words may still be queued behind a full socket.
                stream.close_write();
                !matches!(conn::discard(stream), Ok(false))
            }
            _ => false,
        };
        if done {
            self.remove(slot);
        }
        false
    }

    /// Reads and dispatches messages until the socket would block, then
    /// flushes what the handlers queued.
    fn step_open(&mut self, slot: usize) {
        let now = self.now;
        if let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) {
            if open.read_paused {
                self.flush(slot);
            }
        }
        let mut budget = READ_BUDGET;
        loop {
            let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) else {
                return;
            };
            if open.read_paused {
                break;
            }
            if open.queued() > PAUSE_QUEUED {
                // Our replies pile up faster than the peer reads them:
                // write what the socket takes and pause reading if it is full.
                self.flush(slot);
                if !self.is_reading(slot) {
                    break;
                }
            }
            let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) else {
                return;
            };
            if budget == 0 {
                // Let the other connections of this worker have a turn;
                // the readiness edge is spent, so come back after them.
                self.resume.push(slot);
                break;
            }
            budget -= 1;
            match open.ws.read() {
                Ok(message) => {
                    open.last_rx = now;
                    open.ping_sent = false;
                    self.dispatch(slot, message);
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    // Replies queued before the close (and tungstenite's
                    // close reply) are still sent.
                    let _ = open.ws.flush();
                    let _ = io::Write::flush(open.ws.get_mut());
                    self.remove(slot);
                    return;
                }
                Err(e) => {
                    self.fail(slot, e);
                    return;
                }
            }
        }
        self.flush(slot);
    }

    /// Whether the connection is open and not paused.
    fn is_reading(&self, slot: usize) -> bool {
        matches!(
            self.conns.get(slot).and_then(Option::as_ref).map(|c| &c.phase),
            Some(Phase::Open(open)) if !open.read_paused
        )
    }

    /// Hands one received message to the route's handler.
    fn dispatch(&mut self, slot: usize, message: Message) {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                self.call(slot, |h, c| h.on_message(c, message));
            }
            Message::Ping(payload) => {
                self.call(slot, |h, c| {
                    h.on_ping(c, &payload);
                    Ok(())
                });
            }
            Message::Pong(payload) => {
                self.call(slot, |h, c| {
                    h.on_pong(c, &payload);
                    Ok(())
                });
            }
            Message::Close(frame) => {
                let now = self.now;
                if let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) {
                    // Our reply may never be read: bound the wait for it.
                    open.closing_since.get_or_insert(now);
                    open.peer_close = Some(match frame {
                        Some(f) => (f.code, f.reason.to_string()),
                        None => (CloseCode::Status, String::new()),
                    });
                }
            }
            Message::Frame(_) => {}
        }
        self.apply_actions(slot);
    }

    /// Calls a handler callback for the connection in `slot`, catching
    /// panics (the connection is closed with 1011) and passing errors to
    /// `on_error`.
    fn call<F>(&mut self, slot: usize, f: F)
    where
        F: FnOnce(&mut dyn Handler, &mut HandlerConn<'_>) -> Result<(), HandlerError>,
    {
        let Some(Phase::Open(open)) = self
            .conns
            .get(slot)
            .and_then(Option::as_ref)
            .map(|c| &c.phase)
        else {
            return;
        };
        let route = open.route;
        let Some(handler) = self.handlers.get_mut(route) else {
            return;
        };
        let info = &open.info;
        let actions = &mut self.actions;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut conn = HandlerConn::new(info, actions);
            let result = f(handler.as_mut(), &mut conn);
            if let Err(e) = &result {
                handler.on_error(&mut conn, e);
            }
        }));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(
                "route {}: handler panicked on connection {}: {what}; closing it with 1011",
                info.route, info.id
            );
            self.actions.clear();
            self.actions
                .push(Action::Close(CloseCode::Error, "internal error".into()));
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
                        self.broadcast(key, skip, message);
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
        match self
            .conns
            .get(slot)
            .and_then(Option::as_ref)
            .map(|c| &c.phase)
        {
            Some(Phase::Open(open)) => Some((
                RoomKey::of(&open.info, scope),
                skip_self.then_some(open.info.id),
            )),
            _ => None,
        }
    }

    /// Queues a message to one connection (flushed later). A connection
    /// whose backlog would pass `max_send_buffer` plus one largest message
    /// is dropped: the hard bound behind read pausing and the broadcast
    /// check, for handlers that send many messages in one callback.
    fn send(&mut self, slot: usize, message: Message) {
        let limit = self.config.server.max_send_buffer + self.config.server.max_message_size;
        let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) else {
            return;
        };
        if open.queued() + message.len() > limit {
            warn!(
                "connection {} from {}: {} bytes queued, over max_send_buffer + max_message_size; disconnecting it",
                open.info.id,
                open.info.peer,
                open.queued()
            );
            self.remove(slot);
            return;
        }
        if open.ws.can_write() {
            // Data frames bypass tungstenite's write buffer (which keeps
            // its largest size for good): see `Stream::send_frame`.
            let frame = match &message {
                Message::Text(t) => Some((1, t.as_bytes())),
                Message::Binary(b) => Some((2, &b[..])),
                _ => None,
            };
            if let Some((opcode, payload)) = frame {
                match open.ws.get_mut().send_frame(opcode, payload) {
                    Ok(()) => {}
                    Err(e) => {
                        debug!("send to {} failed: {e}", open.info.id);
                        self.remove(slot);
                    }
                }
                return;
            }
        }
        match open.ws.write(message) {
            Ok(()) => {}
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(WsError::Protocol(ProtocolError::SendAfterClosing))
            | Err(WsError::AlreadyClosed) => {}
            Err(e) => {
                debug!("send to {} failed: {e}", open.info.id);
                self.remove(slot);
            }
        }
    }

    fn close(&mut self, slot: usize, code: CloseCode, reason: String) {
        let now = self.now;
        let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) else {
            return;
        };
        if open.closing_since.is_none() {
            open.closing_since = Some(now);
        }
        let _ = open.ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        self.flush(slot);
    }

    /// A protocol error: tell the peer why (1002, 1007, 1009), then drop it.
    fn fail(&mut self, slot: usize, error: WsError) {
        let Some(code) = crate::protocol::close_code_for(&error) else {
            self.remove(slot);
            return;
        };
        let reason = error.to_string();
        debug!("closing a connection with {code}: {reason}");
        let err: HandlerError = reason.clone().into();
        self.call(slot, |h, c| {
            h.on_error(c, &err);
            Ok(())
        });
        self.actions.clear();
        let Phase::Open(mut open) = self.take_phase(slot) else {
            return;
        };
        let _ = open.ws.close(Some(CloseFrame {
            code,
            reason: reason.chars().take(100).collect::<String>().into(),
        }));
        let _ = open.ws.flush();
        self.notify_close(&mut open);
        let stream = open.ws.into_inner().into_inner();
        self.linger(slot, stream);
        // The readiness edge may already be spent: look for EOF now.
        self.step_linger(slot);
    }

    /// Writes queued output; pauses reading while the socket is full.
    fn flush(&mut self, slot: usize) {
        let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) else {
            return;
        };
        match open.ws.flush() {
            Ok(()) => {
                if open.read_paused {
                    // Input may have waited while we were paused, and its
                    // readiness edge is spent: read it after this event.
                    open.read_paused = false;
                    self.resume.push(slot);
                }
            }
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                open.read_paused = true;
            }
            Err(_) => self.remove(slot),
        }
    }

    // ---- broadcast ----

    /// Delivers `message` to the local connections matching `key` (but
    /// `skip`) and, through the master, to the other workers.
    fn broadcast(&mut self, key: RoomKey, skip: Option<ConnId>, message: Message) {
        if !matches!(message, Message::Text(_) | Message::Binary(_)) {
            debug!("only text and binary messages can be broadcast; dropped");
            return;
        }
        self.publish(&key, skip, &message);
        // Receivers are flushed once at the end of this loop turn, so a
        // burst of broadcasts costs one write per receiver.
        self.deliver(&key, skip, &message);
    }

    /// Sends a broadcast to the other workers through the master.
    fn publish(&mut self, key: &RoomKey, skip: Option<ConnId>, message: &Message) {
        if let Some(link) = self.relay.as_mut() {
            link.publish(&RelayMessage {
                key: key.clone(),
                skip,
                message: message.clone(),
            });
        }
    }

    /// Queues `message` to the local connections matching `key`; the
    /// caller flushes them (`flush_queued`).
    fn deliver(&mut self, key: &RoomKey, skip: Option<ConnId>, message: &Message) {
        let max = self.config.server.max_send_buffer;
        for slot in 0..self.conns.len() {
            let Some(Phase::Open(open)) = self.conns[slot].as_ref().map(|c| &c.phase) else {
                continue;
            };
            if Some(open.info.id) == skip
                || !key.matches(&open.info)
                || open.closing_since.is_some()
            {
                continue;
            }
            if open.queued() > max {
                warn!(
                    "connection {} from {} is not reading: {} bytes queued (max_send_buffer {max}); disconnecting it",
                    open.info.id,
                    open.info.peer,
                    open.queued()
                );
                self.remove(slot);
                continue;
            }
            self.send(slot, message.clone());
            if let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) {
                if !std::mem::replace(&mut open.flush_due, true) {
                    self.flush_due.push(slot);
                }
            }
        }
    }

    /// Flushes the receivers of this turn's broadcasts, once each.
    fn flush_queued(&mut self) {
        for slot in std::mem::take(&mut self.flush_due) {
            if let Some(Phase::Open(open)) = self.conn_mut(slot).map(|c| &mut c.phase) {
                open.flush_due = false;
                self.flush(slot);
            }
        }
    }

    fn schedule_many(
        &mut self,
        key: RoomKey,
        skip: Option<ConnId>,
        messages: Vec<Message>,
        delay: Duration,
    ) {
        let mut queue: std::collections::VecDeque<Message> = messages.into();
        let Some(first) = queue.pop_front() else {
            return;
        };
        self.broadcast(key.clone(), skip, first);
        if queue.is_empty() {
            return;
        }
        self.next_delayed += 1;
        let id = self.next_delayed;
        self.delayed.push(Delayed {
            id,
            key,
            skip,
            messages: queue,
            delay,
        });
        self.timers.push(self.now + delay, TimerKey::Delayed(id));
    }

    fn fire_delayed(&mut self, id: u64) {
        let Some(pos) = self.delayed.iter().position(|d| d.id == id) else {
            return;
        };
        let Some(message) = self.delayed[pos].messages.pop_front() else {
            self.delayed.swap_remove(pos);
            return;
        };
        let d = &self.delayed[pos];
        let (key, skip, delay) = (d.key.clone(), d.skip, d.delay);
        if d.messages.is_empty() {
            self.delayed.swap_remove(pos);
        } else {
            self.timers.push(self.now + delay, TimerKey::Delayed(id));
        }
        self.broadcast(key, skip, message);
    }

    fn on_relay(&mut self, readable: bool, writable: bool) {
        let Some(link) = self.relay.as_mut() else {
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
        // Receivers are flushed once at the end of the loop turn
        // (`run_deferred`): one write each for the whole batch.
        for m in incoming {
            self.deliver(&m.key, m.skip, &m.message);
        }
        if !alive {
            // The master is gone; PDEATHSIG will end us, but do not spin.
            warn!("worker {}: relay link to the master closed", self.index);
            if let Some(mut link) = self.relay.take() {
                link.deregister(self.poll.registry());
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
            }
        }
    }

    fn mode_timer(&mut self) {
        match self.mode {
            Mode::Retiring { deadline } if self.now >= deadline => {
                info!(
                    "worker {}: drain_timeout passed with {} connections open; closing them",
                    self.index, self.live
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
                    self.index, self.live
                );
                for slot in 0..self.conns.len() {
                    if self.conns[slot].is_some() {
                        self.remove(slot);
                    }
                }
            }
            _ => {}
        }
    }

    fn conn_timer(&mut self, slot: usize, serial: u32, at: Instant) {
        let now = self.now;
        let server = &self.config.server;
        let (hs, idle, ping) = (
            server.handshake_timeout,
            server.idle_timeout,
            server.ping_interval,
        );
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.serial != serial || conn.scheduled != Some(at) {
            return;
        }
        conn.scheduled = None;
        match due(conn, now, hs, idle, ping) {
            Due::Nothing => {}
            Due::Drop(why) => {
                debug!("dropping connection from {}: {why}", conn.peer);
                self.remove(slot);
                return;
            }
            Due::Close => {
                debug!("connection from {} idle; closing it", conn.peer);
                self.close(slot, CloseCode::Away, "idle timeout".into());
            }
            Due::Ping => {
                if let Phase::Open(open) = &mut conn.phase {
                    open.ping_sent = true;
                    let _ = open.ws.write(Message::Ping(Default::default()));
                }
                self.flush(slot);
            }
        }
        self.reschedule(slot);
    }

    /// Puts the connection's next deadline in the heap if it is earlier
    /// than the one already there.
    fn reschedule(&mut self, slot: usize) {
        let hs = self.config.server.handshake_timeout;
        let idle = self.config.server.idle_timeout;
        let ping = self.config.server.ping_interval;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let next = match &conn.phase {
            Phase::TlsHandshake(_) | Phase::Request { .. } | Phase::Response { .. } => {
                Some(conn.accepted + hs)
            }
            Phase::Linger { .. } => conn.linger_until,
            Phase::Open(open) => match open.closing_since {
                Some(t) => Some(t + CLOSE_GRACE),
                None => {
                    let limit = idle.or(ping.map(|p| p * 2)).map(|l| open.last_rx + l);
                    let ping_at = ping.filter(|_| !open.ping_sent).map(|p| open.last_rx + p);
                    match (limit, ping_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
            },
            Phase::Gone => None,
        };
        if let Some(at) = next {
            if conn.scheduled.is_none_or(|s| at < s) {
                conn.scheduled = Some(at);
                self.timers.push(at, TimerKey::Conn(slot, conn.serial));
            }
        }
    }

    // ---- removal ----

    fn notify_close(&mut self, open: &mut Open) {
        let (code, reason) = match open.peer_close.take() {
            Some((c, r)) => (Some(c), r),
            None => (None, String::new()),
        };
        if let Some(handler) = self.handlers.get_mut(open.route) {
            let info = &open.info;
            let actions = &mut self.actions;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mut conn = HandlerConn::new(info, actions);
                handler.on_close(&mut conn, code, &reason);
            }));
            if outcome.is_err() {
                error!(
                    "route {}: handler panicked in on_close of {}",
                    info.route, info.id
                );
            }
        }
        // A closing connection cannot send; broadcasts it asked for still
        // go, relayed now and delivered locally between event batches (a
        // removal can happen inside a delivery loop).
        for action in std::mem::take(&mut self.actions) {
            if let Action::Broadcast { scope, message, .. } = action {
                let key = RoomKey::of(&open.info, scope);
                let skip = Some(open.info.id);
                self.publish(&key, skip, &message);
                self.pending.push_back((key, skip, message));
            }
        }
    }

    /// Forgets a connection: deregisters it, tells its handler, frees the
    /// slot and, if accepting was paused for capacity, resumes it.
    fn remove(&mut self, slot: usize) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let phase = std::mem::replace(&mut conn.phase, Phase::Gone);
        let fd = match &phase {
            Phase::TlsHandshake(mid) => Some(mid.get_ref().as_raw_fd()),
            Phase::Request { stream, .. }
            | Phase::Response { stream, .. }
            | Phase::Linger { stream } => Some(stream.as_raw_fd()),
            Phase::Open(open) => Some(open.ws.get_ref().as_raw_fd()),
            Phase::Gone => None,
        };
        if let Some(fd) = fd {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.free.push(slot);
        self.live -= 1;
        if let Phase::Open(mut open) = phase {
            self.notify_close(&mut open);
        }
        drop(conn);
        if self.mode == Mode::Serving && !self.listening {
            self.resume_accepting();
        }
    }
}

/// What a connection's timer found due.
enum Due {
    Nothing,
    Drop(&'static str),
    Close,
    Ping,
}

fn due(
    conn: &Conn,
    now: Instant,
    handshake: Duration,
    idle: Option<Duration>,
    ping: Option<Duration>,
) -> Due {
    match &conn.phase {
        Phase::TlsHandshake(_) | Phase::Request { .. } | Phase::Response { .. } => {
            if now >= conn.accepted + handshake {
                return Due::Drop("handshake_timeout passed");
            }
        }
        Phase::Linger { .. } => {
            if conn.linger_until.is_some_and(|t| now >= t) {
                return Due::Drop("linger time passed");
            }
        }
        Phase::Open(open) => {
            if let Some(t) = open.closing_since {
                if now >= t + CLOSE_GRACE {
                    return Due::Drop("no close reply in time");
                }
                return Due::Nothing;
            }
            let silent = now.saturating_duration_since(open.last_rx);
            if idle.or(ping.map(|p| p * 2)).is_some_and(|l| silent >= l) {
                return Due::Close;
            }
            if !open.ping_sent && ping.is_some_and(|p| silent >= p) {
                return Due::Ping;
            }
        }
        Phase::Gone => {}
    }
    Due::Nothing
}
