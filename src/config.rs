//! The daemon's configuration: the TOML file, its validation, and the
//! typed values the master and the workers read.
//!
//! Parsing is done by hand over a `toml::Table` rather than with
//! `#[derive(Deserialize)]` so that every error names the file, the full
//! key (`server.workers`, `routes[2].path`) and the reason, which is what an
//! operator needs at 3 a.m. Unknown keys are errors, as in nginx.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::deflate;
pub use crate::limits::LimitsConfig;
use crate::limits::{CidrSet, Rate};

/// The whole configuration of one daemon generation.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; named in every later error message.
    pub source: PathBuf,
    /// The `[server]` table.
    pub server: ServerConfig,
    /// The `[log]` table.
    pub log: LogConfig,
    /// The `[tls]` table; `None` serves plain `ws://`.
    pub tls: Option<TlsConfig>,
    /// The `[[routes]]` tables, in file order.
    pub routes: Vec<RouteConfig>,
    /// The `[limits]` table: per-address limits and trusted proxies.
    pub limits: LimitsConfig,
    /// The `[status]` table; `None` (absent) runs no status listener.
    pub status: Option<StatusConfig>,
    /// The `[cluster]` table; `None` (absent) is one instance on its own.
    pub cluster: Option<ClusterConfig>,
    /// The `[compression]` table: how permessage-deflate is negotiated
    /// and done where a route turns it on.
    pub compression: deflate::Settings,
}

/// Settings of the `[status]` table: the master's HTTP listener for
/// `/status`, `/metrics` and `POST /publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// Address of the status listener (loopback by default).
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer TOKEN` for `POST`, if set.
    pub token: Option<String>,
}

/// Settings of the `[cluster]` table: broadcasts shared with other wssd
/// instances through Redis pub/sub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port[/db]` or `rediss://...` (TLS).
    pub redis_url: String,
    /// Prefix of the pub/sub channel (`PREFIX:broadcast`).
    pub channel_prefix: String,
    /// This instance's name in published messages; `None` means host
    /// name and master pid (see [`ClusterConfig::instance_id`]).
    pub instance_id: Option<String>,
    /// Bytes of broadcasts that may wait for Redis; the oldest are
    /// dropped (and counted) beyond it.
    pub max_pending: usize,
}

impl ClusterConfig {
    /// The configured instance id, or `HOSTNAME-PID` of this process.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "wssd".to_string());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Whether a route negotiates permessage-deflate (`compression` in
/// `[server]` and in `[[routes]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Never: offers are ignored (the default).
    #[default]
    Off,
    /// Accept permessage-deflate offers per the `[compression]` table.
    Deflate,
}

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

/// Settings of the `[log]` table.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `env_logger` filter such as `info` or `wssd=debug`.
    pub level: String,
    /// The file master and workers append to; `None`: standard error.
    pub file: Option<PathBuf>,
    /// Plain lines or one JSON object per line.
    pub format: LogFormat,
    /// Whether the workers log one `info` line per handshake, accepted
    /// or refused (`[log] access_log`, on by default).
    pub access_log: bool,
}

/// `log.format`: how a log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL wssd[PID ROLE]: message`
    Text,
    /// `{"time":...,"level":...,"pid":...,"role":...,"worker":...,"message":...}`
    Json,
}

/// Settings of the `[tls]` table.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8 or RSA).
    pub key: PathBuf,
}

/// One `[[routes]]` table.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Path template such as `/chat/{room}`.
    pub path: String,
    /// Name of the handler serving it (`echo`, `broadcast`, or one the
    /// embedding program registered).
    pub handler: String,
    /// For `broadcast`: whether the sender receives its own messages.
    pub echo_self: bool,
    /// Overrides `server.max_message_size` on this route.
    pub max_message_size: Option<usize>,
    /// Subprotocols this route speaks, in the server's preference order.
    pub subprotocols: Vec<String>,
    /// Refuse (400) a client that offers none of `subprotocols`.
    pub subprotocol_required: bool,
    /// For `exec`: the program and how to run it.
    pub exec: Option<ExecConfig>,
    /// Overrides `server.compression` on this route.
    pub compression: Option<Compression>,
}

/// How an `exec` route runs its program (see docs/exec.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program and its arguments; no shell is involved.
    pub command: Vec<String>,
    /// The program's working directory; the daemon's when `None`.
    pub working_dir: Option<PathBuf>,
    /// Variables set for the program, over the CGI ones.
    pub env: Vec<(String, String)>,
    /// Names of the daemon's variables passed on (besides `PATH`).
    pub pass_env: Vec<String>,
    /// Lines or binary messages.
    pub mode: ExecMode,
    /// Programs of this route one worker runs at most; `None` = no limit.
    pub max_processes: Option<usize>,
    /// Time between closing stdin and SIGTERM, and SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// How an `exec` program's output becomes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// A text message per line each way.
    Lines,
    /// Bytes both ways: each read from stdout is one binary message.
    Binary,
}

impl RouteConfig {
    /// This route's compression: its own, else the server's.
    pub fn compression(&self, server: &ServerConfig) -> Compression {
        self.compression.unwrap_or(server.compression)
    }
}

