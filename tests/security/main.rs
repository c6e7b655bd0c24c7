//! Integration tests, one binary for the area: hostile input, limits, TLS and privilege drop.
//! How to add a test: see tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod limits;
mod tls;
