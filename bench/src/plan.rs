//! The run plan: the arguments checked and turned into what the workers
//! need, fixed for the run (endpoints with their handshakes and TLS
//! clients, sizes, durations, source addresses).

use std::net::IpAddr;
use std::time::Duration;

use crate::args::{BenchArgs, Mode, PayloadKind};
use crate::deflate;
use crate::error::BenchError;
use crate::frame::Handshake;
use crate::net::{self, FD_RESERVE};
use crate::payload;
use crate::stream::TlsClient;
use crate::target::Target;

/// Connects in progress per thread during setup.
const MAX_PENDING: usize = 256;

/// One server URL and how to connect to it.
#[derive(Debug)]
pub struct Endpoint {
    /// The URL as given.
    pub url: String,
    /// Where to connect, and the host and path to ask for.
    pub target: Target,
    /// The opening handshake's request, ready to send.
    pub handshake: Handshake,
    /// `wss://`: how to connect.
    pub tls: Option<TlsClient>,
}

/// Everything the workers need, fixed for the run.
#[derive(Debug)]
pub struct Plan {
    /// What to measure.
    pub mode: Mode,
    /// The URLs, space-separated (for reports).
    pub url: String,
    /// Connection i goes to endpoint i mod len (at least one).
    pub endpoints: Vec<Endpoint>,
    /// Offer and use permessage-deflate.
    pub deflate: bool,
    /// What the messages contain.
    pub payload: PayloadKind,
    /// Connections (handshake mode: concurrent handshake loops).
    pub connections: u32,
    /// Message size in bytes (raised to the timestamp's for broadcast).
    pub size: usize,
    /// Messages in flight per connection.
    pub window: u32,
    /// Text messages instead of binary ones.
    pub text: bool,
    /// Worker threads (at most one per connection).
    pub threads: u32,
    /// The measurement window.
    pub duration: Duration,
    /// How long a connection may take to be ready.
    pub connect_timeout: Duration,
    /// How long to wait for answers after the measurement ends.
    pub grace: Duration,
    /// Loopback source addresses to spread over (0: let the kernel pick).
    pub source_addrs: u32,
    /// Setup concurrency per thread.
    pub max_pending: usize,
    /// Broadcast: the sender gets no copy of its messages.
    pub exclude_sender: bool,
    /// Remarks for the report.
    pub notes: Vec<String>,
}

impl Plan {
    /// The endpoint of connection `id`.
    pub fn endpoint(&self, id: u32) -> &Endpoint {
        &self.endpoints[id as usize % self.endpoints.len()]
    }

    /// Broadcast: how many connections receive each message.
    pub fn receivers(&self, connected: u64) -> u64 {
        connected
            .saturating_sub(u64::from(self.exclude_sender))
            .max(1)
    }
}

/// Seconds as a duration, or a usage error naming `option`.
fn seconds(value: f64, option: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| BenchError::Usage(format!("{option} must be a positive number of seconds")))
}

