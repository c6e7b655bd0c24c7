//! Child processes that cannot outlive a test: the guard that kills and
//! reaps a child (and the child's own children) on drop, a child's stdout
//! as lines, the `PORT n` reader, and running a command to completion
//! within a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{wait_for_within, DEADLINE, RUN_DEADLINE};

/// A child process killed and reaped when dropped, even when the test
/// panics; its children at that moment (a daemon's workers) are killed too.
pub struct ChildGuard {
    child: Child,
    name: String,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd`; `name` says what it is in failure messages.
    pub fn spawn(cmd: &mut Command, name: &str) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child,
            name: name.to_string(),
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// The child, to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited (it is then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for a child");
        }
        self.status
    }

    /// Waits up to `deadline` for the child to exit.
    pub fn wait_exit(&mut self, deadline: std::time::Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait_for_within(&what, deadline, || self.exited())
    }

    /// Panics if the child has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // No panics here: this runs while a failing test unwinds.
        if self.status.is_some() || !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let orphans = children(self.pid());
        let _ = self.child.kill();
        for pid in orphans {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The child processes of `pid` right now, from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A child's output, line by line, read on a thread of its own (which
/// keeps draining the pipe even when nobody listens any more).
pub struct Lines {
    rx: Receiver<String>,
    name: String,
}

impl Lines {
    /// Starts reading `pipe`; `name` says whose output it is.
    pub fn of(pipe: impl Read + Send + 'static, name: &str) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines {
            rx,
            name: name.to_string(),
        }
    }

    /// The next line; fails the test if none comes within `DEADLINE`.
    pub fn next(&self) -> String {
        match self.rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{} printed nothing within {DEADLINE:?}", self.name)
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{} closed its output", self.name)
            }
        }
    }

    /// Reads lines until `PORT <n>` and returns n (the protocol of every
    /// helper server here: bind port 0, then say which port it got).
    pub fn port(&self, guard: &mut ChildGuard) -> u16 {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line
                        .strip_prefix("PORT ")
                        .and_then(|p| p.trim().parse().ok())
                    {
                        return port;
                    }
                }
                Err(_) => {
                    guard.assert_running();
                    panic!("{} did not print `PORT <n>` within {DEADLINE:?}", self.name);
                }
            }
        }
    }
}

/// Spawns `cmd` with stdin empty, stdout read as [`Lines`] and stderr
/// passed through to the test's output.
pub fn spawn_lines(mut cmd: Command, name: &str) -> (ChildGuard, Lines) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut guard = ChildGuard::spawn(&mut cmd, name);
    let stdout = guard.child_mut().stdout.take().expect("piped stdout");
    (guard, Lines::of(stdout, name))
}

/// Spawns a helper server and waits for its `PORT <n>` line.
pub fn spawn_with_port(cmd: Command, name: &str) -> (ChildGuard, u16) {
    let (mut guard, lines) = spawn_lines(cmd, name);
    let port = lines.port(&mut guard);
    (guard, port)
}

/// What a command that ran to completion did.
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything on its stdout.
    pub stdout: String,
    /// Everything on its stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Collects a pipe on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `cmd` with `stdin` as its input until it exits; fails the test
/// (and kills it) if it runs longer than `RUN_DEADLINE`.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let name = format!("{cmd:?}");
    let mut guard = ChildGuard::spawn(&mut cmd, &name);
    let child = guard.child_mut();
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = collect(child.stdout.take().expect("piped stdout"));
    let err = collect(child.stderr.take().expect("piped stderr"));
    let status = guard.wait_exit(RUN_DEADLINE);
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`,
/// failing early if `guard`'s process (which should listen) exits.
pub fn wait_for_port(port: u16, guard: &mut ChildGuard) {
    super::wait_for(&format!("a listener on port {port}"), || {
        guard.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()
            .then_some(())
    });
}

/// Makes this test process adopt orphans (`PR_SET_CHILD_SUBREAPER`): in a
/// binary upgrade the old master exits and its successor is orphaned;
/// adopted, the test can stop and reap it ([`Adopted`]).
pub fn adopt_orphans() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// A master this test adopted (see [`adopt_orphans`]): stopped with
/// SIGTERM when dropped, then SIGKILL (its workers too) if it is not gone
/// within the deadline, and reaped.
pub struct Adopted(pub i32);

impl Drop for Adopted {
    fn drop(&mut self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let pid = Pid::from_raw(self.0);
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => thread::sleep(std::time::Duration::from_millis(20)),
                _ => return,
            }
        }
        for w in children(self.0) {
            let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}
