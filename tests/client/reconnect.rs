//! `wssd client --reconnect` against real servers: the daemon restarted
//! under a connected client, and a server that stops answering (SIGSTOP)
//! noticed by the keep-alive pong deadline. No timing assertions: each
//! step waits for an output line with a generous deadline.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{config, wssd_bin, Daemon, DEADLINE, ECHO};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child whose stdout and stderr lines arrive on channels; killed and
/// reaped on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
    name: &'static str,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &'static str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines = |r: Box<dyn std::io::Read + Send>, tag: &'static str| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    eprintln!("  {tag}| {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()), name);
        let err = lines(Box::new(child.stderr.take().unwrap()), name);
        Proc {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            name,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to client stdin");
        stdin.flush().unwrap();
    }

    /// Waits for a line on `which` for which `f` is true.
    fn wait_line(which: &Receiver<String>, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match which.recv_timeout(left) {
                Ok(line) if f(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    fn wait_stdout(&self, want: &str) {
        Proc::wait_line(&self.out, &format!("{} stdout {want:?}", self.name), |l| {
            l == want
        });
    }

    fn wait_stderr(&self, needle: &str) -> String {
        Proc::wait_line(
            &self.err,
            &format!("{} stderr containing {needle:?}", self.name),
            |l| l.contains(needle),
        )
    }

    /// Closes stdin and waits for the exit status.
    fn finish(&mut self) -> std::process::ExitStatus {
        self.stdin.take();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reconnecting_client(url: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(wssd_bin());
    cmd.args(["client", url, "--reconnect", "--timeout", "5"])
        .args(extra);
    Proc::spawn(cmd, "client")
}

#[test]
fn daemon_restarted_under_a_connected_client() {
    let mut daemon = Daemon::start(&config("", ECHO));
    let addr = daemon.addr;
    let mut client = reconnecting_client(
        &daemon.url("/echo"),
        &["--backoff-max", "1", "--ping-interval", "30"],
    );
    client.send_line("before");
    client.wait_stdout("before");

    // Stop the daemon: it drains, closing the client with 1001.
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit();
    client.wait_stderr("connection lost");

    // Start it again on the same address; the client comes back by itself.
    let text = config("", ECHO).replace("127.0.0.1:0", &addr.to_string());
    let _daemon2 = Daemon::start(&text);
    client.wait_stderr("reconnected");
    client.send_line("after");
    client.wait_stdout("after");

    let status = client.finish();
    assert!(status.success(), "client exited with {status}");
}

#[test]
fn lines_typed_while_disconnected_are_sent_after_reconnecting() {
    let mut daemon = Daemon::start(&config("", ECHO));
    let addr = daemon.addr;
    let mut client = reconnecting_client(&daemon.url("/echo"), &["--backoff-max", "1"]);
    client.send_line("first");
    client.wait_stdout("first");
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit();
    client.wait_stderr("connection lost");
    // Typed while nothing listens: queued, not lost.
    client.send_line("queued");
    let text = config("", ECHO).replace("127.0.0.1:0", &addr.to_string());
    let _daemon2 = Daemon::start(&text);
    client.wait_stdout("queued");
    assert!(client.finish().success());
}

/// Starts tests/client/ws_server.py; returns it and its port.
fn python_server() -> (Proc, u16) {
    let python = std::env::var("WSSD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client/ws_server.py");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    let server = Proc::spawn(cmd, "pyserver");
    let line = Proc::wait_line(&server.out, "the server's PORT line", |l| {
        l.starts_with("PORT ")
    });
    let port = line[5..].trim().parse().expect("port number");
    (server, port)
}

#[test]
fn a_stopped_server_is_noticed_by_the_pong_deadline() {
    let (server, port) = python_server();
    let url = format!("ws://127.0.0.1:{port}/");
    let mut client = reconnecting_client(
        &url,
        &[
            "--ping-interval",
            "1",
            "--pong-timeout",
            "3",
            "--backoff-max",
            "1",
        ],
    );
    client.send_line("hello");
    client.wait_stdout("hello");

    // The stopped process keeps its socket: TCP stays up, nothing answers.
    kill(server.pid(), Signal::SIGSTOP).expect("SIGSTOP the server");
    let line = client.wait_stderr("connection lost");
    assert!(line.contains("keep-alive pong"), "{line}");

    // Once it runs again, the client reconnects and goes on.
    kill(server.pid(), Signal::SIGCONT).expect("SIGCONT the server");
    client.wait_stderr("reconnected");
    client.send_line("again");
    client.wait_stdout("again");
    assert!(client.finish().success());
    drop(server);
}
