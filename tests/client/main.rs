//! Integration tests, one binary for the area: the client library and `wssd client` against Python websockets, tinyproxy and our daemon.
//! How to add a test: see tests/README.md.

#[path = "../common/mod.rs"]
mod common;
#[path = "../client_support/mod.rs"]
mod support;

mod cli;
mod daemon;
mod messages;
mod proxy;
mod tls;
