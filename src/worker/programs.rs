//! The worker's side of `exec` routes: starting a connection's program
//! when its WebSocket opens, its messages to stdin, its stdout to the
//! client (with backpressure both ways), reaping on SIGCHLD, closing the
//! connection when the program ends, and ending a program whose client
//! left (stdin closed, SIGTERM and SIGKILL after `kill_grace` each).
//!
//! The process and its pipes are `crate::exec`'s; this module only
//! connects them to the loop: pipe events arrive under the tokens of the
//! connection's slot (see `token`), timers under `TimerKey::Kill`.

use log::{debug, info, warn};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::session::Sent;
use super::{token, Children, Conn, Owner, Part, Pipe, Program, TimerKey, Worker};
use crate::exec::{self, env, OutRead, Output, Process};
use crate::message::{CloseCode, Message};

/// Reads from one program's stdout before the other connections get a
/// turn (16 KiB each).
const OUTPUT_BUDGET: usize = 64;

/// Writes a client's message to its program's stdin: in lines mode a
/// text message gets a `\n` unless it contains one.
pub(super) fn input(
    process: &mut Process,
    registry: &mio::Registry,
    message: Message,
    lines: bool,
) {
    match message {
        Message::Text(t) => {
            let newline = lines && !t.contains('\n');
            process.write(registry, t.as_bytes(), newline);
        }
        Message::Binary(b) => process.write(registry, &b, false),
    }
}

impl Worker {
    /// The `exec` route of the open connection in `slot`, if it has one.
    pub(super) fn exec_route(&self, slot: usize) -> Option<usize> {
        let route = self.conns.get(slot).and_then(Conn::session)?.route;
        self.exec_routes.get(route)?.as_ref().map(|_| route)
    }

    /// Starts the program of a freshly opened connection; closes it with
    /// 1011 (and a log line naming the route and the error) if it cannot.
    pub(super) fn exec_start(&mut self, slot: usize) {
        let Some(route) = self.exec_route(slot) else {
            return;
        };
        let Some((cfg, max_message_size)) = self.exec_routes[route].clone() else {
            return;
        };
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let serial = conn.serial;
        let Some(session) = conn.session() else {
            return;
        };
        let template = session.info.route().to_string();
        if let Some(max) = cfg.max_processes {
            // Several connections may have passed the check before the
            // upgrade at once.
            if self.children.running()[route] >= max {
                self.close(slot, CloseCode::AGAIN, "max_processes reached".into());
                return;
            }
        }
        let request = env::Request {
            info: &session.info,
            local: self.local,
            tls: self.tls.is_some(),
            subprotocol: session.info.subprotocol(),
        };
        let vars = env::build(&cfg, &request, |k| std::env::var(k).ok());
        let started = Process::start(&cfg, &vars, &template, max_message_size).and_then(|p| {
            match p.register(self.poll.registry(), |pipe| token(slot, Part::Pipe(pipe))) {
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
                self.close(
                    slot,
                    CloseCode::ERROR,
                    format!("cannot start the program: {e}"),
                );
                return;
            }
        };
        self.children.add(process.pid(), route, slot, serial);
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.exec = Some(Box::new(Program {
                process,
                input_paused: false,
                // Set so the first drive reads what is already there.
                output_waiting: true,
                route,
            }));
        }
    }

    /// Whether reading the client in `slot` is paused for its program.
    pub(super) fn exec_input_paused(&self, slot: usize) -> bool {
        self.conns
            .get(slot)
            .and_then(|c| c.exec.as_ref())
            .is_some_and(|p| p.input_paused)
    }

    /// The client of a connection whose reading is paused (its program
    /// does not read stdin) hung up: what it sent would never reach the
    /// program, so the connection goes now, and its program as any whose
    /// client left.
    pub(super) fn exec_client_gone(&mut self, slot: usize) {
        debug!("an exec client hung up while its program's stdin was full");
        self.remove(slot);
    }

    /// After a batch of messages: pauses reading the client if its
    /// program's stdin has too much waiting; true if paused.
    pub(super) fn exec_input_full(&mut self, slot: usize) -> bool {
        let Some(program) = self.conns.get_mut(slot).and_then(|c| c.exec.as_mut()) else {
            return false;
        };
        if program.process.pending_input() > exec::MAX_PENDING_INPUT {
            program.input_paused = true;
        }
        program.input_paused
    }

    /// A readiness event on one of the pipes of the program in `slot`.
    pub(super) fn on_pipe(&mut self, slot: usize, pipe: Pipe) {
        let now = self.now;
        let registry = self.poll.registry();
        let Some(program) = self.conns.get_mut(slot).and_then(|c| c.exec.as_mut()) else {
            return;
        };
        match pipe {
            Pipe::Stdin => {
                program.process.flush_input(registry);
                if program.input_paused
                    && program.process.pending_input() <= exec::MAX_PENDING_INPUT / 2
                {
                    program.input_paused = false;
                    // The client's readiness edge may be spent.
                    self.resume.push(slot);
                }
            }
            Pipe::Stdout => {
                program.output_waiting = true;
                self.exec_output(slot);
            }
            Pipe::Stderr => program.process.drain_stderr(registry, now),
        }
    }

