//! The worker's side of `exec` routes: starting a connection's program
//! when its WebSocket opens, its messages to stdin, its stdout to the
//! client (with backpressure both ways), reaping on SIGCHLD, closing the
//! connection when the program ends, and ending a program whose client
//! left (stdin closed, SIGTERM and SIGKILL after `kill_grace` each).
//!
//! The process and its pipes are `crate::exec`'s; [`Programs`] connects
//! them to the loop, which owns it: its methods take the connection (or
//! the connection table) they act on and return what the loop must do,
//! an [`Outcome`] for the connection or a deadline for the timer heap.
//! Pipe events arrive under the tokens of the connection's slot (see
//! `tokens.rs`).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Registry;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::children::{Children, Owner, Program};
use super::conn::{Conn, Outcome, State};
use super::counters::Counters;
use super::session::{Flush, Sent};
use super::slab::Slab;
use super::tokens::{token, Part, CHILDREN};
use crate::app::App;
use crate::config::{ExecConfig, ExecMode};
use crate::exec::{self, env, OutRead, Output, Pipe, Process};
use crate::message::{CloseCode, Message};
use crate::signals::SignalPipe;

/// Reads from one program's stdout before the other connections get a
/// turn (16 KiB each).
const OUTPUT_BUDGET: usize = 64;

/// The programs of a worker's `exec` connections and what it needs to
/// run them.
pub(super) struct Programs {
    /// Per route index: its `exec` program and message limit, if any.
    routes: Vec<Option<(Rc<ExecConfig>, usize)>>,
    /// The running programs.
    children: Children,
    /// SIGCHLD, which reaps them.
    sigchld: SignalPipe,
    /// The listening address, for the programs' `SERVER_PORT`.
    local: SocketAddr,
    /// Whether clients come over TLS (`HTTPS` for the programs).
    tls: bool,
    /// The send queue above which stdout is left unread.
    max_send_buffer: usize,
    /// Shared counters (`stats.rs`).
    stats: Counters,
    /// A program's stdout is read into this, reused.
    buf: Vec<u8>,
    /// A read's messages, reused.
    out: Vec<Output>,
}

