//! Helpers for the `wssd bench` integration tests: the Python test server
//! (`bench/tests/py/echo_server.py`), the real daemon with a
//! TLS config, running the bench binary with a
//! deadline, and reading its `--json` output (serde_json).
//!
//! Every spawned process is wrapped in a [`Reaped`] guard that kills and
//! waits for it on drop, so nothing outlives a failing test.

#![allow(dead_code)]

pub mod json;
// The wssd binary belongs to wssd-cli; see that file for how it is found.
#[path = "../../../tests/support/bin.rs"]
mod wssd_bin;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use json::{Json, JsonExt};
pub use wssd_bin::wssd_bin;

/// How long a server may take to print its port.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one bench run may take, far above the durations used.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// A child process killed and reaped when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails the test with a clear message unless python3 with the
/// `websockets` package is available.
pub fn require_python_websockets() {
    let out = Command::new("python3")
        .args(["-c", "import websockets.asyncio.server"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks the `websockets` package (>= 13; install with `pip install websockets`): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is required for the bench tests but cannot be run: {e}"),
    }
}

/// A running test server.
pub struct Server {
    /// The process (killed on drop).
    pub child: Reaped,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Server {
    /// Starts `echo_server.py` with `args` and waits for its port.
    pub fn start(args: &[&str]) -> Server {
        require_python_websockets();
        let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "py", "echo_server.py"]
            .iter()
            .collect();
        let child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut child = Reaped(child);
        let stdout = child.0.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
            panic!("test server did not print its port within {START_DEADLINE:?}")
        });
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("test server printed {line:?} instead of `PORT <n>`"));
        Server { child, port }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// A ws:// URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

/// The real daemon serving `/echo` over `wss://` with a certificate made
/// by openssl for 127.0.0.1 and localhost, in a temporary directory.
pub struct TlsDaemon {
    /// The daemon's master (killed on drop).
    pub child: Reaped,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The certificate, to trust with `--ca-file`.
    pub cert: PathBuf,
    dir: PathBuf,
}

impl TlsDaemon {
    /// Makes the certificate and config, starts `wssd --config` and waits
    /// for its "listening on" line.
    pub fn start() -> TlsDaemon {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wssd-bench-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(dir.join("cert.key"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .expect("openssl must be installed (see .ci/run)");
        assert!(status.success(), "openssl failed");
        let config = dir.join("wssd.toml");
        std::fs::write(
            &config,
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
             [[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n\
             [tls]\ncert = \"cert.pem\"\nkey = \"cert.key\"\n",
        )
        .expect("write the config");
        let child = Command::new(wssd_bin())
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run the wssd binary");
        let mut child = Reaped(child);
        let stderr = child.0.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  wssd| {line}");
                let port = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
                if let (Some(addr), Some(tx)) = (port, tx.take()) {
                    let _ = tx.send(addr.port());
                }
            }
        });
        let port = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
            panic!("wssd did not say where it listens within {START_DEADLINE:?}")
        });
        TlsDaemon {
            child,
            port,
            cert: dir.join("cert.pem"),
            dir,
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `wss://HOST:PORT/echo`
    pub fn url(&self, host: &str) -> String {
        format!("wss://{host}:{}/echo", self.port)
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The outcome of one `wssd bench` run.
pub struct BenchRun {
    /// Exit status (-1 if killed by a signal).
    pub status: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl BenchRun {
    /// Asserts a clean run (exit 0, no errors counted) and returns its
    /// `--json` object.
    pub fn clean_json(&self) -> Json {
        assert_eq!(
            self.status, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let j = self.json();
        assert_eq!(j["errors"].u64(), 0, "{j:?}");
        j
    }

    /// Parses stdout as the `--json` object.
    pub fn json(&self) -> Json {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "bench output is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Sum of the `per_connection` list of a `--json` report.
pub fn per_connection_sum(j: &Json) -> u64 {
    j["per_connection"].array().iter().map(JsonExt::u64).sum()
}

/// Collects a pipe on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// Runs `wssd bench ARGS...` and waits (with a generous deadline) for it.
pub fn run_bench(args: &[&str]) -> BenchRun {
    let child = Command::new(wssd_bin())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the wssd binary");
    let mut child = Reaped(child);
    let out = collect(child.0.stdout.take().expect("piped stdout"));
    let err = collect(child.0.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for wssd bench") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wssd bench {args:?} did not finish within {RUN_DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.recv_timeout(RUN_DEADLINE).unwrap_or_default();
    let stderr = err.recv_timeout(RUN_DEADLINE).unwrap_or_default();
    BenchRun {
        status: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
