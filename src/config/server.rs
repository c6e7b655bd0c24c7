//! The `[server]` table.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use super::compression::{parse_compression_mode, Compression};
use super::defaults;
use super::fields::{Errors, Fields};

/// Settings of the `[server]` table.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the master binds; port 0 lets the kernel choose.
    pub listen: SocketAddr,
    /// The text of `listen` as written, for messages.
    pub listen_text: String,
    /// Number of worker processes.
    pub workers: usize,
    /// A worker at this many connections stops accepting until one closes.
    pub max_connections_per_worker: usize,
    /// Time a client has to complete the TLS and HTTP upgrade handshakes.
    pub handshake_timeout: Duration,
    /// Close a connection that sent no frame for this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Ping a connection that has been silent for this long; `None` = never.
    pub ping_interval: Option<Duration>,
    /// How long a drain (SIGTERM or reload) waits for clients.
    pub drain_timeout: Duration,
    /// File the master writes its pid to, removed on exit.
    pub pid_file: Option<PathBuf>,
    /// The binary SIGUSR2 starts as the new master; `None`: the path the
    /// running master was started with.
    pub upgrade_binary: Option<PathBuf>,
    /// Largest message (after reassembly of fragments) a peer may send.
    pub max_message_size: usize,
    /// Largest single frame a peer may send.
    pub max_frame_size: usize,
    /// Largest HTTP request head (request line and headers).
    pub max_request_head: usize,
    /// Bytes that may wait in one connection's output queue.
    pub max_send_buffer: usize,
    /// Origins accepted in the upgrade request; empty accepts all.
    pub allowed_origins: Vec<String>,
    /// User the workers run as (the master binds first, as root).
    pub user: Option<String>,
    /// Group the workers run as.
    pub group: Option<String>,
    /// Every connection starts with a PROXY protocol v1/v2 header naming
    /// the client (behind a load balancer that sends one).
    pub proxy_protocol: bool,
    /// Default of every route's `compression`.
    pub compression: Compression,
}

pub(super) fn parse_server(mut t: Fields<'_>, errs: &mut Errors) -> ServerConfig {
    let listen_text = errs
        .opt(t.string("listen"))
        .unwrap_or_else(|| defaults::LISTEN.to_string());
    let listen = errs
        .keep(resolve_listen(&listen_text).map_err(|reason| t.err("listen", reason)))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let workers = parse_workers(&mut t, errs);
    let max_connections_per_worker = errs
        .opt(t.integer("max_connections_per_worker", 1, 10_000_000))
        .map_or(defaults::MAX_CONNECTIONS_PER_WORKER, |n| n as usize);
    let handshake_timeout = errs
        .opt(t.duration("handshake_timeout"))
        .unwrap_or(Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS));
    if handshake_timeout.is_zero() {
        errs.push(t.err("handshake_timeout", "must be more than 0"));
    }
    let idle_timeout = errs
        .opt(t.duration("idle_timeout"))
        .filter(|d| !d.is_zero());
    let ping_interval = errs
        .opt(t.duration("ping_interval"))
        .filter(|d| !d.is_zero());
    let drain_timeout = errs
        .opt(t.duration("drain_timeout"))
        .unwrap_or(Duration::from_secs(defaults::DRAIN_TIMEOUT_SECS));
    let pid_file = errs.opt(t.string("pid_file")).map(PathBuf::from);
    let upgrade_binary = errs.opt(t.string("upgrade_binary")).map(PathBuf::from);
    if upgrade_binary.as_ref().is_some_and(|p| p.is_relative()) {
        errs.push(t.err("upgrade_binary", "must be an absolute path"));
    }
    let max_message_size = errs
        .opt(t.size("max_message_size", 1))
        .unwrap_or(defaults::MAX_MESSAGE_SIZE);
    let max_frame_size = errs
        .opt(t.size("max_frame_size", 1))
        .unwrap_or(defaults::MAX_FRAME_SIZE);
    let max_request_head = errs
        .opt(t.size("max_request_head", 1024))
        .unwrap_or(defaults::MAX_REQUEST_HEAD);
    let max_send_buffer = errs
        .opt(t.size("max_send_buffer", 1024))
        .unwrap_or(defaults::MAX_SEND_BUFFER);
    let allowed_origins = errs
        .opt(t.string_list("allowed_origins"))
        .unwrap_or_default();
    for (i, o) in allowed_origins.iter().enumerate() {
        if !o.contains("://") {
            errs.push(t.err(
                &format!("allowed_origins[{i}]"),
                format!("\"{o}\" is not an origin: write scheme://host[:port], e.g. \"https://example.com\""),
            ));
        }
    }
    let user = errs.opt(t.string("user"));
    let group = errs.opt(t.string("group"));
    let proxy_protocol = errs.opt(t.boolean("proxy_protocol")).unwrap_or(false);
    let compression = errs.opt(parse_compression_mode(&mut t)).unwrap_or_default();
    t.finish(errs);
    ServerConfig {
        listen,
        listen_text,
        workers,
        max_connections_per_worker,
        handshake_timeout,
        idle_timeout,
        ping_interval,
        drain_timeout,
        pid_file,
        upgrade_binary,
        max_message_size,
        max_frame_size,
        max_request_head,
        max_send_buffer,
        allowed_origins,
        user,
        group,
        proxy_protocol,
        compression,
    }
}

/// `server.workers`; 1 stands in after an error.
pub(super) fn parse_workers(t: &mut Fields<'_>, errs: &mut Errors) -> usize {
    let reason = match t.take("workers") {
        None => return cpu_count(),
        Some(Value::String(s)) if s == "auto" => return cpu_count(),
        Some(Value::Integer(n)) if (1..=1024).contains(&n) => return n as usize,
        Some(Value::Integer(n)) => format!("{n} is out of range: expected 1 to 1024, or \"auto\""),
        Some(other) => format!(
            "expected a number of workers or \"auto\", found {}",
            describe_value(&other)
        ),
    };
    errs.push(t.err("workers", reason));
    1
}

pub(super) fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string \"{s}\""),
        other => other.type_str().to_string(),
    }
}

/// The number of CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "\"{text}\" has no port: write host:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""
        ));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("\"{text}\" resolves to no address")),
        Err(e) => Err(format!(
            "\"{text}\" is not a host:port address ({e}); e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""
        )),
    }
}
