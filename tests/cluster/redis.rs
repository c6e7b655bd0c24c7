//! Support for the cluster tests: a real `redis-server` on a free loopback
//! port (reaped on drop), wssd instances with `[status]` and `[cluster]`,
//! and a tiny HTTP client for the status listener.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{self as common, wait_for, Daemon};

/// A free loopback port (bound and released; the tests bind it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` child on 127.0.0.1:`port`, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts Redis on `port` and waits until it answers PING.
    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see .ci/run)");
        let r = Redis {
            port,
            child: Some(child),
        };
        wait_for("redis-server to answer PING", || r.ping().then_some(()));
        r
    }

    /// Whether Redis answers PING.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills Redis (SIGKILL, a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A wssd config: `workers` workers, `[status]` on a free port (with
/// `token` if given), `[cluster]` on `redis_url` as `instance_id`, and the
/// `/chat/{room}` broadcast route.
pub fn config(
    workers: usize,
    redis_url: Option<&str>,
    instance_id: &str,
    token: Option<&str>,
    extra_server: &str,
) -> String {
    let token = token.map_or(String::new(), |t| format!("token = \"{t}\"\n"));
    let cluster = redis_url.map_or(String::new(), |u| {
        format!("[cluster]\nredis_url = \"{u}\"\ninstance_id = \"{instance_id}\"\n")
    });
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\ndrain_timeout = 10\n{extra_server}\n\n[log]\nlevel = \"debug\"\n\n[status]\nlisten = \"127.0.0.1:0\"\n{token}\n{cluster}\n[[routes]]\npath = \"/chat/{{room}}\"\nhandler = \"broadcast\"\n"
    )
}

/// A running instance and its status address.
pub struct Instance {
    pub daemon: Daemon,
    pub status: SocketAddr,
}

impl Instance {
    pub fn start(config: &str) -> Instance {
        let daemon = Daemon::start(config);
        let status = daemon.wait_log("status listener address", |l| {
            l.split("status listener on ")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
        });
        Instance { daemon, status }
    }

    pub fn url(&self, path: &str) -> String {
        self.daemon.url(path)
    }

    /// GET /status as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http(self.status, "GET", "/status", &[], "");
        assert_eq!(code, 200, "GET /status: {body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// Waits until the cluster helper reports `connected == up`.
    pub fn wait_cluster(&self, up: bool) {
        wait_for(&format!("cluster connected == {up}"), || {
            (self.status()["cluster"]["connected"] == up).then_some(())
        });
    }

    /// The master is still running.
    pub fn assert_running(&mut self) {
        assert!(common::alive(self.daemon.pid()), "wssd exited");
    }
}

pub use crate::support::http;

/// A client that reads with the common deadline.
pub fn client(url: &str) -> common::Ws {
    common::connect(url)
}

/// Reads the next data message as text or `bin:` + bytes.
pub fn next_text(ws: &mut common::Ws) -> String {
    loop {
        match ws.read().expect("read within the deadline") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Binary(b) => {
                return format!("bin:{}", String::from_utf8_lossy(&b))
            }
            _ => continue,
        }
    }
}

/// Parses a Prometheus text exposition file with Python's
/// `prometheus_client` (tests/support/prom_parse.py); its JSON on stdout.
pub fn prom_parse(file: &str) -> String {
    let cmd = common::tools::python_command("support/prom_parse.py", &[file]);
    let out = common::run(cmd, b"");
    assert!(
        out.status.success(),
        "prom_parse.py {file} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}