/// Defaults, in one place so docs/configuration.md can point at them.
pub mod defaults {
    /// `server.listen`
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// `server.max_connections_per_worker`
    pub const MAX_CONNECTIONS_PER_WORKER: usize = 10_000;
    /// `server.handshake_timeout`, seconds
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    /// `server.drain_timeout`, seconds
    pub const DRAIN_TIMEOUT_SECS: u64 = 30;
    /// `server.max_message_size`
    pub const MAX_MESSAGE_SIZE: usize = 16 << 20;
    /// `server.max_frame_size`
    pub const MAX_FRAME_SIZE: usize = 16 << 20;
    /// `server.max_request_head`
    pub const MAX_REQUEST_HEAD: usize = 16 << 10;
    /// `server.max_send_buffer`
    pub const MAX_SEND_BUFFER: usize = 16 << 20;
    /// `status.listen`
    pub const STATUS_LISTEN: &str = "127.0.0.1:9100";
    /// `cluster.channel_prefix`
    pub const CHANNEL_PREFIX: &str = "wssd";
    /// `cluster.max_pending`
    pub const MAX_PENDING: usize = 64 << 20;
    /// `limits.ipv6_prefix`
    pub const IPV6_PREFIX: u8 = 64;
    /// `limits.table_size`
    pub const LIMITS_TABLE_SIZE: usize = 65_536;
    /// `routes[].kill_grace` of an `exec` route, seconds
    pub const KILL_GRACE_SECS: u64 = 5;
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file being read.
    pub file: PathBuf,
    /// The dotted key, e.g. `server.workers`; empty for whole-file errors.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub reason: String,
    /// Further errors found in the same file: every problem is reported
    /// at once, not one per attempt.
    pub others: Vec<ConfigError>,
}

impl ConfigError {
    /// Builds an error about `key` in `file`.
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
            others: Vec::new(),
        }
    }

    /// Joins `errors` into one (the first, carrying the rest in `others`);
    /// `None` when there is none.
    pub fn join(errors: impl IntoIterator<Item = ConfigError>) -> Option<ConfigError> {
        let mut flat = Vec::new();
        for mut e in errors {
            let nested = std::mem::take(&mut e.others);
            flat.push(e);
            flat.extend(nested);
        }
        let mut iter = flat.into_iter();
        let mut first = iter.next()?;
        first.others = iter.collect();
        Some(first)
    }

    /// This error and the others, in the order they were found.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(self.others.iter())
    }

    /// `key `server.workers`: reason`, or the reason alone.
    fn fmt_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "key `{}`: {}", self.key, self.reason)
        }
    }
}

impl fmt::Display for ConfigError {
    /// One error: `FILE: key `K`: REASON`. Several: `FILE: N errors:`
    /// and one indented line per error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if self.others.is_empty() {
            return self.fmt_item(f);
        }
        write!(f, "{} errors:", self.others.len() + 1)?;
        for e in self.all() {
            f.write_str("\n  ")?;
            e.fmt_item(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
        Config::from_str(&text, path)
    }

    /// Parses and validates `text`, naming `source` in errors. Every
    /// problem is reported (the first, with the rest in
    /// [`ConfigError::others`]), except that a TOML syntax error stops
    /// at once.
    pub fn from_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            // toml's message is several lines: a snippet of the file with a
            // `^` under the error. Keep them, or the marker points nowhere.
            ConfigError::new(
                source,
                "",
                format!("not valid TOML: {}", e.to_string().trim_end()),
            )
        })?;
        let mut errs = Errors::default();
        let mut root = Fields::new(source, String::new(), table);
        let server = root.table("server", &mut errs);
        let server = parse_server(server, &mut errs);
        let log = root.table("log", &mut errs);
        let log = parse_log(log, &mut errs);
        let tls = match root.take("tls") {
            None => None,
            Some(v) => errs
                .keep(root.as_table("tls", v))
                .and_then(|t| parse_tls(t, &mut errs)),
        };
        let routes = parse_routes(&mut root, &mut errs);
        let status = match root.take("status") {
            None => None,
            Some(v) => errs
                .keep(root.as_table("status", v))
                .and_then(|t| parse_status(t, &mut errs)),
        };
        let cluster = match root.take("cluster") {
            None => None,
            Some(v) => errs
                .keep(root.as_table("cluster", v))
                .and_then(|t| parse_cluster(t, &mut errs)),
        };
        let limits = root.table("limits", &mut errs);
        let limits = errs.keep(parse_limits(limits)).unwrap_or_default();
        let compression = root.table("compression", &mut errs);
        let compression = parse_compression(compression, &mut errs);
        root.finish(&mut errs);
        errs.into_result(Config {
            source: source.to_path_buf(),
            server,
            log,
            tls,
            routes,
            status,
            cluster,
            limits,
            compression,
        })
    }
}

/// The errors found so far in one file. Parsing goes on after an error
/// (with a stand-in value) so that one run reports them all.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// The value, or `None` with the error kept.
    fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.push(e)).ok()
    }

    /// A required value: absent is the error `missing` (kept too).
    fn required<T>(
        &mut self,
        r: Result<Option<T>, ConfigError>,
        missing: impl FnOnce() -> ConfigError,
    ) -> Option<T> {
        match r {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.push(missing());
                None
            }
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    /// An optional value; an error counts as absent (and is kept).
    fn opt<T>(&mut self, r: Result<Option<T>, ConfigError>) -> Option<T> {
        self.keep(r).flatten()
    }

    fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        match ConfigError::join(self.0) {
            None => Ok(value),
            Some(e) => Err(e),
        }
    }
}

