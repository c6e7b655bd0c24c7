//! `wssd bench`: a load generator for WebSocket servers, in the spirit of
//! `redis-benchmark` (the `wssd-bench` package; the `wssd` binary of the
//! `wssd-cli` package runs it as its `bench` subcommand).
//!
//! Its own package, beside everything else benchmark-related: the peers
//! (`bench/peers/`), `make bench`'s scripts (`bench/scripts/`) and its tests
//! (`bench/tests/`); docs/bench.md and docs/benchmarks.md describe them.
//!
//! This crate root owns the command line, the run plan and the orchestration
//! of a run (setup barrier, measurement window, memory samples, stop);
//! the submodules own the rest:
//!
//! - `worker`: one mio event loop per thread driving its connections;
//! - `shared`: the state shared by the main thread and the workers;
//! - `conn`: a connection's state, buffers and error categories;
//! - `frame`: the client-side WebSocket codec and opening handshake;
//! - `deflate`: permessage-deflate (offer, answer, compression; `flate2`);
//! - `payload`: checkable message payloads;
//! - `histogram`: the latency histogram (over `hdrhistogram`);
//! - `net`: sockets, source addresses, the open-file limit;
//! - `stream`: plain TCP or TLS, the non-blocking TLS handshake;
//! - `procmem`: the server's memory (RSS/PSS of a process tree);
//! - `target`: the `ws://` or `wss://` URL (parsed by `url`);
//! - `report`: the summary, the human table, the JSON (`serde_json`) and
//!   the progress line.

mod conn;
mod cpu;
mod deflate;
mod frame;
mod histogram;
mod net;
mod payload;
mod procmem;
mod report;
mod shared;
mod stream;
mod target;
mod worker;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use self::frame::Handshake;
use self::procmem::{MemError, MemSample};
use self::report::{Progress, Summary};
use self::shared::Shared;
use self::stream::TlsClient;
use self::target::{Target, UrlError};
use self::worker::{Worker, WorkerResult, WAKE};

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

/// Why a run could not be set up (exit status 2).
#[derive(Debug)]
pub enum BenchError {
    /// A bad option value.
    Usage(String),
    /// A bad URL.
    Url(UrlError),
    /// Not enough file descriptors for the connections.
    FdLimit {
        /// Connections asked for.
        connections: u32,
        /// The hard open-file limit.
        limit: u64,
    },
    /// The server does not accept TCP connections.
    Unreachable(String, io::Error),
    /// Every connection failed during setup; holds the first error.
    NoConnection(String),
    /// The server's memory cannot be read.
    Memory(MemError),
    /// Creating the event loops or threads failed.
    Setup(io::Error),
    /// Interrupted (SIGINT) before the measurement started.
    Interrupted,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}"),
            BenchError::Url(e) => write!(f, "{e}"),
            BenchError::FdLimit { connections, limit } => write!(
                f,
                "{connections} connections need about {} open files but the hard limit is \
                 {limit}; run several `wssd bench` processes with at most {} connections \
                 each (and --source-addrs so that their total fits the port range)",
                u64::from(*connections) + FD_RESERVE,
                limit.saturating_sub(FD_RESERVE)
            ),
            BenchError::Unreachable(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            BenchError::NoConnection(e) => write!(f, "no connection could be set up: {e}"),
            BenchError::Memory(e) => write!(f, "{e}"),
            BenchError::Setup(e) => write!(f, "cannot set up the event loops: {e}"),
            BenchError::Interrupted => write!(f, "interrupted before the measurement started"),
        }
    }
}

impl From<UrlError> for BenchError {
    fn from(e: UrlError) -> Self {
        BenchError::Url(e)
    }
}

impl From<MemError> for BenchError {
    fn from(e: MemError) -> Self {
        BenchError::Memory(e)
    }
}

/// File descriptors kept free for everything but connections.
const FD_RESERVE: u64 = 64;
/// Connects in progress per thread during setup.
const MAX_PENDING: usize = 256;

/// One server URL and how to connect to it.
#[derive(Debug)]
struct Endpoint {
    /// The URL as given.
    url: String,
    target: Target,
    handshake: Handshake,
    /// `wss://`: how to connect.
    tls: Option<TlsClient>,
}

