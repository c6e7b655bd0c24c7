//! wssd: a pre-fork WebSocket server daemon and a blocking client library.
//!
//! A map of the crate:
//!
//! - [`config`]: the TOML configuration, validated key by key.
//! - [`client`]: the blocking client library and the `wssd client` CLI.
//! - [`bench`]: `wssd bench`, the load generator.

pub mod bench;
pub mod client;
pub mod config;
pub mod server;
