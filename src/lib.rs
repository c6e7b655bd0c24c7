//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! A map of the crate, following a connection from the outside in:
//!
//! - [`config`]: the TOML configuration, validated key by key.
//! - [`server`]: the embedding API ([`Server`]) and the binary's entry point.
//! - `master`: binds, forks and supervises workers, reloads, drains, relays.
//! - `worker`: one `mio` loop per process; connections as state machines.
//! - [`handshake`]: the HTTP upgrade as pure functions over bytes.
//! - [`route`]: path templates such as `/chat/{room}`.
//! - [`handler`]: the [`Handler`] trait, the [`Conn`] handle, built-ins.
//! - [`exec`]: `exec` routes: a program per connection, its pipes.
//! - [`relay`]: broadcast frames between workers through the master.
//! - [`frame`]: the frame codec (reader and writer) for both roles.
//! - [`tls`], [`privileges`], [`signals`], [`sdnotify`]: the operating
//!   system edges.
//! - [`client`]: the blocking client library and the `wssd client` CLI.
//! - [`bench`]: `wssd bench`, the load generator.

pub mod bench;
pub mod client;
pub mod config;
pub mod exec;
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
pub mod tls;
mod worker;

/// The frame-path fuzz target's harness (see `fuzz/`); not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use worker::fuzzing;

pub use handler::{
    CloseCode, Conn, ConnId, ConnInfo, Handler, HandlerError, HandlerResult, Message, Scope,
};
pub use server::{Error, Server};