/// A TOML table being consumed key by key; whatever is left at the end is
/// an unknown key.
struct Fields<'a> {
    file: &'a Path,
    prefix: String,
    table: Table,
    /// Every key asked for: the known keys, for "did you mean" hints.
    known: Vec<String>,
}

impl<'a> Fields<'a> {
    fn new(file: &'a Path, prefix: String, table: Table) -> Self {
        Fields {
            file,
            prefix,
            table,
            known: Vec::new(),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.key(name), reason)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.known.push(name.to_string());
        self.table.remove(name)
    }

    fn as_table(&self, name: &str, v: Value) -> Result<Fields<'a>, ConfigError> {
        match v {
            Value::Table(t) => Ok(Fields::new(self.file, self.key(name), t)),
            other => Err(self.err(name, format!("expected a table, found {}", kind(&other)))),
        }
    }

    /// A sub-table that may be absent or wrong (then it is empty, and
    /// the error is kept).
    fn table(&mut self, name: &str, errs: &mut Errors) -> Fields<'a> {
        let found = self
            .take(name)
            .and_then(|v| errs.keep(self.as_table(name, v)));
        found.unwrap_or_else(|| Fields::new(self.file, self.key(name), Table::new()))
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(name, format!("expected a string, found {}", kind(&other))))
            }
        }
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.err(
                name,
                format!("expected true or false, found {}", kind(&other)),
            )),
        }
    }

    /// A whole number within `min..=max`.
    fn integer(&mut self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Integer(n)) if (min..=max).contains(&n) => Ok(Some(n)),
            Some(Value::Integer(n)) => Err(self.err(
                name,
                format!("{n} is out of range: expected {min} to {max}"),
            )),
            Some(other) => Err(self.err(
                name,
                format!("expected a whole number, found {}", kind(&other)),
            )),
        }
    }

    /// A byte size: a whole number of bytes, or a string like "64KiB", "16MiB".
    fn size(&mut self, name: &str, min: usize) -> Result<Option<usize>, ConfigError> {
        let parsed = match self.take(name) {
            None => return Ok(None),
            Some(Value::Integer(n)) if n >= 0 => n as usize,
            Some(Value::String(s)) => parse_size(&s).ok_or_else(|| {
                self.err(
                    name,
                    format!("\"{s}\" is not a size: use bytes (65536) or a string like \"64KiB\" or \"16MiB\""),
                )
            })?,
            Some(other) => {
                return Err(self.err(
                    name,
                    format!("expected a size in bytes, found {}", kind(&other)),
                ))
            }
        };
        if parsed < min {
            return Err(self.err(name, format!("{parsed} is too small: the minimum is {min}")));
        }
        Ok(Some(parsed))
    }

    /// A duration: seconds as a number, or a string like "500ms", "30s", "5m".
    fn duration(&mut self, name: &str) -> Result<Option<Duration>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Integer(n)) if (0..1_000_000_000).contains(&n) => {
                Ok(Some(Duration::from_secs(n as u64)))
            }
            Some(Value::Integer(n)) if n > 0 => Err(self.err(
                name,
                format!("{n} seconds is out of range: at most 999999999"),
            )),
            Some(Value::Float(f)) if f >= 0.0 && f.is_finite() && f < 1e9 => {
                Ok(Some(Duration::from_secs_f64(f)))
            }
            Some(Value::String(s)) => parse_duration(&s).map(Some).ok_or_else(|| {
                self.err(
                    name,
                    format!("\"{s}\" is not a duration: use seconds (10) or a string like \"500ms\", \"30s\", \"5m\", \"1h\""),
                )
            }),
            Some(other) => Err(self.err(
                name,
                format!("expected a duration (seconds, or a string like \"30s\"), found {}", describe(&other)),
            )),
        }
    }

    fn string_list(&mut self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(self.err(
                        &format!("{name}[{i}]"),
                        format!("expected a string, found {}", kind(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.err(
                name,
                format!("expected a list of strings, found {}", kind(&other)),
            )),
        }
    }

    /// Reports every key nobody consumed, with the closest known key as a
    /// suggestion.
    fn finish(self, errs: &mut Errors) {
        for k in self.table.keys() {
            let reason = match closest(k, &self.known) {
                Some(known) => format!("unknown key: did you mean `{known}`?"),
                None => "unknown key (check its spelling and docs/configuration.md)".to_string(),
            };
            errs.push(self.err(k, reason));
        }
    }
}

/// The known key closest to `unknown` by edit distance, if it is close
/// enough to be a typo (1 edit for short names, up to 3 for long ones).
fn closest<'k>(unknown: &str, known: &'k [String]) -> Option<&'k str> {
    let limit = (unknown.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn kind(v: &Value) -> &'static str {
    v.type_str()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Integer(n) => format!("the negative number {n}"),
        Value::Float(f) => format!("the number {f}"),
        other => other.type_str().to_string(),
    }
}

