//! Test support shared by every integration test binary: where the built
//! `wssd` binary is ([`bin`]: it belongs to the wssd-cli package), the real
//! `wssd` daemon on a free port ([`daemon`]), child processes that are always
//! reaped ([`process`]), a temp dir, the independent peers (Python
//! `websockets`, tinyproxy, openssl: [`tools`], [`certs`]), a raw frame
//! writer and reader ([`frames`]), tungstenite helpers ([`ws`]) and ports
//! ([`net`]).
//!
//! # Layout: one test binary per area
//!
//! Linking dominates build time, so the integration tests are a few
//! binaries, one per area, each a directory with a `main.rs`:
//!
//! | binary | directory | what it covers |
//! | --- | --- | --- |
//! | `daemon` | tests/daemon/ | config errors, echo, reload, drain, timeouts, workers |
//! | `client` | tests/client/ | `wssd::client` and `wssd client` (Python server, tinyproxy, TLS) |
//! | `conformance` | tests/conformance/ | RFC 6455 over raw frames, daemon and client; permessage-deflate (RFC 7692) |
//! | `security` | tests/security/ | hostile input, limits, TLS, privilege drop |
//! | `handlers` | tests/handlers/ | built-in and embedded handlers (examples/), exec routes |
//!
//! `wssd bench`'s tests belong to its package: bench/tests/ (they include
//! [`bin`] too).
//!
//! To add a test to an area, put it in one of that area's files, or add a
//! file `tests/AREA/NAME.rs` and a line `mod NAME;` in `tests/AREA/main.rs`.
//! A file starts with `use crate::support::*;` (and the area's own helpers,
//! if any, from `crate::`). Run one area with `cargo test --test AREA`, one
//! file with `cargo test --test AREA NAME::`. A new area is a new directory
//! with a `main.rs` that includes this module with
//! `#[path = "../support/mod.rs"] mod support;`.
//!
//! # Rules (see the guide)
//!
//! Every process a test starts is owned by a [`ChildGuard`] (killed and
//! reaped on drop, with its children); waits are [`wait_for`] a condition
//! within [`DEADLINE`], never fixed sleeps or timed assertions; servers
//! bind port 0 on 127.0.0.1 and report the port.
#![allow(dead_code, unused_imports)]

pub mod bin;
pub mod certs;
pub mod daemon;
pub mod frames;
pub mod net;
pub mod process;
pub mod tempdir;
pub mod tools;
pub mod ws;

pub use bin::wssd_bin;
pub use certs::{make_cert, Cert, Certs, LOCAL_SAN};
pub use daemon::{config, status_get, Daemon, ECHO};
pub use net::{closed_port, free_port, SilentServer};
pub use process::{
    adopt_orphans, alive, children, run, spawn_lines, Adopted, ChildGuard, Lines, Output,
};
pub use tempdir::TempDir;
pub use tools::{python_bin, require_python_websockets, wsprobe, PyProc, PyServer, Tinyproxy};
pub use ws::{
    connect, echo, http, raw_exchange, raw_exchange_bytes, read_close_code, text, try_connect,
    upgrade_request, Ws,
};

use std::time::{Duration, Instant};

/// How long any awaited condition, read or helper start-up may take on a
/// slow, loaded machine. Only a broken test waits this long.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long one whole run of a command (`wssd bench`, `wssd client`) may take.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Polls `cond` until it returns `Some`; fails the test after `DEADLINE`.
pub fn wait_for<T>(what: &str, cond: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, DEADLINE, cond)
}

/// Polls `cond` until it returns `Some`; fails the test after `deadline`.
pub fn wait_for_within<T>(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
