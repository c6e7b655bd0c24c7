//! Helpers for the `wssd bench` integration tests: the Python test server
//! (`tests/bench/echo_server.py`), running the bench binary with a
//! deadline, and reading its `--json` output (with `serde_json`).
//!
//! Every spawned process is wrapped in a [`Reaped`] guard that kills and
//! waits for it on drop, so nothing outlives a failing test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::Value as Json;

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
        let script: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "bench",
            "echo_server.py",
        ]
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
        assert_eq!(num(&j, "/errors"), 0, "{j}");
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

/// The unsigned integer at `pointer` (e.g. `/latency_us/count`) of a
/// `--json` report; fails the test naming the pointer if it is not one.
pub fn num(j: &Json, pointer: &str) -> u64 {
    j.pointer(pointer)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("no unsigned integer at {pointer} in {j}"))
}

/// The number at `pointer` of a `--json` report.
pub fn float(j: &Json, pointer: &str) -> f64 {
    j.pointer(pointer)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {j}"))
}

/// The `per_connection` list of a `--json` report.
pub fn per_connection(j: &Json) -> Vec<u64> {
    j.pointer("/per_connection")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no per_connection list in {j}"))
        .iter()
        .map(|n| n.as_u64().unwrap_or_else(|| panic!("per_connection: {n}")))
        .collect()
}

/// Sum of the `per_connection` list of a `--json` report.
pub fn per_connection_sum(j: &Json) -> u64 {
    per_connection(j).iter().sum()
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
    let child = Command::new(env!("CARGO_BIN_EXE_wssd"))
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