fn parse_server(mut t: Fields<'_>, errs: &mut Errors) -> ServerConfig {
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
fn parse_workers(t: &mut Fields<'_>, errs: &mut Errors) -> usize {
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

fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string \"{s}\""),
        other => other.type_str().to_string(),
    }
}

/// The number of CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
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

fn parse_log(mut t: Fields<'_>, errs: &mut Errors) -> LogConfig {
    let level = errs
        .opt(t.string("level"))
        .unwrap_or_else(|| "info".to_string());
    let known = ["off", "error", "warn", "info", "debug", "trace"];
    let base = level.split(',').next().unwrap_or("").trim();
    if !level.contains('=') && !known.contains(&base) {
        errs.push(t.err(
            "level",
            format!(
                "\"{level}\" is not a log level: use one of {}",
                known.join(", ")
            ),
        ));
    }
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let file = errs.opt(t.string("file")).map(|f| base.join(f));
    let format = match errs.opt(t.string("format")).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errs.push(t.err(
                "format",
                format!("\"{other}\" is not a log format: use \"text\" or \"json\""),
            ));
            LogFormat::Text
        }
    };
    let access_log = errs.opt(t.boolean("access_log")).unwrap_or(true);
    t.finish(errs);
    LogConfig {
        level,
        file,
        format,
        access_log,
    }
}

/// The `[tls]` table; `None` after an error.
fn parse_tls(mut t: Fields<'_>, errs: &mut Errors) -> Option<TlsConfig> {
    let cert = errs.required(t.string("cert"), || {
        t.err("cert", "missing: name the PEM certificate chain file")
    });
    let key = errs.required(t.string("key"), || {
        t.err("key", "missing: name the PEM private key file")
    });
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    t.finish(errs);
    Some(TlsConfig {
        cert: base.join(cert?),
        key: base.join(key?),
    })
}

fn parse_status(mut t: Fields<'_>, errs: &mut Errors) -> Option<StatusConfig> {
    let status = errs.keep(status_fields(&mut t));
    t.finish(errs);
    status
}

fn status_fields(t: &mut Fields<'_>) -> Result<StatusConfig, ConfigError> {
    let text = t
        .string("listen")?
        .unwrap_or_else(|| defaults::STATUS_LISTEN.to_string());
    let listen = resolve_listen(&text).map_err(|reason| t.err("listen", reason))?;
    let token = t.string("token")?;
    if token
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.contains(char::is_whitespace))
    {
        return Err(t.err(
            "token",
            "must be non-empty without spaces (it is sent as `Authorization: Bearer TOKEN`)",
        ));
    }
    Ok(StatusConfig { listen, token })
}

fn parse_cluster(mut t: Fields<'_>, errs: &mut Errors) -> Option<ClusterConfig> {
    let cluster = errs.keep(cluster_fields(&mut t));
    t.finish(errs);
    cluster
}

fn cluster_fields(t: &mut Fields<'_>) -> Result<ClusterConfig, ConfigError> {
    let redis_url = t.string("redis_url")?.ok_or_else(|| {
        t.err(
            "redis_url",
            "missing: name the Redis server, e.g. \"redis://127.0.0.1:6379/0\"",
        )
    })?;
    if let Err(e) = redis::Client::open(redis_url.as_str()) {
        return Err(t.err(
            "redis_url",
            format!("\"{redis_url}\" is not a usable Redis URL ({e}); write redis://[:password@]host:port[/db] or rediss://... for TLS"),
        ));
    }
    let channel_prefix = t
        .string("channel_prefix")?
        .unwrap_or_else(|| defaults::CHANNEL_PREFIX.to_string());
    if channel_prefix.is_empty() || channel_prefix.contains(char::is_whitespace) {
        return Err(t.err("channel_prefix", "must be non-empty without spaces"));
    }
    let instance_id = t.string("instance_id")?;
    if instance_id.as_deref().is_some_and(str::is_empty) {
        return Err(t.err(
            "instance_id",
            "must not be empty (leave it out for host name and pid)",
        ));
    }
    let max_pending = t
        .size("max_pending", 1024)?
        .unwrap_or(defaults::MAX_PENDING);
    Ok(ClusterConfig {
        redis_url,
        channel_prefix,
        instance_id,
        max_pending,
    })
}

fn parse_routes(root: &mut Fields<'_>, errs: &mut Errors) -> Vec<RouteConfig> {
    let items = match root.take("routes") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            errs.push(root.err(
                "routes",
                format!("expected [[routes]] tables, found {}", kind(&other)),
            ));
            return Vec::new();
        }
    };
    let mut routes = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Some(mut t) = errs.keep(root.as_table(&format!("routes[{i}]"), item)) else {
            continue;
        };
        let path = errs.required(t.string("path"), || {
            t.err(
                "path",
                "missing: every route needs a path such as \"/echo\"",
            )
        });
        let handler = errs.required(t.string("handler"), || {
            t.err("handler", "missing: name a handler such as \"echo\"")
        });
        let echo_self = errs.opt(t.boolean("echo_self")).unwrap_or(true);
        let max_message_size = errs.opt(t.size("max_message_size", 1));
        let compression = errs.opt(parse_compression_mode(&mut t));
        let subprotocols = errs.keep(parse_subprotocols(&mut t)).unwrap_or_default();
        let subprotocol_required = errs.opt(t.boolean("subprotocol_required")).unwrap_or(false);
        if subprotocol_required && subprotocols.is_empty() {
            errs.push(t.err(
                "subprotocol_required",
                "is true but the route lists no subprotocols: add subprotocols = [\"name\", ...]",
            ));
        }
        // An exec route's keys; on another handler they are unknown keys.
        let exec = match handler.as_deref() {
            Some("exec") => parse_exec(&mut t, errs),
            _ => None,
        };
        t.finish(errs);
        if let (Some(path), Some(handler)) = (path, handler) {
            if handler == "exec" && exec.is_none() {
                continue; // its errors are kept
            }
            routes.push(RouteConfig {
                path,
                handler,
                echo_self,
                max_message_size,
                compression,
                subprotocols,
                subprotocol_required,
                exec,
            });
        }
    }
    routes
}

