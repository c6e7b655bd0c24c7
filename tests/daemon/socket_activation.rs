//! systemd socket activation: with LISTEN_PID/LISTEN_FDS the master serves
//! on the passed socket instead of binding; a socket that matches no
//! `listen` is an error naming the key; a restart behind a socket held
//! by someone else (systemd) refuses no connection attempt.

use crate::support::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tungstenite::Message;

/// `systemd-socket-activate` from Debian's systemd package.
const ACTIVATE: &str = "systemd-socket-activate";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process with its stderr collected; killed (with its children) and
/// reaped on drop.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reaped: bool,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{cmd:?}: {e} (systemd-socket-activate is in Debian's systemd package)")
            });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), Arc::clone(&log));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  proc| {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            log,
            reaped: false,
        }
    }

    fn wait_log_contains(&self, needle: &str) -> String {
        wait_for(&format!("log: {needle}"), || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        })
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let status = wait_for("exit", || self.child.try_wait().ok().flatten());
        self.reaped = true;
        status.code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let pid = self.child.id() as i32;
        for w in children(pid) {
            let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn activated(port: u16, config_path: &std::path::Path) -> Proc {
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--fdname=wssd")
        .arg(wssd_bin())
        .arg("--config")
        .arg(config_path);
    let p = Proc::spawn(cmd);
    p.wait_log_contains("Listening on");
    p
}

#[test]
fn socket_activate_serves_a_connection_made_before_the_daemon_started() {
    let dir = TempDir::new();
    let port = free_port();
    let path = dir.write(
        "wssd.toml",
        &config("", ECHO).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    );
    let mut p = activated(port, &path);
    // systemd-socket-activate starts wssd only when this connection
    // arrives: it waits in the queue of the passed socket meanwhile.
    let url = format!("ws://127.0.0.1:{port}/echo");
    let mut ws = connect(&url);
    echo(&mut ws, Message::text("queued, then served"));
    // The daemon took the passed socket rather than binding its own.
    p.wait_log_contains("systemd passed 1 sockets named wssd");
    let master = p.child.id() as i32; // systemd-socket-activate execs it
    wait_for("2 workers", || (children(master).len() == 2).then_some(()));
    let out = wsprobe(&["echo", &url]);
    assert_eq!(out.trim(), "ok");
    kill(Pid::from_raw(master), Signal::SIGTERM).unwrap();
    assert_eq!(p.wait_exit(), Some(0));
}

#[test]
fn a_passed_socket_that_matches_no_listen_is_an_error_naming_the_key() {
    let dir = TempDir::new();
    let (port, other) = (free_port(), free_port());
    let path = dir.write(
        "wssd.toml",
        &config("", ECHO).replace("127.0.0.1:0", &format!("127.0.0.1:{other}")),
    );
    let mut p = activated(port, &path);
    // The first connection starts it; it refuses to run.
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    assert_eq!(p.wait_exit(), Some(2));
    let line = p.wait_log_contains("server.listen");
    assert!(line.contains(&format!("127.0.0.1:{other}")), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

#[test]
fn restarting_behind_the_same_socket_refuses_no_connection() {
    let dir = TempDir::new();
    let port = free_port();
    let path = dir.write(
        "wssd.toml",
        &config("", ECHO).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    );
    // tests/support/socket_holder.py plays systemd: it holds the socket and
    // starts wssd on it, once now and once more on SIGUSR1.
    let port_text = port.to_string();
    let holder = PyProc::spawn(
        "support/socket_holder.py",
        &[&port_text, wssd_bin(), "--config", path.to_str().unwrap()],
    );
    assert_eq!(holder.line(), format!("port {port}"));
    let started = |line: String| -> i32 {
        line.strip_prefix("started ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `started PID`, got {line}"))
    };
    let first = started(holder.line());
    let _guard = Reap(vec![first]);
    let url = format!("ws://127.0.0.1:{port}/echo");
    echo(
        &mut wait_for("the first daemon", || try_connect(&url).ok()),
        Message::text("first"),
    );
    wait_for("2 workers", || (children(first).len() == 2).then_some(()));

    // Stop it: the socket stays open in the holder (as in systemd).
    kill(Pid::from_raw(first), Signal::SIGTERM).unwrap();
    assert_eq!(holder.line(), format!("exited {first} 0"));

    // Connection attempts while no daemon runs: accepted into the
    // queue, not refused; their handshakes wait for the next daemon.
    let waiting: Vec<_> = (0..5)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut ws = try_connect(&url)?;
                let msg = Message::text(format!("queued {i}"));
                ws.send(msg.clone()).map_err(|e| e.to_string())?;
                match ws.read() {
                    Ok(got) if got == msg => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
        })
        .collect();
    kill(Pid::from_raw(holder.pid()), Signal::SIGUSR1).unwrap();
    let second = started(holder.line());
    let _guard2 = Reap(vec![second]);
    for t in waiting {
        t.join()
            .unwrap()
            .expect("a connection made during the restart");
    }
    echo(&mut connect(&url), Message::text("second"));
    kill(Pid::from_raw(second), Signal::SIGTERM).unwrap();
    assert_eq!(holder.line(), format!("exited {second} 0"));
}

/// Kills leftover daemons (and their workers) if the test fails.
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                for w in children(pid) {
                    let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}
