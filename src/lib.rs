//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! A map of the crate, following a connection from the outside in:
//!
//! - [`config`]: the TOML configuration, validated key by key.
//! - [`server`]: the embedding API ([`Server`]).
//! - `master`: the loop that reloads, drains and relays; `generation`
//!   (load and bind) and `supervise` (fork, reap, back-off) under it.
//! - `app`: what a generation runs: the route table and named handlers,
//!   loaded from the configuration the same way at start and on reload.
//! - [`error`]: why the daemon could not run, and exit statuses.
//! - `logging`: log lines that name the process (master or worker K).
//! - `worker`: one `mio` loop per process; connections as state machines.
//! - [`handshake`]: the HTTP upgrade as pure functions over bytes.
//! - [`route`]: path templates such as `/chat/{room}`.
//! - [`handler`]: the [`Handler`] trait, the [`Conn`] handle, built-ins.
//! - [`relay`]: broadcast frames between workers through the master.
//! - `textcheck`: fail-fast UTF-8 validation of text frames as bytes
//!   arrive, under tungstenite, for the worker and the client.
//! - [`tls`], [`privileges`], [`signals`], [`sdnotify`]: the operating
//!   system edges.
//! - [`client`]: the blocking client library and the `wssd client` CLI.
//! - [`bench`]: `wssd bench`, the load generator.

mod app;
pub mod bench;
pub mod client;
pub mod config;
pub mod error;
pub mod handler;
pub mod handshake;
mod logging;
mod master;
mod message;
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

pub use bytes::Bytes;
pub use error::Error;
pub use handler::{Conn, ConnId, ConnInfo, Handler, HandlerError, HandlerResult, Scope};
pub use message::{CloseCode, Message, Text, MAX_CLOSE_REASON};
pub use server::Server;