/// A route's `subprotocols`: HTTP tokens (RFC 6455 §4.1), no duplicates.
fn parse_subprotocols(t: &mut Fields<'_>) -> Result<Vec<String>, ConfigError> {
    let list = t.string_list("subprotocols")?.unwrap_or_default();
    for (i, p) in list.iter().enumerate() {
        let token = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(t.err(
                &format!("subprotocols[{i}]"),
                format!("\"{p}\" is not a subprotocol name: use letters, digits and .-_ only, e.g. \"chat.v2\""),
            ));
        }
        if list[..i].contains(p) {
            return Err(t.err(
                &format!("subprotocols[{i}]"),
                format!("\"{p}\" is listed twice"),
            ));
        }
    }
    Ok(list)
}

fn parse_limits(mut t: Fields<'_>) -> Result<LimitsConfig, ConfigError> {
    let max_connections_per_ip = t
        .integer("max_connections_per_ip", 1, i64::from(u32::MAX))?
        .map(|n| n as u32);
    let handshake_rate_per_ip = match t.string("handshake_rate_per_ip")? {
        None => None,
        Some(text) => Some(Rate::parse(&text).ok_or_else(|| {
            t.err(
                "handshake_rate_per_ip",
                format!("\"{text}\" is not a rate: write COUNT/PERIOD, e.g. \"20/s\", \"100/m\" or \"5/10s\""),
            )
        })?),
    };
    let burst = t
        .integer("handshake_burst", 1, 1_000_000)?
        .map(|n| n as u32);
    if burst.is_some() && handshake_rate_per_ip.is_none() {
        return Err(t.err(
            "handshake_burst",
            "is set but handshake_rate_per_ip is not: set the rate too, e.g. \"20/s\"",
        ));
    }
    // Default burst: one period's worth, so "20/s" allows 20 at once.
    let handshake_burst = burst.unwrap_or(handshake_rate_per_ip.map_or(0, |r| r.count));
    let ipv6_prefix = t
        .integer("ipv6_prefix", 1, 128)?
        .map_or(defaults::IPV6_PREFIX, |n| n as u8);
    let exempt = cidr_list(&mut t, "exempt")?;
    let trusted_proxies = cidr_list(&mut t, "trusted_proxies")?;
    let table_size = t
        .integer("table_size", 64, 1 << 24)?
        .map_or(defaults::LIMITS_TABLE_SIZE, |n| n as usize);
    let mut unknown = Errors::default();
    t.finish(&mut unknown);
    unknown.into_result(())?;
    Ok(LimitsConfig {
        max_connections_per_ip,
        handshake_rate_per_ip,
        handshake_burst,
        ipv6_prefix,
        exempt,
        trusted_proxies,
        table_size,
    })
}

fn cidr_list(t: &mut Fields<'_>, name: &str) -> Result<CidrSet, ConfigError> {
    let list = t.string_list(name)?.unwrap_or_default();
    CidrSet::parse(&list).map_err(|(i, e)| t.err(&format!("{name}[{i}]"), e.to_string()))
}

/// The keys of an `exec` route (the route's other keys are taken
/// already); `None` when one is wrong (every error is kept).
fn parse_exec(t: &mut Fields<'_>, errs: &mut Errors) -> Option<ExecConfig> {
    let command = errs.required(t.string_list("command"), || {
        t.err(
            "command",
            "missing: an exec route needs command = [\"/path/to/program\", \"arg\", ...]",
        )
    });
    let command = command.and_then(|command| {
        let problem = match command.first() {
            None => Some(t.err("command", "is empty: name the program to run")),
            Some(p) if p.is_empty() => {
                Some(t.err("command[0]", "is empty: name the program to run"))
            }
            Some(_) if command.iter().any(|a| a.contains('\0')) => {
                Some(t.err("command", "contains a NUL byte"))
            }
            Some(_) => None,
        };
        match problem {
            Some(e) => {
                errs.push(e);
                None
            }
            None => Some(command),
        }
    });
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let working_dir = errs.opt(t.string("working_dir")).map(|d| base.join(d));
    let env = parse_exec_env(t, errs);
    let pass_env = errs.opt(t.string_list("pass_env")).unwrap_or_default();
    let mode = match errs.opt(t.string("mode")).as_deref() {
        None | Some("lines") => Some(ExecMode::Lines),
        Some("binary") => Some(ExecMode::Binary),
        Some(other) => {
            errs.push(t.err(
                "mode",
                format!("\"{other}\" is not a mode: use \"lines\" or \"binary\""),
            ));
            None
        }
    };
    let max_processes = errs
        .opt(t.integer("max_processes", 1, 1_000_000))
        .map(|n| n as usize);
    let kill_grace = errs
        .opt(t.duration("kill_grace"))
        .unwrap_or(Duration::from_secs(defaults::KILL_GRACE_SECS));
    Some(ExecConfig {
        command: command?,
        working_dir,
        env: env?,
        pass_env,
        mode: mode?,
        max_processes,
        kill_grace,
    })
}

