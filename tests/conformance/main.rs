//! Integration tests, one binary for the area: RFC 6455 behaviour over raw frames, of the daemon and of the client library, and permessage-deflate (RFC 7692: `compression`).
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod client;
mod compression;
mod failfast;
mod frames;