/// Everything the workers need, fixed for the run.
#[derive(Debug)]
struct Plan {
    mode: Mode,
    /// The URLs, space-separated (for reports).
    url: String,
    /// Connection i goes to endpoint i mod len (at least one).
    endpoints: Vec<Endpoint>,
    /// Offer and use permessage-deflate.
    deflate: bool,
    payload: PayloadKind,
    connections: u32,
    size: usize,
    window: u32,
    text: bool,
    threads: u32,
    duration: Duration,
    connect_timeout: Duration,
    /// How long to wait for answers after the measurement ends.
    grace: Duration,
    /// Loopback source addresses to spread over (0: let the kernel pick).
    source_addrs: u32,
    /// Setup concurrency per thread.
    max_pending: usize,
    /// Broadcast: the sender gets no copy of its messages.
    exclude_sender: bool,
    /// Remarks for the report.
    notes: Vec<String>,
}

impl Plan {
    /// The endpoint of connection `id`.
    fn endpoint(&self, id: u32) -> &Endpoint {
        &self.endpoints[id as usize % self.endpoints.len()]
    }

    /// Broadcast: how many connections receive each message.
    fn receivers(&self, connected: u64) -> u64 {
        connected
            .saturating_sub(u64::from(self.exclude_sender))
            .max(1)
    }
}

/// Runs `wssd bench`; returns the process exit status.
pub fn run(args: BenchArgs) -> i32 {
    match execute(&args) {
        Ok(summary) => {
            summary.print(args.json);
            if summary.error_total() > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("wssd bench: {e}");
            2
        }
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
fn make_plan(args: &BenchArgs) -> Result<Plan, BenchError> {
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
fn check_fd_limit(plan: &Plan) -> Result<(), BenchError> {
    let limit = net::raise_nofile_limit().map_err(BenchError::Setup)?;
    if u64::from(plan.connections) + FD_RESERVE > limit {
        return Err(BenchError::FdLimit {
            connections: plan.connections,
            limit,
        });
    }
    Ok(())
}

/// Checks that every server accepts TCP connections at all.
fn probe(plan: &Plan) -> Result<(), BenchError> {
    for e in &plan.endpoints {
        std::net::TcpStream::connect_timeout(&e.target.addr, plan.connect_timeout)
            .map(drop)
            .map_err(|err| BenchError::Unreachable(e.target.addr.to_string(), err))?;
    }
    Ok(())
}

/// Sets up, runs and summarises one benchmark.
fn execute(args: &BenchArgs) -> Result<Summary, BenchError> {
    let plan = Arc::new(make_plan(args)?);
    check_fd_limit(&plan)?;
    probe(&plan)?;
    let baseline = args.pid.map(procmem::sample).transpose()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_sigint(&interrupted);
    let (shared, handles) = spawn(&plan)?;
    let outcome = orchestrate(&plan, &shared, &handles, args, &interrupted);
    shared.stop.store(true, Ordering::Release);
    shared.wake_all();
    let results: Vec<WorkerResult> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    let timing = outcome?;
    let handshakes: u64 = results.iter().map(|r| r.handshakes).sum();
    if plan.mode == Mode::Handshake && handshakes == 0 && shared.errors.load(Ordering::Relaxed) > 0
    {
        return Err(BenchError::NoConnection(first_error(&shared)));
    }
    let samples = shared.samples();
    let mut summary = Summary::new(&plan, &results, timing.start, timing.stopped);
    summary.samples = samples;
    summary.connected = timing.connected;
    summary.server_cpu = timing.server_cpu;
    match timing.holding {
        Some(Ok(sample)) => summary.set_memory(args.pid, baseline, Some(sample)),
        Some(Err(e)) => summary.add_note(format!("server memory not measured: {e}")),
        None => {}
    }
    summary.finish_broadcast(&plan, &results, plan.receivers(timing.connected));
    if interrupted.load(Ordering::Relaxed) {
        summary.add_note("interrupted (SIGINT) before the requested duration".into());
    }
    Ok(summary)
}

/// Makes a first SIGINT end the measurement early (the report is still
/// printed) and a second one exit at once with status 130.
fn watch_sigint(flag: &Arc<AtomicBool>) {
    use signal_hook::consts::SIGINT;
    // Without the handlers Ctrl-C just kills the run, as before.
    let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag));
    let _ = signal_hook::flag::register(SIGINT, Arc::clone(flag));
}

/// Creates the event loops and starts one worker thread per loop.
fn spawn(plan: &Arc<Plan>) -> Result<(Arc<Shared>, Vec<JoinHandle<WorkerResult>>), BenchError> {
    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    for _ in 0..plan.threads {
        let poll = Poll::new().map_err(BenchError::Setup)?;
        wakers.push(Waker::new(poll.registry(), WAKE).map_err(BenchError::Setup)?);
        polls.push(poll);
    }
    let shared = Arc::new(Shared::new(wakers));
    let mut handles = Vec::new();
    for (index, poll) in polls.into_iter().enumerate() {
        let ids: Vec<u32> = (0..plan.connections)
            .filter(|i| *i as usize % plan.threads as usize == index)
            .collect();
        let worker = Worker::new(Arc::clone(plan), Arc::clone(&shared), poll, index, ids);
        let handle = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || worker.run())
            .map_err(BenchError::Setup)?;
        handles.push(handle);
    }
    Ok((shared, handles))
}