/// An exec route's `env` table: names and values as the program gets
/// them; `None` when one is wrong (every error is kept).
fn parse_exec_env(t: &mut Fields<'_>, errs: &mut Errors) -> Option<Vec<(String, String)>> {
    let Some(v) = t.take("env") else {
        return Some(Vec::new());
    };
    let mut table = errs.keep(t.as_table("env", v))?;
    let mut env = Vec::new();
    let mut good = true;
    for (name, value) in std::mem::take(&mut table.table) {
        let good_name = !name.is_empty() && !name.contains('=') && !name.contains('\0');
        match value {
            Value::String(s) if good_name && !s.contains('\0') => env.push((name, s)),
            Value::String(_) => {
                good = false;
                errs.push(table.err(
                    &name,
                    "a variable name may not be empty or contain '=', and neither name nor value a NUL byte",
                ));
            }
            other => {
                good = false;
                errs.push(table.err(&name, format!("expected a string, found {}", kind(&other))));
            }
        }
    }
    good.then_some(env)
}

/// `compression = "off" | "deflate"` in `[server]` or a route.
fn parse_compression_mode(t: &mut Fields<'_>) -> Result<Option<Compression>, ConfigError> {
    match t.string("compression")?.as_deref() {
        None => Ok(None),
        Some("off") => Ok(Some(Compression::Off)),
        Some("deflate") => Ok(Some(Compression::Deflate)),
        Some(other) => Err(t.err(
            "compression",
            format!("\"{other}\" is not a compression: use \"off\" or \"deflate\""),
        )),
    }
}

/// The `[compression]` table (permessage-deflate settings), read in the
/// order docs/configuration.md lists the keys; a default stands in for a
/// wrong value (its error is kept).
fn parse_compression(mut t: Fields<'_>, errs: &mut Errors) -> deflate::Settings {
    let d = deflate::Settings::default();
    let flag = |t: &mut Fields<'_>, errs: &mut Errors, name: &str, default: bool| {
        errs.opt(t.boolean(name)).unwrap_or(default)
    };
    let server_context_takeover = flag(
        &mut t,
        errs,
        "server_context_takeover",
        d.server_context_takeover,
    );
    let client_context_takeover = flag(
        &mut t,
        errs,
        "client_context_takeover",
        d.client_context_takeover,
    );
    let small =
        |t: &mut Fields<'_>, errs: &mut Errors, name: &str, range: (i64, i64), default: u8| {
            errs.opt(t.integer(name, range.0, range.1))
                .map_or(default, |n| n as u8)
        };
    let settings = deflate::Settings {
        server_context_takeover,
        client_context_takeover,
        server_max_window_bits: small(
            &mut t,
            errs,
            "server_max_window_bits",
            (9, 15),
            d.server_max_window_bits,
        ),
        client_max_window_bits: small(
            &mut t,
            errs,
            "client_max_window_bits",
            (9, 15),
            d.client_max_window_bits,
        ),
        memory_level: small(&mut t, errs, "memory_level", (1, 9), d.memory_level),
        level: small(&mut t, errs, "level", (1, 9), d.level),
        threshold: errs.opt(t.size("threshold", 0)).unwrap_or(d.threshold),
    };
    t.finish(errs);
    settings
}