    /// Moves what the program printed to the client while its send queue
    /// is under `max_send_buffer`; past that, stdout is left unread (the
    /// program blocks on its pipe) until the socket takes the queue.
    /// Closes the connection once the program has exited and its output
    /// is sent.
    pub(super) fn exec_output(&mut self, slot: usize) {
        let max = self.config.server.max_send_buffer;
        let stats = self.stats;
        let mut buf = std::mem::take(&mut self.exec_buf);
        buf.resize(exec::READ_CHUNK, 0);
        let mut out = std::mem::take(&mut self.exec_out);
        let mut budget = OUTPUT_BUDGET;
        let outcome = loop {
            let Some(conn) = self.conns.get_mut(slot) else {
                break Step::Gone;
            };
            let (Some(program), super::conn::State::Open(session)) =
                (&mut conn.exec, &mut conn.state)
            else {
                break Step::Gone;
            };
            if !program.output_waiting || session.closing_since.is_some() {
                break Step::Flush;
            }
            if session.queued() > max {
                match session.flush() {
                    super::session::Flush::Done { .. } => {}
                    super::session::Flush::Blocked => break Step::Flush,
                    super::session::Flush::Broken => break Step::Drop,
                }
            }
            if budget == 0 {
                break Step::Later;
            }
            budget -= 1;
            let read = program
                .process
                .read_output(self.poll.registry(), &mut buf, &mut out);
            let mut dropped = false;
            for message in out.drain(..) {
                let message = match message {
                    Output::Text(t) => Message::text(t),
                    Output::Binary(b) => Message::binary(b),
                };
                match session.send(message, max + exec::READ_CHUNK) {
                    Sent::Drop => dropped = true,
                    // STATS: compressions of the program's messages
                    Sent::Queued {
                        compressed: Some(c),
                    } => {
                        if let Some(s) = stats {
                            s.compressed(c.raw, c.out);
                        }
                    }
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
                OutRead::TooLong(len) => {
                    break Step::TooLong(len);
                }
            }
        };
        self.exec_buf = buf;
        self.exec_out = out;
        match outcome {
            Step::Gone => {}
            Step::Drop => self.remove(slot),
            Step::Later => {
                self.resume.push(slot);
                self.flush(slot);
            }
            Step::Flush => {
                self.flush(slot);
                self.exec_finish(slot);
            }
            Step::TooLong(len) => {
                let reason =
                    format!("the program printed a line of {len} bytes, over max_message_size");
                debug!("{reason}");
                self.close(slot, CloseCode::SIZE, reason);
            }
        }
    }

    /// Closes the connection once its program has exited and all it
    /// printed is queued: 1000 for status 0, 1011 otherwise.
    fn exec_finish(&mut self, slot: usize) {
        let Some(program) = self.conns.get(slot).and_then(|c| c.exec.as_ref()) else {
            return;
        };
        let Some(exit) = program.process.exit() else {
            return;
        };
        if !program.process.output_done() {
            return;
        }
        let closing = self
            .conns
            .get(slot)
            .and_then(Conn::session)
            .is_none_or(|s| s.closing_since.is_some());
        if closing {
            return;
        }
        let code = if exit.is_success() {
            CloseCode::NORMAL
        } else {
            CloseCode::ERROR
        };
        self.close(slot, code, exit.to_string());
    }

    /// SIGCHLD: reaps every program that ended.
    pub(super) fn on_sigchld(&mut self) {
        self.child_signals.take();
        for (pid, exit) in exec::reap() {
            match self.children.reaped(pid) {
                Some(Owner::Conn { slot, serial }) => {
                    let Some(conn) = self.conns.get_mut(slot) else {
                        continue;
                    };
                    if conn.serial != serial {
                        continue;
                    }
                    let Some(program) = conn.exec.as_mut() else {
                        continue;
                    };
                    debug!("pid {pid}: {exit}");
                    program.process.set_exit(exit);
                    program.process.close_stdin(self.poll.registry());
                    if std::mem::take(&mut program.input_paused) {
                        // Input is dropped now; read the client (for its
                        // close reply) again.
                        self.resume.push(slot);
                    }
                    // What it printed last may be in the pipe, its
                    // readiness edge seen already.
                    program.output_waiting = true;
                    self.exec_output(slot);
                }
                Some(Owner::Orphan) => debug!("pid {pid} (its client gone): {exit}"),
                None => debug!("reaped pid {pid}, not one of ours: {exit}"),
            }
        }
    }

    /// The connection of `program` is gone: closes the pipes and, if the
    /// program still runs, schedules SIGTERM after `kill_grace`.
    pub(super) fn exec_hang_up(&mut self, program: Option<Box<Program>>) {
        let Some(program) = program else {
            return;
        };
        let grace = self.exec_routes[program.route]
            .as_ref()
            .map_or(std::time::Duration::ZERO, |(e, _)| e.kill_grace);
        if let Some(pid) = program.process.hang_up(self.poll.registry(), self.now) {
            self.children.orphan(pid);
            self.timers
                .push(self.now + grace, TimerKey::Kill(pid.as_raw(), 1));
        }
    }

    /// An orphaned program's grace time passed: SIGTERM, then SIGKILL.
    pub(super) fn kill_timer(&mut self, pid: i32, stage: u8) {
        let pid = Pid::from_raw(pid);
        if !is_orphan(&self.children, pid) {
            return;
        }
        if stage == 1 {
            info!(
                "pid {pid} still running {:?} after its client left; SIGTERM",
                self.grace_of(pid)
            );
            exec::signal(pid, Signal::SIGTERM);
            let grace = self.grace_of(pid);
            self.timers
                .push(self.now + grace, TimerKey::Kill(pid.as_raw(), 2));
        } else {
            info!("pid {pid} survived SIGTERM; SIGKILL");
            exec::signal(pid, Signal::SIGKILL);
        }
    }

    fn grace_of(&self, pid: Pid) -> std::time::Duration {
        self.children
            .route_of(pid)
            .and_then(|r| self.exec_routes.get(r)?.as_ref())
            .map_or(std::time::Duration::ZERO, |(e, _)| e.kill_grace)
    }
}

fn is_orphan(children: &Children, pid: Pid) -> bool {
    children.is_orphan(pid)
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
