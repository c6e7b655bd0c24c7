//! `exec` routes: one program per connection, its stdin, stdout and
//! stderr non-blocking pipes driven by the worker's event loop.
//!
//! This module owns the process and its pipes and knows nothing of the
//! event loop: the worker registers the pipes under tokens it allocates,
//! calls the methods below on their readiness events, and turns what they
//! return into messages, pauses and closes. See docs/exec.md.
//!
//! - `spawn`: fork and exec with the right descriptors and signals.
//! - `env`: the CGI-style environment.
//! - `lines`: output cut into lines (lines mode).

pub mod env;
pub mod lines;
pub mod spawn;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::{ExecConfig, ExecMode};
use lines::{Lines, TooLong};

/// Bytes of one read from the program's stdout (one binary message in
/// binary mode).
pub const READ_CHUNK: usize = 16 * 1024;
/// Input waiting for the program's stdin above which the worker stops
/// reading the client.
pub const MAX_PENDING_INPUT: usize = 256 * 1024;
/// stderr lines logged per program per second; the rest are counted.
const STDERR_LINES_PER_SEC: u32 = 20;
/// Longest stderr line logged; longer ones are cut.
const STDERR_LINE_MAX: usize = 1024;

/// A message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A line that is UTF-8.
    Text(String),
    /// A line that is not UTF-8, or a read in binary mode.
    Binary(Vec<u8>),
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    /// 1000 for status 0, 1011 otherwise.
    pub fn is_success(&self) -> bool {
        *self == Exit::Status(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Status(s) => write!(f, "program exited with status {s}"),
            Exit::Signal(s) => write!(f, "program killed by {}", crate::signals::name(*s)),
        }
    }
}

/// What one read from the program's stdout gave.
#[derive(Debug, PartialEq, Eq)]
pub enum OutRead {
    /// Messages may have been added; read again.
    Data,
    /// Nothing more for now.
    WouldBlock,
    /// stdout is closed (the last line, if any, was added).
    Eof,
    /// A line longer than `max_message_size`.
    TooLong(usize),
}

/// The pipes of a process, for registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// Its stdin (we write).
    Stdin,
    /// Its stdout (we read).
    Stdout,
    /// Its stderr (we read and log).
    Stderr,
}

/// A running program serving one connection.
pub struct Process {
    pid: Pid,
    route: String,
    stdin: Option<File>,
    /// Input not yet taken by the pipe, from `input_pos`.
    input: Vec<u8>,
    input_pos: usize,
    stdout: Option<File>,
    stderr: Option<File>,
    lines: Option<Lines>,
    stderr_log: StderrLog,
    exit: Option<Exit>,
}

impl Process {
    /// Starts `cfg.command` for a connection of `route` with `env`;
    /// `max_line` bounds a line in lines mode.
    pub fn start(
        cfg: &ExecConfig,
        env: &[(String, String)],
        route: &str,
        max_line: usize,
    ) -> io::Result<Process> {
        let s = spawn::spawn(cfg, env)?;
        debug!("route {route}: started {:?} as pid {}", cfg.command, s.pid);
        Ok(Process {
            pid: s.pid,
            route: route.to_string(),
            stdin: Some(s.stdin),
            input: Vec::new(),
            input_pos: 0,
            stdout: Some(s.stdout),
            stderr: Some(s.stderr),
            lines: (cfg.mode == ExecMode::Lines).then(|| Lines::new(max_line)),
            stderr_log: StderrLog::default(),
            exit: None,
        })
    }

    /// The program's pid (and process group).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// How it ended, once reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Records that it was reaped.
    pub fn set_exit(&mut self, exit: Exit) {
        self.exit = Some(exit);
    }

    /// Whether its stdout has reached its end.
    pub fn output_done(&self) -> bool {
        self.stdout.is_none()
    }

    /// Registers the open pipes, `token(pipe)` naming each.
    pub fn register(&self, registry: &Registry, token: impl Fn(Pipe) -> Token) -> io::Result<()> {
        if let Some(f) = &self.stdin {
            registry.register(
                &mut SourceFd(&f.as_raw_fd()),
                token(Pipe::Stdin),
                Interest::WRITABLE,
            )?;
        }
        for (f, pipe) in [(&self.stdout, Pipe::Stdout), (&self.stderr, Pipe::Stderr)] {
            if let Some(f) = f {
                registry.register(
                    &mut SourceFd(&f.as_raw_fd()),
                    token(pipe),
                    Interest::READABLE,
                )?;
            }
        }
        Ok(())
    }

    /// Queues a message's bytes for stdin (with a `\n` after it if
    /// `newline`) and writes what the pipe takes.
    pub fn write(&mut self, registry: &Registry, data: &[u8], newline: bool) {
        if self.stdin.is_none() {
            return;
        }
        if self.input_pos == self.input.len() {
            self.input.clear();
            self.input_pos = 0;
        }
        self.input.extend_from_slice(data);
        if newline {
            self.input.push(b'\n');
        }
        self.flush_input(registry);
    }

