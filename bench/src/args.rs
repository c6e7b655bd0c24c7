//! The command line of `wssd bench` (clap): its arguments and the
//! choices they take.

use std::path::PathBuf;

/// What the benchmark does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send messages and check their echoes (throughput and latency).
    Echo,
    /// Connect, upgrade, one echo, close handshake, repeat.
    Handshake,
    /// Open connections, one echo each, hold them (memory per connection).
    Idle,
    /// One sender, every connection receives (delivery delay).
    Broadcast,
}

impl Mode {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Handshake => "handshake",
            Mode::Idle => "idle",
            Mode::Broadcast => "broadcast",
        }
    }
}

/// What the messages contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadKind {
    /// Sequence number, connection and a rotated `a..z` filler.
    Pattern,
    /// JSON-like chat records, compressible like real traffic (echo,
    /// idle and handshake modes).
    Json,
}

/// Arguments of `wssd bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// ws:// or wss:// URL of the server under test (for broadcast: a
    /// room of the server's broadcast route). Broadcast takes several: the
    /// sender and connection 0 go to the first, connection i to URL
    /// i mod N (instances of one cluster).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,

    /// Number of connections (handshake mode: concurrent handshake loops).
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "CONNS",
        default_value_t = 50
    )]
    pub connections: u32,

    /// Message size in bytes (broadcast: at least 32).
    #[arg(short = 's', long, value_name = "SIZE", default_value_t = 64)]
    pub size: usize,

    /// Measurement duration in seconds (idle: how long to hold).
    #[arg(short = 'd', long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,

    /// Messages in flight per connection (broadcast: messages in flight
    /// not yet received by every client).
    #[arg(short = 'w', long, value_name = "W", default_value_t = 1)]
    pub window: u32,

    /// What to measure.
    #[arg(short = 'm', long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,

    /// Send text messages instead of binary ones.
    #[arg(long)]
    pub text: bool,

    /// Event-loop threads; connections are split across them.
    #[arg(short = 't', long, value_name = "T", default_value_t = 1)]
    pub threads: u32,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Pid of the server's master process: report its memory (RSS and
    /// PSS summed over it and its descendants) per connection.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,

    /// Pid of a server process whose CPU time (with its descendants',
    /// every thread) over the measurement window is reported
    /// (`server_cpu_s` in the JSON); repeat for several servers.
    #[arg(long = "cpu-pid", value_name = "PID")]
    pub cpu_pids: Vec<i32>,

    /// Spread connections over this many source addresses 127.0.0.2,
    /// 127.0.0.3, ... (default: as many as the ephemeral port range needs,
    /// none when it suffices).
    #[arg(long, value_name = "N")]
    pub source_addrs: Option<u32>,

    /// Seconds a connection may take to connect, upgrade (and, in idle
    /// and handshake modes, get its first echo).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Broadcast: the server does not send the sender its own messages
    /// (the sender then must not receive any).
    #[arg(long)]
    pub exclude_sender: bool,

    /// wss://: trust the PEM certificate(s) in FILE besides the system's
    /// roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// wss://: accept any certificate and host name (for self-signed
    /// test servers; measures the same handshake work).
    #[arg(long)]
    pub insecure: bool,

    /// Offer permessage-deflate as a browser does
    /// (`permessage-deflate; client_max_window_bits`), compress what is
    /// sent and inflate what is received; a server that declines it fails
    /// the handshake.
    #[arg(long)]
    pub deflate: bool,

    /// Message contents: `pattern` (default) or `json` (compressible
    /// JSON-like text, for --deflate).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = PayloadKind::Pattern)]
    pub payload: PayloadKind,
}
