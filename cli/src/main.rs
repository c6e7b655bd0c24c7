//! The `wssd` binary (package `wssd-cli`): a thin wrapper over the
//! libraries.
//!
//! `wssd --config FILE` runs the daemon (the `wssd` library), `wssd --check
//! --config FILE` validates a configuration, `wssd client` is the
//! command-line client (`client.rs`, over `wssd::client`) and `wssd bench`
//! the load generator (the `wssd-bench` package).

mod client;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A pre-fork WebSocket server daemon.
#[derive(Debug, Parser)]
#[command(name = "wssd", version, about, long_about = None)]
struct Cli {
    /// Configuration file of the daemon.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/wssd/wssd.toml"
    )]
    config: PathBuf,

    /// Validate the configuration and exit: 0 if it is usable, 2 if not.
    #[arg(short = 't', long)]
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
        None => wssd::server::run_binary(&cli.config, cli.check),
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
