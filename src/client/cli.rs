//! `wssd client`: the command-line front end of [`crate::client`].

/// Arguments of `wssd client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// ws:// or wss:// URL to connect to.
    pub url: String,
}

/// Runs `wssd client`; returns the process exit status.
pub fn run(args: ClientArgs) -> i32 {
    eprintln!("wssd client: not implemented yet ({})", args.url);
    2
}
