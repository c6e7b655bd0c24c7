//! Integration tests, one binary for the area: `wssd bench` against an
//! independent Python `websockets` server (bench/echo_server.py). Counts
//! must be consistent and errors caught; speed is never asserted.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod echo;
mod modes;

use serde_json::Value as Json;
use support::{run, wssd_bin, PyServer};

/// Starts `bench/echo_server.py` with `args` (see its docstring).
pub fn echo_server(args: &[&str]) -> PyServer {
    PyServer::start("bench/echo_server.py", args, false)
}

/// The outcome of one `wssd bench` run.
pub struct BenchRun {
    /// Exit status (-1 if killed by a signal).
    pub status: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl BenchRun {
    /// Asserts a clean run (exit 0, no errors counted) and returns its
    /// `--json` object.
    pub fn clean_json(&self) -> Json {
        assert_eq!(
            self.status, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let j = self.json();
        assert_eq!(num(&j, "/errors"), 0, "{j}");
        j
    }

    /// Parses stdout as the `--json` object.
    pub fn json(&self) -> Json {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "bench output is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `wssd bench ARGS...` to completion (within `RUN_DEADLINE`).
pub fn run_bench(args: &[&str]) -> BenchRun {
    let mut cmd = std::process::Command::new(wssd_bin());
    cmd.arg("bench").args(args);
    let out = run(cmd, b"");
    BenchRun {
        status: out.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// The unsigned integer at `pointer` (e.g. `/latency_us/count`) of a
/// `--json` report; fails the test naming the pointer if it is not one.
pub fn num(j: &Json, pointer: &str) -> u64 {
    j.pointer(pointer)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("no unsigned integer at {pointer} in {j}"))
}

/// The number at `pointer` of a `--json` report.
pub fn float(j: &Json, pointer: &str) -> f64 {
    j.pointer(pointer)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {j}"))
}

/// The `per_connection` list of a `--json` report.
pub fn per_connection(j: &Json) -> Vec<u64> {
    j.pointer("/per_connection")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no per_connection list in {j}"))
        .iter()
        .map(|n| n.as_u64().unwrap_or_else(|| panic!("per_connection: {n}")))
        .collect()
}

/// Sum of the `per_connection` list of a `--json` report.
pub fn per_connection_sum(j: &Json) -> u64 {
    per_connection(j).iter().sum()
}
