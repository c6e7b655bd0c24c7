//! Integration tests, one binary for the area: hostile input, limits, TLS and privilege drop.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod backpressure;
mod counted;
mod hostile;
mod limits;
mod limits_reload;
mod route_limits;
mod tls;