/// Parses "500ms", "30s", "5m", "1h", "2d" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// Parses "65536", "64KiB", "64k", "16MiB", "16M", "1GiB".
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new("t.toml"))
    }

    #[test]
    fn durations_accept_numbers_and_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 apples"), None);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("[[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, None);
        assert_eq!(c.routes.len(), 1);
        assert!(c.routes[0].echo_self);
        assert!(c.log.access_log);
    }

    #[test]
    fn access_log_is_a_switch() {
        let routes = "[[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n";
        let c = parse(&format!("[log]\naccess_log = false\n{routes}")).unwrap();
        assert!(!c.log.access_log);
        let e = parse(&format!("[log]\naccess_log = \"yes\"\n{routes}")).unwrap_err();
        assert_eq!(e.key, "log.access_log");
    }

    #[test]
    fn unknown_keys_are_named_with_their_table() {
        let e = parse("[server]\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "server.lisen");
        let e = parse("[bogus]\n").unwrap_err();
        assert_eq!(e.key, "bogus");
        let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\ncolour=1\n").unwrap_err();
        assert_eq!(e.key, "routes[0].colour");
    }

    #[test]
    fn wrong_types_and_ranges_are_named() {
        let e = parse("[server]\nworkers = \"many\"\n").unwrap_err();
        assert_eq!(e.key, "server.workers");
        let e = parse("[server]\nworkers = 0\n").unwrap_err();
        assert!(e.reason.contains("out of range"), "{e}");
        let e = parse("[server]\nhandshake_timeout = \"soon\"\n").unwrap_err();
        assert_eq!(e.key, "server.handshake_timeout");
        let e = parse("[server]\ndrain_timeout = 9223372036854775807\n").unwrap_err();
        assert_eq!(e.key, "server.drain_timeout");
        let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.key, "server.listen");
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        let e = parse(
            "[server]\nworkers = 0\nidle_timeout = \"x\"\nwrkers = 2\n[log]\nlevel = \"loud\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.all().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.workers",
                "server.idle_timeout",
                "server.wrkers",
                "log.level"
            ]
        );
        let text = e.to_string();
        assert!(
            text.starts_with("t.toml: 4 errors:\n  key `server.workers`"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn unknown_keys_get_the_closest_known_key() {
        let e = parse("[server]\nworker = 2\n").unwrap_err();
        assert_eq!(e.reason, "unknown key: did you mean `workers`?");
        let e = parse("[servr]\n").unwrap_err();
        assert!(e.reason.contains("`server`"), "{e}");
        let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nechoself=false\n").unwrap_err();
        assert!(e.reason.contains("`echo_self`"), "{e}");
        // Nothing close: no guess.
        let e = parse("[server]\ncolour = 2\n").unwrap_err();
        assert!(!e.reason.contains("did you mean"), "{e}");
    }

    #[test]
    fn syntax_errors_keep_the_snippet_and_marker() {
        let e = parse("[server]\nworkers = = 4\n").unwrap_err();
        let lines: Vec<&str> = e.reason.lines().collect();
        let code = lines
            .iter()
            .position(|l| l.contains("workers = = 4"))
            .unwrap();
        let marker = lines[code + 1];
        let column = marker.find('^').expect("a ^ marker under the line");
        assert_eq!(&lines[code][column..column + 1], "=", "{}", e.reason);
        assert_eq!(lines[code][..column].matches('=').count(), 1);
    }

    #[test]
    fn join_flattens_and_keeps_order() {
        let f = Path::new("f.toml");
        let nested =
            ConfigError::join([ConfigError::new(f, "a", "1"), ConfigError::new(f, "b", "2")]);
        let all =
            ConfigError::join(nested.into_iter().chain([ConfigError::new(f, "c", "3")])).unwrap();
        let keys: Vec<&str> = all.all().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert!(ConfigError::join([]).is_none());
    }

    #[test]
    fn workers_auto_is_cpu_count() {
        let c = parse("[server]\nworkers = \"auto\"\n").unwrap();
        assert_eq!(c.server.workers, cpu_count());
    }

    #[test]
    fn status_and_cluster_tables_are_optional_and_checked() {
        let c = parse("").unwrap();
        assert!(c.status.is_none() && c.cluster.is_none());
        let c =
            parse("[status]\n[cluster]\nredis_url = \"redis://:pw@127.0.0.1:6380/0\"\n").unwrap();
        assert_eq!(c.status.unwrap().listen, "127.0.0.1:9100".parse().unwrap());
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.channel_prefix, "wssd");
        assert!(cluster
            .instance_id()
            .ends_with(&format!("-{}", std::process::id())));
        let e = parse("[cluster]\nredis_url = \"http://x\"\n").unwrap_err();
        assert_eq!(e.key, "cluster.redis_url");
        let e = parse("[cluster]\n").unwrap_err();
        assert_eq!(e.key, "cluster.redis_url");
        let e = parse("[status]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.key, "status.listen");
        let e = parse("[status]\ncolour = 1\n").unwrap_err();
        assert_eq!(e.key, "status.colour");
    }

    #[test]
    fn route_subprotocols_parse_and_are_checked() {
        let c = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocols=[\"chat.v2\",\"chat.v1\"]\nsubprotocol_required=true\n").unwrap();
        assert_eq!(c.routes[0].subprotocols, ["chat.v2", "chat.v1"]);
        assert!(c.routes[0].subprotocol_required);
        let c = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\n").unwrap();
        assert!(c.routes[0].subprotocols.is_empty() && !c.routes[0].subprotocol_required);
        let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocols=[\"a b\"]\n")
            .unwrap_err();
        assert_eq!(e.key, "routes[0].subprotocols[0]");
        let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocol_required=true\n")
            .unwrap_err();
        assert_eq!(e.key, "routes[0].subprotocol_required");
    }

    #[test]
    fn limits_parse_with_defaults_and_named_errors() {
        let c = parse("").unwrap();
        assert_eq!(c.limits.max_connections_per_ip, None);
        assert_eq!(c.limits.ipv6_prefix, 64);
        assert!(!c.server.proxy_protocol);
        let c = parse(
            "[server]\nproxy_protocol = true\n[limits]\nmax_connections_per_ip = 5\nhandshake_rate_per_ip = \"20/s\"\nipv6_prefix = 56\nexempt = [\"127.0.0.1/32\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert!(c.server.proxy_protocol);
        assert_eq!(c.limits.max_connections_per_ip, Some(5));
        assert_eq!(c.limits.handshake_rate_per_ip.unwrap().count, 20);
        assert_eq!(c.limits.handshake_burst, 20);
        assert_eq!(c.limits.ipv6_prefix, 56);
        assert!(c.limits.exempt.contains("127.0.0.1".parse().unwrap()));
        assert!(c
            .limits
            .trusted_proxies
            .contains("10.9.9.9".parse().unwrap()));
        let e = parse("[limits]\nhandshake_rate_per_ip = \"fast\"\n").unwrap_err();
        assert_eq!(e.key, "limits.handshake_rate_per_ip");
        let e = parse("[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n").unwrap_err();
        assert_eq!(e.key, "limits.trusted_proxies[1]");
        let e = parse("[limits]\nhandshake_burst = 5\n").unwrap_err();
        assert_eq!(e.key, "limits.handshake_burst");
        let e = parse("[limits]\nipv6_prefix = 129\n").unwrap_err();
        assert_eq!(e.key, "limits.ipv6_prefix");
        let e = parse("[limits]\nmax_conns = 1\n").unwrap_err();
        assert_eq!(e.key, "limits.max_conns");
    }

    #[test]
    fn exec_routes_parse_and_name_their_keys() {
        let c = parse(
            "[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nenv={A=\"1\"}\nmode=\"binary\"\nmax_processes=3\nkill_grace=\"200ms\"\n",
        )
        .unwrap();
        let e = c.routes[0].exec.as_ref().unwrap();
        assert_eq!(e.command, vec!["cat".to_string()]);
        assert_eq!(e.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(e.mode, ExecMode::Binary);
        assert_eq!(e.max_processes, Some(3));
        assert_eq!(e.kill_grace, Duration::from_millis(200));
        let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\n").unwrap_err();
        assert_eq!(e.key, "routes[0].command");
        let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[]\n").unwrap_err();
        assert_eq!(e.key, "routes[0].command");
        let e =
            parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nmode=\"words\"\n")
                .unwrap_err();
        assert_eq!(e.key, "routes[0].mode");
        let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nenv={A=1}\n")
            .unwrap_err();
        assert_eq!(e.key, "routes[0].env.A");
        // exec keys on another handler are unknown keys.
        let e =
            parse("[[routes]]\npath=\"/x\"\nhandler=\"echo\"\ncommand=[\"cat\"]\n").unwrap_err();
        assert_eq!(e.key, "routes[0].command");
    }

    #[test]
    fn compression_is_off_unless_turned_on_and_routes_override() {
        let route = "[[routes]]\npath = \"/a\"\nhandler = \"echo\"\n";
        let c = parse(route).unwrap();
        assert_eq!(c.server.compression, Compression::Off);
        assert_eq!(c.routes[0].compression(&c.server), Compression::Off);
        assert_eq!(c.compression, deflate::Settings::default());
        let c = parse(&format!(
            "[server]\ncompression = \"deflate\"\n{route}[[routes]]\npath = \"/b\"\nhandler = \"echo\"\ncompression = \"off\"\n"
        ))
        .unwrap();
        assert_eq!(c.routes[0].compression(&c.server), Compression::Deflate);
        assert_eq!(c.routes[1].compression(&c.server), Compression::Off);
        let c = parse(&format!("{route}compression = \"deflate\"\n")).unwrap();
        assert_eq!(c.routes[0].compression(&c.server), Compression::Deflate);
    }

    #[test]
    fn the_compression_table_is_read_and_checked() {
        let c = parse(
            "[compression]\nserver_context_takeover = true\nclient_context_takeover = true\nserver_max_window_bits = 10\nclient_max_window_bits = 11\nmemory_level = 4\nlevel = 6\nthreshold = \"1KiB\"\n",
        )
        .unwrap();
        assert_eq!(
            c.compression,
            deflate::Settings {
                server_context_takeover: true,
                client_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 11,
                memory_level: 4,
                level: 6,
                threshold: 1024,
            }
        );
        for (text, key, why) in [
            (
                "[server]\ncompression = \"gzip\"\n",
                "server.compression",
                "\"off\" or \"deflate\"",
            ),
            (
                "[server]\ncompression = true\n",
                "server.compression",
                "expected a string",
            ),
            (
                "[[routes]]\npath=\"/a\"\nhandler=\"echo\"\ncompression=\"on\"\n",
                "routes[0].compression",
                "\"off\" or \"deflate\"",
            ),
            (
                "[compression]\nserver_max_window_bits = 8\n",
                "compression.server_max_window_bits",
                "expected 9 to 15",
            ),
            (
                "[compression]\nclient_max_window_bits = 16\n",
                "compression.client_max_window_bits",
                "expected 9 to 15",
            ),
            (
                "[compression]\nmemory_level = 0\n",
                "compression.memory_level",
                "expected 1 to 9",
            ),
            (
                "[compression]\nlevel = 10\n",
                "compression.level",
                "expected 1 to 9",
            ),
            (
                "[compression]\nthreshold = \"lots\"\n",
                "compression.threshold",
                "is not a size",
            ),
            (
                "[compression]\nserver_context_takeover = \"yes\"\n",
                "compression.server_context_takeover",
                "expected true or false",
            ),
            (
                "[compression]\nwindow = 15\n",
                "compression.window",
                "unknown key",
            ),
            ("compression = 1\n", "compression", "expected a table"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn ipv6_listen_parses() {
        let c = parse("[server]\nlisten = \"[::1]:0\"\n").unwrap();
        assert!(c.server.listen.is_ipv6());
    }
}
