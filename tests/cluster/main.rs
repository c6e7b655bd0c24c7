//! Integration tests, one binary for the area: several wssd instances
//! sharing rooms through a real Redis, the status listener (/status,
//! /metrics, POST /publish) and HAProxy in front (issue 13).
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod haproxy;
mod redis;
mod rooms;
