//! Integration tests, one binary for the area: the daemon as a process: config errors, echo, reload, drain, timeouts, workers.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod config;
mod drain;
mod echo;
mod reload;
mod timeouts;
mod workers;
