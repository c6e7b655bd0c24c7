//! Integration tests, one binary for the area: `wssd bench` against an independent Python server.
//! How to add a test: see tests/README.md.

#[path = "../bench_support/mod.rs"]
mod bench_support;

mod echo;
mod modes;
