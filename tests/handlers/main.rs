//! Integration tests, one binary for the area: built-in handlers (broadcast across workers, `exec` routes running a program per connection) and the Handler API through the example programs.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod broadcast;
mod examples;
mod exec;