impl Programs {
    /// The `exec` routes of `app`, with SIGCHLD registered under
    /// `CHILDREN`.
    pub fn new(
        app: &App,
        registry: &Registry,
        local: SocketAddr,
        tls: bool,
        max_send_buffer: usize,
        stats: Counters,
    ) -> io::Result<Programs> {
        let sigchld = SignalPipe::new(&[signal_hook::consts::SIGCHLD])?;
        sigchld.register(registry, CHILDREN)?;
        let routes: Vec<_> = app
            .routes
            .iter()
            .map(|(_, r)| r.exec.clone().map(|e| (e, r.max_message_size)))
            .collect();
        Ok(Programs {
            children: Children::new(routes.len()),
            routes,
            sigchld,
            local,
            tls,
            max_send_buffer,
            stats,
            buf: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Programs running per route index (for `max_processes`).
    pub fn running(&self) -> &[usize] {
        self.children.running()
    }

    /// Whether no program is running (a stopping worker waits for them).
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The `exec` route of an open connection, if it is on one.
    fn route_of(&self, conn: &Conn) -> Option<usize> {
        let route = conn.session()?.route;
        self.routes.get(route)?.as_ref().map(|_| route)
    }

    /// Whether the open connection is on an `exec` route.
    pub fn serves(&self, conn: &Conn) -> bool {
        self.route_of(conn).is_some()
    }

    /// Starts the program of a freshly opened connection in `slot`;
    /// closes it with 1011 (and a log line naming the route and the
    /// error) if it cannot.
    pub fn start(
        &mut self,
        registry: &Registry,
        slot: usize,
        conn: &mut Conn,
        now: Instant,
    ) -> Outcome {
        let Some(route) = self.route_of(conn) else {
            return Outcome::Keep;
        };
        let Some((cfg, max_message_size)) = self.routes[route].clone() else {
            return Outcome::Keep;
        };
        let serial = conn.serial;
        let Some(session) = conn.session() else {
            return Outcome::Keep;
        };
        let template = session.info.route().to_string();
        if let Some(max) = cfg.max_processes {
            // Several connections may have passed the check before the
            // upgrade at once.
            if self.children.running()[route] >= max {
                return conn.close(CloseCode::AGAIN, "max_processes reached".into(), now);
            }
        }
        let request = env::Request {
            info: &session.info,
            local: self.local,
            tls: self.tls,
            subprotocol: session.info.subprotocol(),
        };
        let vars = env::build(&cfg, &request, |k| std::env::var(k).ok());
        let started = Process::start(&cfg, &vars, &template, max_message_size).and_then(|p| {
            match p.register(registry, |pipe| token(slot, Part::Pipe(pipe))) {
                Ok(()) => Ok(p),
                Err(e) => {
                    // Reaped on SIGCHLD like any other child.
                    exec::signal(p.pid(), Signal::SIGKILL);
                    Err(e)
                }
            }
        });
        let process = match started {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    "route {template}: cannot start {:?}: {e}",
                    cfg.command.first().map_or("", String::as_str)
                );
                let reason = format!("cannot start the program: {e}");
                return conn.close(CloseCode::ERROR, reason, now);
            }
        };
        self.children.add(process.pid(), route, slot, serial);
        conn.exec = Some(Box::new(Program {
            process,
            input_paused: false,
            // Set so the first drive reads what is already there.
            output_waiting: true,
            route,
        }));
        Outcome::Keep
    }

    /// Writes a client's message to its program's stdin: in lines mode a
    /// text message gets a `\n` unless it contains one.
    pub fn input(&self, registry: &Registry, program: &mut Program, message: Message) {
        let lines = self.routes[program.route]
            .as_ref()
            .is_some_and(|(e, _)| e.mode == ExecMode::Lines);
        match message {
            Message::Text(t) => {
                let newline = lines && !t.contains('\n');
                program.process.write(registry, t.as_bytes(), newline);
            }
            Message::Binary(b) => program.process.write(registry, &b, false),
        }
    }

    /// A readiness event on one of the pipes of the connection's program.
    pub fn on_pipe(
        &mut self,
        registry: &Registry,
        conn: &mut Conn,
        pipe: Pipe,
        now: Instant,
    ) -> Outcome {
        let Some(program) = conn.exec.as_mut() else {
            return Outcome::Keep;
        };
        match pipe {
            Pipe::Stdin => {
                program.process.flush_input(registry);
                if program.input_paused
                    && program.process.pending_input() <= exec::MAX_PENDING_INPUT / 2
                {
                    program.input_paused = false;
                    // The client's readiness edge may be spent.
                    return Outcome::Resume;
                }
                Outcome::Keep
            }
            Pipe::Stdout => {
                program.output_waiting = true;
                self.output(registry, conn, now)
            }
            Pipe::Stderr => {
                program.process.drain_stderr(registry, now);
                Outcome::Keep
            }
        }
    }

    /// Moves what the program printed to the client while its send queue
    /// is under `max_send_buffer`; past that, stdout is left unread (the
    /// program blocks on its pipe) until the socket takes the queue.
    /// Closes the connection once the program has exited and its output
    /// is sent.
    pub fn output(&mut self, registry: &Registry, conn: &mut Conn, now: Instant) -> Outcome {
        let max = self.max_send_buffer;
        self.buf.resize(exec::READ_CHUNK, 0);
        let mut budget = OUTPUT_BUDGET;
        let step = loop {
            let (Some(program), State::Open(session)) = (&mut conn.exec, &mut conn.state) else {
                break Step::Gone;
            };
            if !program.output_waiting || session.closing_since.is_some() {
                break Step::Flush;
            }
            if session.queued() > max {
                match session.flush() {
                    Flush::Done { .. } => {}
                    Flush::Blocked => break Step::Flush,
                    Flush::Broken => break Step::Drop,
                }
            }
            if budget == 0 {
                break Step::Later;
            }
            budget -= 1;
            let read = program
                .process
                .read_output(registry, &mut self.buf, &mut self.out);
            let mut dropped = false;
            for message in self.out.drain(..) {
                let message = match message {
                    Output::Text(t) => Message::text(t),
                    Output::Binary(b) => Message::binary(b),
                };
                match session.send(message, max + exec::READ_CHUNK) {
                    Sent::Drop => dropped = true,
                    // STATS: compressions of the program's messages
                    Sent::Queued {
                        compressed: Some(c),
                    } => self.stats.compressed(c),
                    Sent::Queued { compressed: None } => {}
                }
            }
            if dropped {
                break Step::Drop;
            }
            match read {
                OutRead::Data => {}
                OutRead::WouldBlock | OutRead::Eof => {
                    program.output_waiting = false;
                    break Step::Flush;
                }
                OutRead::TooLong(len) => break Step::TooLong(len),
            }
        };
        match step {
            Step::Gone => Outcome::Keep,
            Step::Drop => Outcome::Remove,
            Step::Later => Outcome::Resume.and(conn.flush()),
            Step::Flush => match conn.flush() {
                Outcome::Remove => Outcome::Remove,
                flushed => flushed.and(finish(conn, now)),
            },
            Step::TooLong(len) => {
                let reason =
                    format!("the program printed a line of {len} bytes, over max_message_size");
                debug!("{reason}");
                conn.close(CloseCode::SIZE, reason, now)
            }
        }
    }

    /// SIGCHLD: reaps every program that ended and moves what it printed
    /// last to its client. Returns the connections whose program ended,
    /// with what the loop must do with each.
    pub fn reap(
        &mut self,
        registry: &Registry,
        conns: &mut Slab<Conn>,
        now: Instant,
    ) -> Vec<(usize, Outcome)> {
        self.sigchld.take();
        let mut ended = Vec::new();
        for (pid, exit) in exec::reap() {
            match self.children.reaped(pid) {
                Some(Owner::Conn { slot, serial }) => {
                    let Some(conn) = conns.get_mut(slot).filter(|c| c.serial == serial) else {
                        continue;
                    };
                    let Some(program) = conn.exec.as_mut() else {
                        continue;
                    };
                    debug!("pid {pid}: {exit}");
                    program.process.set_exit(exit);
                    program.process.close_stdin(registry);
                    // Input is dropped now; read the client (for its close
                    // reply) again.
                    let resume = match std::mem::take(&mut program.input_paused) {
                        true => Outcome::Resume,
                        false => Outcome::Keep,
                    };
                    // What it printed last may be in the pipe, its
                    // readiness edge seen already.
                    program.output_waiting = true;
                    ended.push((slot, resume.and(self.output(registry, conn, now))));
                }
                Some(Owner::Orphan) => debug!("pid {pid} (its client gone): {exit}"),
                None => debug!("reaped pid {pid}, not one of ours: {exit}"),
            }
        }
        ended
    }

    /// The connection of `program` is gone: closes the pipes. If the
    /// program still runs, returns its pid and when to send it SIGTERM
    /// (`kill_grace` from now): see [`kill`](Self::kill).
    pub fn hang_up(
        &mut self,
        registry: &Registry,
        program: Option<Box<Program>>,
        now: Instant,
    ) -> Option<(i32, Instant)> {
        let program = program?;
        let grace = self.grace_of_route(program.route);
        let pid = program.process.hang_up(registry, now)?;
        self.children.orphan(pid);
        Some((pid.as_raw(), now + grace))
    }

    /// An orphaned program's grace time passed: SIGTERM at `stage` 1,
    /// SIGKILL at 2. Returns when the next stage is due, if there is one.
    pub fn kill(&mut self, pid: i32, stage: u8, now: Instant) -> Option<Instant> {
        let pid = Pid::from_raw(pid);
        if !self.children.is_orphan(pid) {
            return None;
        }
        let grace = self
            .children
            .route_of(pid)
            .map_or(Duration::ZERO, |r| self.grace_of_route(r));
        if stage == 1 {
            info!("pid {pid} still running {grace:?} after its client left; SIGTERM");
            exec::signal(pid, Signal::SIGTERM);
            Some(now + grace)
        } else {
            info!("pid {pid} survived SIGTERM; SIGKILL");
            exec::signal(pid, Signal::SIGKILL);
            None
        }
    }

    /// The `kill_grace` of `route`'s program.
    fn grace_of_route(&self, route: usize) -> Duration {
        self.routes
            .get(route)
            .and_then(Option::as_ref)
            .map_or(Duration::ZERO, |(e, _)| e.kill_grace)
    }
}

/// Closes the connection once its program has exited and all it printed
/// is queued: 1000 for status 0, 1011 otherwise.
fn finish(conn: &mut Conn, now: Instant) -> Outcome {
    let Some(program) = conn.exec.as_ref() else {
        return Outcome::Keep;
    };
    let Some(exit) = program.process.exit() else {
        return Outcome::Keep;
    };
    if !program.process.output_done() {
        return Outcome::Keep;
    }
    if conn.session().is_none_or(|s| s.closing_since.is_some()) {
        return Outcome::Keep;
    }
    let code = if exit.is_success() {
        CloseCode::NORMAL
    } else {
        CloseCode::ERROR
    };
    conn.close(code, exit.to_string(), now)
}

/// How moving a program's output ended.
enum Step {
    /// The connection or its program is gone.
    Gone,
    /// Flush; stdout is drained or waits for the socket.
    Flush,
    /// The read budget is spent: come back after the others.
    Later,
    /// The connection's backlog is too large or its socket failed.
    Drop,
    /// A line longer than `max_message_size`.
    TooLong(usize),
}
