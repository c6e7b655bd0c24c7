//! The real `wssd` daemon (or an example program embedding the server) on
//! a free port: its config, its log, its workers, its signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::bin::wssd_bin;
use super::process::{children, ChildGuard};
use super::{wait_for, TempDir, DEADLINE};

/// A config with `listen` on a free port, 2 workers unless `server_extra`
/// sets `workers`, the given `[server]` extras and `routes` appended.
pub fn config(server_extra: &str, routes: &str) -> String {
    let workers = if server_extra.contains("workers =") {
        ""
    } else {
        "workers = 2\n"
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{workers}drain_timeout = 10\n{server_extra}\n\n[log]\nlevel = \"debug\"\n\n{routes}\n"
    )
}

/// The echo route as TOML.
pub const ECHO: &str = "[[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n";

/// A running daemon; killed (with its workers) and reaped on drop.
pub struct Daemon {
    guard: ChildGuard,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its log (stderr) so far, line by line.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Its directory (config, certificates, pid file).
    pub dir: TempDir,
    /// Its config file.
    pub config_path: PathBuf,
}

impl Daemon {
    /// Starts `wssd --config` on `config_text` and waits until it listens.
    pub fn start(config_text: &str) -> Daemon {
        let dir = TempDir::new();
        let config_path = dir.write("wssd.toml", config_text);
        Daemon::start_in(dir, config_path)
    }

    /// Starts on an existing config file inside `dir`.
    pub fn start_in(dir: TempDir, config_path: PathBuf) -> Daemon {
        Daemon::start_in_env(dir, config_path, &[])
    }

    /// [`Daemon::start_in`] with extra environment variables for this
    /// daemon alone (e.g. `NOTIFY_SOCKET`: setting it in the test's own
    /// environment would reach every daemon other tests start meanwhile).
    pub fn start_in_env(dir: TempDir, config_path: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(wssd_bin());
        cmd.arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied());
        Daemon::spawn(cmd, dir, config_path)
    }

    /// Starts `examples/<name>` (built by `cargo build --examples`, which
    /// `make test` runs) with the config as its only argument.
    pub fn start_example(name: &str, config_text: &str) -> Daemon {
        Daemon::start_example_env(name, config_text, &[])
    }

    /// [`Daemon::start_example`] with extra environment variables.
    pub fn start_example_env(name: &str, config_text: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new();
        let config_path = dir.write("wssd.toml", config_text);
        let bin = Path::new(wssd_bin())
            .parent()
            .expect("bin dir")
            .join("examples")
            .join(name);
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --examples` (or `make test`)",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.arg(&config_path).envs(env.iter().copied());
        Daemon::spawn(cmd, dir, config_path)
    }

    fn spawn(mut cmd: Command, dir: TempDir, config_path: PathBuf) -> Daemon {
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(&mut cmd, "wssd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = guard.child_mut().stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  wssd| {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            guard,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
            config_path,
        };
        d.addr = d.wait_log("listening address", |l| {
            l.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        d
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    /// `ws://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits for a binary upgrade's "new master pid N ... is ready" line
    /// naming a pid other than `other_than`, and returns N.
    pub fn wait_new_master(&self, other_than: Option<i32>) -> i32 {
        self.wait_log("a new master to be ready", |l| {
            l.split("new master pid ")
                .nth(1)
                .filter(|_| l.contains("is ready"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .filter(|p| Some(*p) != other_than)
        })
    }

    /// The status listener's address (`[status] listen`), from the log.
    pub fn status_addr(&self) -> SocketAddr {
        self.wait_log("the status listener", |l| {
            l.split("status listener on ")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
        })
    }

    /// Waits for a log line for which `f` returns `Some`.
    pub fn wait_log<T>(&self, what: &str, mut f: impl FnMut(&str) -> Option<T>) -> T {
        wait_for(&format!("log: {what}"), || {
            self.log.lock().unwrap().iter().find_map(|l| f(l))
        })
    }

    /// Counts log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log_contains(&self, needle: &str) -> String {
        self.wait_log(needle, |l| l.contains(needle).then(|| l.to_string()))
    }

    /// The pids of the master's children right now.
    pub fn workers(&self) -> Vec<i32> {
        children(self.pid())
    }

    /// Waits until the master has exactly `n` children and returns them.
    pub fn wait_workers(&self, n: usize) -> Vec<i32> {
        wait_for(&format!("{n} worker processes"), || {
            let w = self.workers();
            (w.len() == n).then_some(w)
        })
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal wssd");
    }

    /// Waits for the master to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.guard.wait_exit(DEADLINE).code()
    }

    /// Rewrites the config file in place.
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("rewrite config");
    }
}

/// `GET path` on a status listener: the body of a 200.
pub fn status_get(status: SocketAddr, path: &str) -> String {
    let reply = super::ws::raw_exchange(
        status,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "GET {path}: {reply}");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