/// Validates the arguments into a plan.
pub fn make_plan(args: &BenchArgs) -> Result<Plan, BenchError> {
    let mut notes = Vec::new();
    if args.connections == 0 {
        return Err(BenchError::Usage("--connections must be at least 1".into()));
    }
    if args.window == 0 {
        return Err(BenchError::Usage("--window must be at least 1".into()));
    }
    if args.threads == 0 {
        return Err(BenchError::Usage("--threads must be at least 1".into()));
    }
    if args.size > 64 << 20 {
        return Err(BenchError::Usage("--size must be at most 64 MiB".into()));
    }
    let duration = seconds(args.duration, "--duration")?;
    let connect_timeout = seconds(args.connect_timeout, "--connect-timeout")?;
    if args.urls.len() > 1 && args.mode != Mode::Broadcast {
        return Err(BenchError::Usage(
            "several URLs need --mode broadcast (receivers spread over them)".into(),
        ));
    }
    if args.payload == PayloadKind::Json && args.mode == Mode::Broadcast {
        return Err(BenchError::Usage(
            "--payload json is for echo, idle and handshake modes (broadcast payloads carry timestamps)".into(),
        ));
    }
    let endpoints = args
        .urls
        .iter()
        .map(|url| endpoint(url, args))
        .collect::<Result<Vec<_>, _>>()?;
    let mut size = args.size;
    if args.mode == Mode::Broadcast && size < payload::STAMP_LEN {
        size = payload::STAMP_LEN;
        notes.push(format!(
            "message size raised to {size} bytes (sequence number and timestamp)"
        ));
    }
    if args.exclude_sender && (args.mode != Mode::Broadcast || args.connections < 2) {
        return Err(BenchError::Usage(
            "--exclude-sender needs --mode broadcast and at least 2 connections".into(),
        ));
    }
    if endpoints.len() > 1 {
        notes.push(format!(
            "{} URLs: connection i goes to URL i mod {}, the sender to the first",
            endpoints.len(),
            endpoints.len()
        ));
    }
    let source_addrs = source_addrs(args, &endpoints, &mut notes)?;
    let threads = args.threads.min(args.connections);
    Ok(Plan {
        mode: args.mode,
        url: args.urls.join(" "),
        endpoints,
        deflate: args.deflate,
        payload: args.payload,
        connections: args.connections,
        size,
        window: args.window,
        text: args.text,
        threads,
        duration,
        connect_timeout,
        grace: Duration::from_secs(2).max(connect_timeout / 2),
        source_addrs,
        max_pending: MAX_PENDING,
        exclude_sender: args.exclude_sender,
        notes,
    })
}

/// Parses one URL into an endpoint with its handshake and TLS client.
fn endpoint(url: &str, args: &BenchArgs) -> Result<Endpoint, BenchError> {
    let target = Target::parse(url)?;
    let tls = match (target.tls, args.ca_file.is_some() || args.insecure) {
        (true, _) => Some(
            TlsClient::new(&target.host, args.ca_file.as_deref(), args.insecure)
                .map_err(BenchError::Usage)?,
        ),
        (false, true) => {
            return Err(BenchError::Usage(
                "--ca-file and --insecure need a wss:// URL".into(),
            ))
        }
        (false, false) => None,
    };
    let offer = args.deflate.then_some(deflate::OFFER);
    Ok(Endpoint {
        url: url.to_string(),
        handshake: Handshake::new(&target.host_header, &target.path, offer),
        target,
        tls,
    })
}

/// How many loopback source addresses to use.
fn source_addrs(
    args: &BenchArgs,
    endpoints: &[Endpoint],
    notes: &mut Vec<String>,
) -> Result<u32, BenchError> {
    let loopback_v4 = endpoints
        .iter()
        .all(|e| matches!(e.target.addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    let per_addr = net::ephemeral_ports() * 9 / 10;
    let count = match args.source_addrs {
        Some(0) => 0,
        Some(n) if loopback_v4 => n,
        Some(_) => {
            return Err(BenchError::Usage(
                "--source-addrs needs a 127.x.x.x target".into(),
            ))
        }
        None if args.connections > per_addr && loopback_v4 => {
            args.connections.div_ceil(per_addr.max(1))
        }
        None => {
            if args.connections > per_addr {
                notes.push(format!(
                    "{} connections may exceed the {per_addr} ephemeral ports of one source address",
                    args.connections
                ));
            }
            0
        }
    };
    if count > 0 {
        if let (Some(first), Some(last)) = (
            net::source_addr(0, count),
            net::source_addr(count - 1, count),
        ) {
            notes.push(format!("source addresses {first} to {last}"));
        }
    }
    Ok(count)
}

/// Raises the open-file limit and checks that the connections fit.
pub fn check_fd_limit(plan: &Plan) -> Result<(), BenchError> {
    let limit = net::raise_nofile_limit().map_err(BenchError::Setup)?;
    if u64::from(plan.connections) + FD_RESERVE > limit {
        return Err(BenchError::FdLimit {
            connections: plan.connections,
            limit,
        });
    }
    Ok(())
}
