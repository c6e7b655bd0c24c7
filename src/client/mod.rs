//! Blocking WebSocket client library (`wssd::client`) and the `wssd client` CLI.
//!
//! Stub: filled in by the client issue.

pub mod cli;
