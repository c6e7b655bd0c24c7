//! Integration tests, one binary for the area: built-in handlers (broadcast across workers) and the Handler API through the example programs.
//! How to add a test: see tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod broadcast;
mod examples;
