//! The `wssd` binary (package `wssd-cli`): a thin wrapper over the
//! libraries.
//!
//! `wssd --config FILE` runs the daemon (the `wssd` library), `wssd --check
//! --config FILE` validates a configuration, `wssd client` is the
//! command-line client (`client.rs`, over `wssd::client`) and `wssd bench`
//! the load generator (the `wssd-bench` package).

mod client;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wssd::Server;

/// A pre-fork WebSocket server daemon.
#[derive(Debug, Parser)]
#[command(name = "wssd", version, about, long_about = None)]
struct Cli {
    /// Configuration file of the daemon. (No short form: `-c` is the
    /// connection count of `wssd bench`; see docs/operations.md.)
    #[arg(long, value_name = "FILE", default_value = "/etc/wssd/wssd.toml")]
    config: PathBuf,

    /// Validate the configuration and exit: 0 if it is usable, 2 if not.
    /// (No short form: `-t` is the thread count of `wssd bench`.)
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to a WebSocket server, send and receive messages.
    Client(client::ClientArgs),
    /// Load-test a WebSocket server.
    Bench(wssd_bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Some(Command::Client(args)) => client::run(args),
        Some(Command::Bench(args)) => wssd_bench::run(args),
        None => run_daemon(&cli.config, cli.check),
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// Runs (or with `check`, validates) the daemon configured by `config`;
/// returns the exit status.
fn run_daemon(config: &Path, check: bool) -> i32 {
    let server = match Server::from_config_file(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wssd: {e}");
            return e.exit_status();
        }
    };
    if check {
        return match server.check() {
            Ok(()) => {
                println!("wssd: configuration {} is valid", config.display());
                0
            }
            Err(e) => {
                eprintln!("wssd: {e}");
                e.exit_status()
            }
        };
    }
    match server.run() {
        Ok(()) => 0,
        Err(e) => {
            // Once, on stderr (which journald captures): not through the
            // logger as well.
            eprintln!("wssd: {e}");
            e.exit_status()
        }
    }
}