    /// Writes queued input until the pipe is full. A program that closed
    /// its stdin gets no more input.
    pub fn flush_input(&mut self, registry: &Registry) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        while self.input_pos < self.input.len() {
            match stdin.write(&self.input[self.input_pos..]) {
                Ok(n) => self.input_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(
                        "route {}: pid {}: stdin closed ({e}); dropping its input",
                        self.route, self.pid
                    );
                    self.close_stdin(registry);
                    return;
                }
            }
        }
        // All written: hold no buffer between messages.
        self.input = Vec::new();
        self.input_pos = 0;
    }

    /// Bytes waiting for stdin.
    pub fn pending_input(&self) -> usize {
        self.input.len() - self.input_pos
    }

    /// Closes stdin: the program reads end-of-file.
    pub fn close_stdin(&mut self, registry: &Registry) {
        if let Some(f) = self.stdin.take() {
            let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
        }
        self.input = Vec::new();
        self.input_pos = 0;
    }

    /// One read from stdout into `buf`, its messages appended to `out`.
    pub fn read_output(
        &mut self,
        registry: &Registry,
        buf: &mut [u8],
        out: &mut Vec<Output>,
    ) -> OutRead {
        let Some(stdout) = self.stdout.as_mut() else {
            return OutRead::Eof;
        };
        let n = loop {
            match stdout.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return OutRead::WouldBlock,
                Err(_) => break 0,
            }
        };
        if n == 0 {
            if let Some(last) = self.lines.as_mut().and_then(Lines::finish) {
                out.push(last);
            }
            self.close_stdout(registry);
            return OutRead::Eof;
        }
        match self.lines.as_mut() {
            None => out.push(Output::Binary(buf[..n].to_vec())),
            Some(lines) => {
                if let Err(TooLong(len)) = lines.push(&buf[..n], out) {
                    self.close_stdout(registry);
                    return OutRead::TooLong(len);
                }
            }
        }
        OutRead::Data
    }

    /// Stops reading stdout: a program that writes more gets EPIPE.
    pub fn close_stdout(&mut self, registry: &Registry) {
        if let Some(f) = self.stdout.take() {
            let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
        }
        self.lines = None;
    }

    /// Reads stderr until it would block, logging its lines (rate-limited)
    /// with the route and pid.
    pub fn drain_stderr(&mut self, registry: &Registry, now: Instant) {
        let Some(stderr) = self.stderr.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.stderr_log.push(&buf[..n], &self.route, self.pid, now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.stderr_log.finish(&self.route, self.pid);
        if let Some(f) = self.stderr.take() {
            let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
        }
    }

    /// The connection is gone: closes every pipe (stdin first, so the
    /// program reads end-of-file) and returns the pid to be watched
    /// until it exits, unless it has exited already.
    pub fn hang_up(mut self, registry: &Registry, now: Instant) -> Option<Pid> {
        self.close_stdin(registry);
        self.close_stdout(registry);
        self.drain_stderr(registry, now);
        if let Some(f) = self.stderr.take() {
            let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
        }
        self.exit.is_none().then_some(self.pid)
    }
}

/// Sends `signal` to the program's process group (the whole pipeline a
/// shell may have started).
pub fn signal(pid: Pid, sig: Signal) {
    if let Err(e) = nix::sys::signal::killpg(pid, sig) {
        debug!("killpg({pid}, {sig}): {e}");
    }
}

/// Reaps every child that has ended, without blocking: called when
/// SIGCHLD arrives.
pub fn reap() -> Vec<(Pid, Exit)> {
    let mut done = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) => done.push((pid, Exit::Status(status))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => done.push((pid, Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return done,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                warn!("waitpid: {e}");
                return done;
            }
        }
    }
}

/// stderr cut into lines and logged, at most `STDERR_LINES_PER_SEC`.
#[derive(Default)]
struct StderrLog {
    partial: Vec<u8>,
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl StderrLog {
    fn push(&mut self, mut data: &[u8], route: &str, pid: Pid, now: Instant) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.take(&data[..nl]);
            let line = std::mem::take(&mut self.partial);
            self.log(&line, route, pid, now);
            data = &data[nl + 1..];
        }
        self.take(data);
    }

    fn take(&mut self, data: &[u8]) {
        let room = STDERR_LINE_MAX.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    fn finish(&mut self, route: &str, pid: Pid) {
        let line = std::mem::take(&mut self.partial);
        if !line.is_empty() {
            info!(
                "route {route}: pid {pid} stderr: {}",
                String::from_utf8_lossy(&line)
            );
        }
        if self.suppressed > 0 {
            info!(
                "route {route}: pid {pid}: {} stderr lines not logged (more than {STDERR_LINES_PER_SEC} a second)",
                self.suppressed
            );
            self.suppressed = 0;
        }
    }

    fn log(&mut self, line: &[u8], route: &str, pid: Pid, now: Instant) {
        let fresh = self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1));
        if fresh {
            if self.suppressed > 0 {
                info!(
                    "route {route}: pid {pid}: {} stderr lines not logged (more than {STDERR_LINES_PER_SEC} a second)",
                    self.suppressed
                );
            }
            self.window = Some(now);
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < STDERR_LINES_PER_SEC {
            self.logged += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            info!(
                "route {route}: pid {pid} stderr: {}",
                String::from_utf8_lossy(line)
            );
        } else {
            self.suppressed += 1;
        }
    }
}
