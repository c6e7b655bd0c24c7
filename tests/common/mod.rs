//! Shared test support: start the real `wssd` binary on a free port, read
//! its log, find its workers, and stop everything on drop.
#![allow(dead_code)]

pub mod frames;
mod wssd_bin;

pub use wssd_bin::wssd_bin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

/// How long any condition may take on a slow, loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` until it returns `Some` or `DEADLINE` passes.
pub fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wssd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    reaped: bool,
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
        let mut cmd = Command::new(wssd_bin());
        cmd.arg("--config").arg(&config_path);
        Daemon::spawn(cmd, dir, config_path)
    }

    /// Starts `examples/<name>` (built by `cargo test`) with the config as
    /// its only argument.
    pub fn start_example(name: &str, config_text: &str) -> Daemon {
        Daemon::start_example_env(name, config_text, &[])
    }

    /// `start_example` with extra environment variables.
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
            "{} is missing: run `cargo build --examples`",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.arg(&config_path).envs(env.iter().copied());
        Daemon::spawn(cmd, dir, config_path)
    }

    fn spawn(mut cmd: Command, dir: TempDir, config_path: PathBuf) -> Daemon {
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wssd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  wssd| {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
            config_path,
            reaped: false,
        };
        d.addr = d.wait_log("listening address", |l| {
            l.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `ws://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
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

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal wssd");
    }

    /// Waits for the master to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let status = wait_for("wssd to exit", || self.child.try_wait().ok().flatten());
        self.reaped = true;
        status.code()
    }

    /// Rewrites the config file in place.
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("rewrite config");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let workers = self.workers();
        let _ = self.child.kill();
        for w in workers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(w),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// The child processes of `pid`, from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub type Ws = WebSocket<TcpStream>;

/// Connects a tungstenite client; reads time out after `DEADLINE` so a
/// broken server fails the test instead of hanging it.
pub fn try_connect(url: &str) -> Result<Ws, String> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .ok_or("no host")?
        .to_string();
    let tcp = TcpStream::connect(&host).map_err(|e| format!("connect {host}: {e}"))?;
    tcp.set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    tungstenite::client(url, tcp)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake with {url}: {e}"))
}

/// Like `try_connect`, failing the test on error.
pub fn connect(url: &str) -> Ws {
    try_connect(url).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `msg` and expects it back unchanged.
pub fn echo(ws: &mut Ws, msg: Message) {
    ws.send(msg.clone()).expect("send");
    let got = ws.read().expect("read echo");
    assert_eq!(got, msg, "echo mismatch");
}

/// Reads until a Close frame arrives, answers it, and returns its code.
pub fn read_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                let _ = ws.flush(); // sends our close reply
                return f.map(|f| u16::from(f.code));
            }
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Sends raw bytes on a fresh TCP connection and returns everything the
/// server sends until it closes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Runs `python3 tests/py/<script> args...` and returns its stdout;
/// fails the test with the script's stderr if it fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Python helper started in the background, with its stdout lines.
pub struct PyProc {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl PyProc {
    pub fn spawn(script: &str, args: &[&str]) -> PyProc {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(script);
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (see .ci/run)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PyProc { child, lines: rx }
    }

    /// The next stdout line (fails after `DEADLINE`).
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("python helper printed nothing in time")
    }
}

impl Drop for PyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
