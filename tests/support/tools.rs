//! The independent peers the tests run: Python `websockets` (interpreter
//! from `WSSD_TEST_PYTHON`, default `python3`), tinyproxy and openssl,
//! each checked first with a message saying what to install.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::process::{run, spawn_lines, spawn_with_port, wait_for_port, ChildGuard, Lines};
use super::{free_port, TempDir};

/// Where to look for what is missing.
const SEE_CI: &str = ".ci/run installs every test tool on Debian; `make test` checks them first";

/// The Python interpreter for the helper scripts: `WSSD_TEST_PYTHON` or `python3`.
pub fn python_bin() -> String {
    std::env::var("WSSD_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fails the test with a clear message if `program args` cannot run
/// successfully; a check that passed once is not repeated in this binary.
pub fn require_tool(program: &str, args: &[&str], install: &str) {
    static PASSED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let key = format!("{program} {args:?}");
    if PASSED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        return;
    }
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "required test tool missing: `{program} {}` failed; install it: {install} ({SEE_CI})",
        args.join(" ")
    );
    PASSED.lock().unwrap_or_else(|e| e.into_inner()).push(key);
}

/// Python with the `websockets` package (>= 13, for its asyncio API).
pub fn require_python_websockets() {
    require_tool(
        &python_bin(),
        &["-c", "import websockets.asyncio.server"],
        "python3 -m pip install 'websockets>=13' (or set WSSD_TEST_PYTHON to a python that has it)",
    );
}

/// The `openssl` command line tool.
pub fn require_openssl() {
    require_tool("openssl", &["version"], "apt-get install openssl");
}

/// A helper script under tests/.
pub fn script(rel: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", rel].iter().collect()
}

/// A command running the helper script `rel` (under tests/) with Python.
pub fn python_command(rel: &str, args: &[&str]) -> Command {
    require_python_websockets();
    let mut cmd = Command::new(python_bin());
    cmd.arg("-u").arg(script(rel)).args(args);
    cmd
}

/// Runs tests/support/wsprobe.py (an independent client) to completion
/// and returns its stdout; fails the test with its stderr if it fails.
pub fn wsprobe(args: &[&str]) -> String {
    let out = run(python_command("support/wsprobe.py", args), b"");
    assert!(
        out.status.success(),
        "wsprobe.py {args:?} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// A Python helper running in the background, with its stdout lines.
pub struct PyProc {
    _guard: ChildGuard,
    lines: Lines,
}

impl PyProc {
    /// Starts tests/support/wsprobe.py with `args` (e.g. `hold URL`).
    pub fn wsprobe(args: &[&str]) -> PyProc {
        PyProc::spawn("support/wsprobe.py", args)
    }

    /// Starts the Python script `rel` (under tests/) with `args`.
    pub fn spawn(rel: &str, args: &[&str]) -> PyProc {
        let (guard, lines) = spawn_lines(python_command(rel, args), rel);
        PyProc {
            _guard: guard,
            lines,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self._guard.pid()
    }

    /// The next stdout line (fails after `DEADLINE`).
    pub fn line(&self) -> String {
        self.lines.next()
    }
}

/// A Python `websockets` server script that prints `PORT <n>`.
pub struct PyServer {
    guard: ChildGuard,
    /// Its port on 127.0.0.1.
    pub port: u16,
    tls: bool,
}

impl PyServer {
    /// Starts the script `rel` (under tests/) with `args`; `tls` says
    /// whether it serves wss://.
    pub fn start(rel: &str, args: &[&str], tls: bool) -> PyServer {
        let (guard, port) = spawn_with_port(python_command(rel, args), rel);
        PyServer { guard, port, tls }
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    /// `ws://127.0.0.1:PORT{path}` (or `wss://`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

/// A tinyproxy (a real HTTP CONNECT proxy) on 127.0.0.1.
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
        let dir = TempDir::new();
        // tinyproxy cannot bind port 0 and report it.
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
        let conf_path = dir.write("tinyproxy.conf", &conf);
        let mut cmd = Command::new("tinyproxy");
        cmd.arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut guard = ChildGuard::spawn(&mut cmd, "tinyproxy");
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
