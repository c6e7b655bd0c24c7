//! `wssd bench`: a load generator for WebSocket servers.
//!
//! Stub: filled in by the performance issue.

/// Arguments of `wssd bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// ws:// URL of the server under test.
    pub url: String,
}

/// Runs `wssd bench`; returns the process exit status.
pub fn run(args: BenchArgs) -> i32 {
    eprintln!("wssd bench: not implemented yet ({})", args.url);
    2
}
