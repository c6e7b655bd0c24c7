//! Integration tests, one binary for the area: the client library
//! (`wssd::client`) and `wssd client`, against the independent Python
//! `websockets` server (client/ws_server.py), tinyproxy, TLS made with
//! openssl, and our own daemon.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod daemon;
mod messages;
mod proxy;
mod reconnect;
mod subprotocol;
mod tls;

use support::{run, wssd_bin, Certs, Output, PyServer};

/// Starts the plain `ws://` test server (client/ws_server.py: see its
/// docstring for what each message makes it do).
pub fn ws_server() -> PyServer {
    PyServer::start("client/ws_server.py", &[], false)
}

/// Starts the `wss://` test server with the given certificate.
pub fn ws_server_tls(certs: &Certs) -> PyServer {
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    PyServer::start("client/ws_server.py", &["--cert", cert, "--key", key], true)
}

/// Runs `wssd ARGS` with `stdin` as input, to completion.
pub fn run_wssd(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = std::process::Command::new(wssd_bin());
    cmd.args(args);
    run(cmd, stdin)
}
