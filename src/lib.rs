//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! What an embedder uses: [`Server`] (run handlers with the daemon's
//! process model), the [`Handler`] trait and its [`Conn`] handle, the
//! shared vocabulary [`Message`] and [`CloseCode`], the [`config`] types,
//! and the blocking [`client`]. See `docs/handlers.md` and `examples/`.
//!
//! A map of the crate, top down (a module imports only modules below it):
//!
//! - `server`: the embedding API ([`Server`]).
//! - `master`: the loop that reloads, drains and relays; `generation`
//!   (load and bind) and `supervise` (fork, reap, back-off) under it.
//! - `app`: what a generation runs: the route table and named handlers,
//!   loaded from the configuration the same way at start and on reload.
//! - `error`: why the daemon could not run ([`Error`]), and exit statuses.
//! - `logging`: log lines that name the process (master or worker K).
//! - `worker`: one `mio` loop per process; connections as state machines.
//! - `handshake`: the HTTP upgrade as pure functions over bytes.
//! - `route`: path templates such as `/chat/{room}`.
//! - `relay`: broadcast frames between workers through the master.
//! - `deflate`: permessage-deflate (RFC 7692): negotiation, compression,
//!   bounded decompression, per-connection state (docs/compression.md).
//! - [`handler`]: the [`Handler`] trait, the [`Conn`] handle, built-ins.
//! - `message`: [`Message`], [`Text`], [`CloseCode`], shared by handlers
//!   and the client.
//! - `frame`: the frame codec (reader and writer) for both roles: the
//!   worker's connections and the client read and write frames with it.
//! - [`config`]: the TOML configuration, validated key by key.
//! - `tls`, `privileges`, `signals`, `sdnotify`: the operating system
//!   edges.
//! - [`client`]: the blocking client library (and, for now, the
//!   `wssd client` command line).
//! - `bench`: `wssd bench`, the load generator (its own package soon).
//!
//! `internals` re-exports what the fuzz targets drive; it is hidden and
//! not part of the API.

#![deny(missing_docs)]

mod app;
#[doc(hidden)] // `wssd bench`; moves to the wssd-bench package of the workspace
pub mod bench;
pub mod client;
pub mod config;
mod deflate;
mod error;
mod frame;
pub mod handler;
mod handshake;
mod logging;
mod master;
mod message;
mod privileges;
mod relay;
mod route;
mod sdnotify;
mod server;
mod signals;
mod tls;
mod worker;

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
