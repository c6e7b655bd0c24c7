//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! A map of the crate, following a connection from the outside in:
//!
//! - [`config`]: the TOML configuration, validated key by key.
//! - [`server`]: the embedding API ([`Server`]) and the binary's entry point.
//! - `master`: binds, forks and supervises workers, reloads, drains, relays.
//! - `worker`: one `mio` loop per process; connections as state machines.
//! - [`handshake`]: the HTTP upgrade as pure functions over bytes.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, compression,
//!   bounded decompression, per-connection state.
//! - [`route`]: path templates such as `/chat/{room}`.
//! - [`handler`]: the [`Handler`] trait, the [`Conn`] handle, built-ins.
//! - [`relay`]: broadcast frames between workers through the master.
//! - [`frame`]: the frame codec (reader and writer) for both roles.
//! - `textcheck`: fail-fast UTF-8 validation under tungstenite's
//!   `WebSocket`, until the worker reads with [`frame`].
//! - [`tls`], [`privileges`], [`signals`], [`sdnotify`]: the operating
//!   system edges.
//! - [`client`]: the blocking client library and the `wssd client` CLI.
//! - [`bench`]: `wssd bench`, the load generator.

pub mod bench;
pub mod client;
pub mod config;
pub mod deflate;
pub mod frame;
pub mod handler;
pub mod handshake;
mod master;
pub mod privileges;
pub mod protocol;
pub mod relay;
pub mod route;
pub mod sdnotify;
pub mod server;
pub mod signals;
pub(crate) mod textcheck;
pub mod tls;
mod worker;

pub use handler::{
    CloseCode, Conn, ConnId, ConnInfo, Handler, HandlerError, HandlerResult, Message, Scope,
};
pub use server::{Error, Server};
