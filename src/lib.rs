//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! What an embedder uses: [`Server`] (run handlers with the daemon's
//! process model), the [`Handler`] trait and its [`Conn`] handle, the
//! shared vocabulary [`Message`] and [`CloseCode`], the [`config`] types,
//! and the blocking [`client`]. See `docs/handlers.md` and `examples/`.
//!
//! A map of the crate, top down, in the rows of `docs/architecture.md` (a
//! module imports only modules on lower rows):
//!
//! - `server`: the embedding API ([`Server`]).
//! - `master`: the loop that reloads, drains and relays; `generation`
//!   (load and bind) and `supervise` (fork, reap, back-off) under it.
//! - `worker`: one `mio` loop per process; connections as state machines.
//!   `cluster`: the cluster helper process, which carries broadcasts
//!   between instances through Redis pub/sub.
//! - `app`: what a generation runs: the route table and named handlers,
//!   loaded from the configuration the same way at start and on reload.
//!   `exec`: `exec` routes: a program per connection, its environment,
//!   its pipes and the lines read from it. `relay`: broadcast frames
//!   between workers through the master.
//! - [`handler`]: the [`Handler`] trait, the [`Conn`] handle, built-ins.
//!   `inherit`: listening sockets passed by systemd or an upgrading
//!   master. `logging`: log lines that name the process (master or
//!   worker K).
//! - [`admission`]: the handshake hook's request view and decision, the
//!   subprotocol choice, and the accept/reject responses. `error`: why the
//!   daemon could not run ([`Error`]), and exit statuses. `tls`,
//!   `privileges`: the operating system edges that need the
//!   configuration. `preflight`: whether a valid configuration can start
//!   on this host.
//! - [`config`]: the TOML configuration, validated key by key.
//!   `handshake`: the HTTP upgrade as pure functions over bytes.
//!   [`client`]: the blocking client library.
//! - `deflate`: permessage-deflate (RFC 7692): negotiation, compression,
//!   bounded decompression, per-connection state (docs/compression.md).
//! - `frame`: the frame codec (reader and writer) for both roles: the
//!   worker's connections and the client read and write frames with it.
//! - The leaves, which import nothing of the crate: `message`
//!   ([`Message`], [`Text`], [`CloseCode`], shared by handlers and the
//!   client); `route` (path templates such as `/chat/{room}`); `limits`
//!   (per-address connection and handshake-rate limits, trusted proxies);
//!   `proxy_protocol` (the PROXY protocol v1/v2 header); `http_token` (the
//!   HTTP token rule, RFC 9110 §5.6.2, for subprotocol, header and
//!   extension names); `stats` (the counters table shared by the master
//!   and its workers); `proctitle` (process titles as `ps` shows them);
//!   `signals`, `sdnotify`.
//!
//! The `wssd` binary (with `wssd client`) is the `wssd-cli` package (cli/),
//! the load generator `wssd bench` the `wssd-bench` package (bench/).
//! `internals` re-exports what the fuzz targets drive; it is hidden and
//! not part of the API.

#![deny(missing_docs)]

pub mod admission;
mod app;
pub mod client;
mod cluster;
pub mod config;
mod deflate;
mod error;
mod exec;
mod frame;
pub mod handler;
mod handshake;
mod http_token;
mod inherit;
mod limits;
mod logging;
mod master;
mod message;
mod preflight;
mod privileges;
mod proctitle;
mod proxy_protocol;
mod relay;
mod route;
mod sdnotify;
mod server;
mod signals;
mod stats;
#[cfg(test)]
mod test_alloc;
mod tls;
mod worker;

/// The frame-path fuzz target's harness (see `fuzz/`); not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use worker::fuzzing;

pub use bytes::Bytes;
pub use error::Error;
pub use handler::{Conn, ConnId, ConnInfo, Handler, HandlerError, HandlerResult, Scope};
pub use message::{CloseCode, Message, Text, MAX_CLOSE_REASON};
pub use server::Server;

/// docs/handlers.md and docs/client.md, compiled as doc tests so that
/// their examples keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../docs/handlers.md")]
#[doc = include_str!("../docs/client.md")]
pub struct DocsCompile;

/// Internals re-exported for wssd's own fuzz targets (`fuzz/`), which
/// drive the hostile-input paths directly. Not part of the API: no
/// documentation, no semver promise.
#[doc(hidden)]
pub mod internals {
    /// The HTTP upgrade request head.
    pub mod handshake {
        pub use crate::handshake::*;
    }
    /// The frame codec, and the close-reason rule it applies.
    pub mod frame {
        pub use crate::frame::*;
        pub use crate::message::{truncate_reason, MAX_CLOSE_REASON};
    }
    /// The broadcast relay frames.
    pub mod relay {
        pub use crate::relay::*;
    }
    /// permessage-deflate: negotiation, codec, per-connection state.
    pub mod deflate {
        pub use crate::deflate::*;
    }
    /// Path templates and the route table.
    pub mod route {
        pub use crate::route::*;
    }
}