/// Timestamps and samples taken by the main thread.
struct Timing {
    start: Instant,
    stopped: Instant,
    connected: u64,
    /// The memory sample taken while the connections were held.
    holding: Option<Result<MemSample, MemError>>,
    /// Per `--cpu-pid`, its tree's CPU seconds over the window.
    server_cpu: Vec<(i32, f64)>,
}

/// Waits for the setup barrier, runs the measurement window, samples memory.
fn orchestrate(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<WorkerResult>],
    args: &BenchArgs,
    interrupted: &AtomicBool,
) -> Result<Timing, BenchError> {
    let pid = args.pid;
    let mut progress = Progress::new(plan);
    let connected = if plan.mode == Mode::Handshake {
        u64::from(plan.connections)
    } else {
        wait_for_setup(plan, shared, handles, &mut progress, interrupted)?
    };
    shared
        .receivers
        .store(plan.receivers(connected), Ordering::Release);
    let cpu_before = cpu::sample(&args.cpu_pids);
    let start = Instant::now();
    shared.start.store(true, Ordering::Release);
    shared.wake_all();
    let end = start + plan.duration;
    let middle = start + plan.duration / 2;
    let mut holding: Option<Result<MemSample, MemError>> = None;
    loop {
        let now = Instant::now();
        if now >= end || handles.iter().all(JoinHandle::is_finished) {
            break;
        }
        if interrupted.load(Ordering::Relaxed) {
            progress.interrupted(now.duration_since(start));
            break;
        }
        if let (Some(pid), None, true) = (pid, &holding, now >= middle) {
            holding = Some(procmem::sample(pid));
        }
        progress.tick(shared, now.duration_since(start));
        let wake = if holding.is_none() && pid.is_some() {
            end.min(middle)
        } else {
            end
        };
        thread::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
    }
    let stopped = Instant::now();
    let server_cpu = cpu::window(&cpu_before, &cpu::sample(&args.cpu_pids));
    if let (Some(pid), None) = (pid, &holding) {
        holding = Some(procmem::sample(pid));
    }
    progress.done();
    Ok(Timing {
        start,
        stopped,
        connected,
        holding,
        server_cpu,
    })
}

/// The first error message kept, for a one-line setup failure.
fn first_error(shared: &Shared) -> String {
    shared
        .samples()
        .into_iter()
        .next()
        .unwrap_or_else(|| "unknown error".into())
}

/// Waits until every connection is ready or failed; returns how many are
/// ready.
fn wait_for_setup(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<WorkerResult>],
    progress: &mut Progress,
    interrupted: &AtomicBool,
) -> Result<u64, BenchError> {
    let total = u64::from(plan.connections);
    let setup_start = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if ready + failed >= total || handles.iter().all(JoinHandle::is_finished) {
            if ready == 0 {
                let first = first_error(shared);
                return Err(BenchError::NoConnection(first));
            }
            return Ok(ready);
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        progress.setup(ready, failed, total, setup_start.elapsed());
        thread::sleep(Duration::from_millis(5));
    }
}
