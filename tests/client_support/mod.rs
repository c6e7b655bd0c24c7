//! Helpers for the client integration tests: temp dirs, child processes
//! that are always reaped, the Python `websockets` test server, tinyproxy,
//! test certificates and running the `wssd` binary.
//!
//! A daemon-based test can reuse [`spawn_with_port`] / [`ChildGuard`] once the
//! daemon can report its bound port.
#![allow(dead_code)]

#[path = "../common/wssd_bin.rs"]
mod wssd_bin;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for a helper process to become ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Kills and reaps its child process when dropped, even on test failure.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(child: Child, name: &str) -> ChildGuard {
        ChildGuard {
            child,
            name: name.to_string(),
        }
    }

    /// Panics if the child has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, uniquely named directory.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "wssd-client-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Fails the test with a clear message if `program` cannot be run.
pub fn require_tool(program: &str, args: &[&str], install_hint: &str) {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "required test tool missing: `{program} {}` failed; install it: {install_hint}",
        args.join(" ")
    );
}

/// The Python interpreter used for the test server (`WSSD_TEST_PYTHON` or `python3`).
pub fn python() -> String {
    std::env::var("WSSD_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Spawns `command`, reads its stdout until a `PORT <n>` line and returns
/// the guard and the port. Panics if the line does not come within the deadline.
pub fn spawn_with_port(mut command: Command, name: &str) -> (ChildGuard, u16) {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut guard = ChildGuard::new(child, name);
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(port) = line
                    .strip_prefix("PORT ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    let _ = sender.send(port);
                    sent = true;
                }
            }
        }
    });
    match receiver.recv_timeout(READY_DEADLINE) {
        Ok(port) => (guard, port),
        Err(_) => {
            guard.assert_running();
            panic!("{name} did not print its port within {READY_DEADLINE:?}");
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, guard: &mut ChildGuard) {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        guard.assert_running();
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {READY_DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago (for programs that cannot bind port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    free_port()
}

/// The Python `websockets` test server (tests/client/ws_server.py).
pub struct PyServer {
    _guard: ChildGuard,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    tls: bool,
}

impl PyServer {
    /// Starts a plain `ws://` server.
    pub fn start() -> PyServer {
        Self::spawn(None)
    }

    /// Starts a `wss://` server with the given certificate.
    pub fn start_tls(certs: &Certs) -> PyServer {
        Self::spawn(Some(certs))
    }

    fn spawn(certs: Option<&Certs>) -> PyServer {
        let python = python();
        require_tool(
            &python,
            &["-c", "import websockets.asyncio.server"],
            "pip install 'websockets>=13'",
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client/ws_server.py");
        let mut command = Command::new(&python);
        command.arg(script);
        if let Some(certs) = certs {
            command
                .arg("--cert")
                .arg(&certs.cert)
                .arg("--key")
                .arg(&certs.key);
        }
        let (guard, port) = spawn_with_port(command, "python websockets server");
        PyServer {
            _guard: guard,
            port,
            tls: certs.is_some(),
        }
    }

    /// `ws://127.0.0.1:PORT{path}` (or `wss://`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

/// A self-signed certificate (SAN IP:127.0.0.1, DNS:localhost unless told otherwise).
pub struct Certs {
    _dir: TempDir,
    /// Certificate (PEM); also usable as the CA file.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Certs {
    /// Generates a certificate valid for 127.0.0.1 and localhost.
    pub fn generate() -> Certs {
        Self::generate_for("IP:127.0.0.1,DNS:localhost")
    }

    /// Generates a certificate with this subjectAltName list.
    pub fn generate_for(san: &str) -> Certs {
        require_tool("openssl", &["version"], "apt-get install openssl");
        let dir = TempDir::new("certs");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=wssd-test",
            ])
            .arg("-addext")
            .arg(format!("subjectAltName={san}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Certs {
            _dir: dir,
            cert,
            key,
        }
    }
}

/// A tinyproxy instance on 127.0.0.1.
pub struct Tinyproxy {
    _guard: ChildGuard,
    _dir: TempDir,
    /// Its port.
    pub port: u16,
}

impl Tinyproxy {
    /// Starts tinyproxy; `auth` enables `BasicAuth USER PASS`; `extra` lines are
    /// appended to the configuration (e.g. `ConnectPort 443`).
    pub fn start(auth: Option<(&str, &str)>, extra: &[&str]) -> Tinyproxy {
        require_tool("tinyproxy", &["-v"], "apt-get install tinyproxy");
        let dir = TempDir::new("tinyproxy");
        let port = free_port();
        let mut conf = format!(
            "Listen 127.0.0.1\nPort {port}\nTimeout 60\nMaxClients 50\nAllow 127.0.0.1\nLogLevel Error\nLogFile \"{}\"\n",
            dir.path().join("tinyproxy.log").display()
        );
        if let Some((user, pass)) = auth {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tinyproxy");
        let mut guard = ChildGuard::new(child, "tinyproxy");
        wait_for_port(port, &mut guard);
        Tinyproxy {
            _guard: guard,
            _dir: dir,
            port,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A TCP server that accepts connections and never answers (for timeouts).
pub struct SilentServer {
    /// Its port.
    pub port: u16,
    _listener: TcpListener,
}

impl SilentServer {
    /// Binds 127.0.0.1:0; the kernel completes connections via the backlog.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        SilentServer {
            port,
            _listener: listener,
        }
    }
}

/// The result of running `wssd`.
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `wssd ARGS` with `stdin` as input; kills it after 60 s.
pub fn run_wssd(args: &[&str], stdin: &[u8]) -> CliOutput {
    let mut child = Command::new(wssd_bin::wssd_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wssd");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let mut guard = ChildGuard::new(child, "wssd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = guard.child.try_wait().expect("wait wssd") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wssd {args:?} did not exit within 60 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    CliOutput {
        status,
        stdout,
        stderr,
    }
}
