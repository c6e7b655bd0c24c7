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
    /// The `[compression]` table: how permessage-deflate is negotiated
    /// and done where a route turns it on.
    pub compression: deflate::Settings,
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
    /// Default of every route's `compression`.
    pub compression: Compression,
}

/// Settings of the `[log]` table.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `env_logger` filter such as `info` or `wssd=debug`.
    pub level: String,
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
    /// Overrides `server.compression` on this route.
    pub compression: Option<Compression>,
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
}

impl ConfigError {
    /// Builds an error about `key` in `file`.
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: key `{}`: {}",
                self.file.display(),
                self.key,
                self.reason
            )
        }
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

    /// Parses and validates `text`, naming `source` in errors.
    pub fn from_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new(source, "", format!("not valid TOML: {}", one_line(&e)))
        })?;
        let mut root = Fields::new(source, String::new(), table);
        let server = parse_server(root.table("server")?)?;
        let log = parse_log(root.table("log")?)?;
        let tls = match root.take("tls") {
            None => None,
            Some(v) => Some(parse_tls(root.as_table("tls", v)?)?),
        };
        let routes = parse_routes(&mut root)?;
        let compression = parse_compression(root.table("compression")?)?;
        root.finish()?;
        Ok(Config {
            source: source.to_path_buf(),
            server,
            log,
            tls,
            routes,
            compression,
        })
    }
}

/// A TOML table being consumed key by key; whatever is left at the end is
/// an unknown key.
struct Fields<'a> {
    file: &'a Path,
    prefix: String,
    table: Table,
}

impl<'a> Fields<'a> {
    fn new(file: &'a Path, prefix: String, table: Table) -> Self {
        Fields {
            file,
            prefix,
            table,
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
        self.table.remove(name)
    }

    fn as_table(&self, name: &str, v: Value) -> Result<Fields<'a>, ConfigError> {
        match v {
            Value::Table(t) => Ok(Fields::new(self.file, self.key(name), t)),
            other => Err(self.err(name, format!("expected a table, found {}", kind(&other)))),
        }
    }

    /// A sub-table that may be absent (then it is empty).
    fn table(&mut self, name: &str) -> Result<Fields<'a>, ConfigError> {
        match self.take(name) {
            None => Ok(Fields::new(self.file, self.key(name), Table::new())),
            Some(v) => self.as_table(name, v),
        }
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

    /// Fails on the first key nobody consumed.
    fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.err(
                k,
                "unknown key (check its spelling and docs/configuration.md)",
            )),
        }
    }
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

fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_server(mut t: Fields<'_>) -> Result<ServerConfig, ConfigError> {
    let listen_text = t
        .string("listen")?
        .unwrap_or_else(|| defaults::LISTEN.to_string());
    let listen = resolve_listen(&listen_text).map_err(|reason| t.err("listen", reason))?;
    let workers = parse_workers(&mut t)?;
    let max_connections_per_worker = t
        .integer("max_connections_per_worker", 1, 10_000_000)?
        .map_or(defaults::MAX_CONNECTIONS_PER_WORKER, |n| n as usize);
    let handshake_timeout = t
        .duration("handshake_timeout")?
        .unwrap_or(Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS));
    if handshake_timeout.is_zero() {
        return Err(t.err("handshake_timeout", "must be more than 0"));
    }
    let idle_timeout = t.duration("idle_timeout")?.filter(|d| !d.is_zero());
    let ping_interval = t.duration("ping_interval")?.filter(|d| !d.is_zero());
    let drain_timeout = t
        .duration("drain_timeout")?
        .unwrap_or(Duration::from_secs(defaults::DRAIN_TIMEOUT_SECS));
    let pid_file = t.string("pid_file")?.map(PathBuf::from);
    let max_message_size = t
        .size("max_message_size", 1)?
        .unwrap_or(defaults::MAX_MESSAGE_SIZE);
    let max_frame_size = t
        .size("max_frame_size", 1)?
        .unwrap_or(defaults::MAX_FRAME_SIZE);
    let max_request_head = t
        .size("max_request_head", 1024)?
        .unwrap_or(defaults::MAX_REQUEST_HEAD);
    let max_send_buffer = t
        .size("max_send_buffer", 1024)?
        .unwrap_or(defaults::MAX_SEND_BUFFER);
    let allowed_origins = t.string_list("allowed_origins")?.unwrap_or_default();
    for (i, o) in allowed_origins.iter().enumerate() {
        if !o.contains("://") {
            return Err(t.err(
                &format!("allowed_origins[{i}]"),
                format!("\"{o}\" is not an origin: write scheme://host[:port], e.g. \"https://example.com\""),
            ));
        }
    }
    let user = t.string("user")?;
    let group = t.string("group")?;
    let compression = parse_compression_mode(&mut t)?.unwrap_or_default();
    t.finish()?;
    Ok(ServerConfig {
        listen,
        listen_text,
        workers,
        max_connections_per_worker,
        handshake_timeout,
        idle_timeout,
        ping_interval,
        drain_timeout,
        pid_file,
        max_message_size,
        max_frame_size,
        max_request_head,
        max_send_buffer,
        allowed_origins,
        user,
        group,
        compression,
    })
}

fn parse_workers(t: &mut Fields<'_>) -> Result<usize, ConfigError> {
    match t.take("workers") {
        None => Ok(cpu_count()),
        Some(Value::String(s)) if s == "auto" => Ok(cpu_count()),
        Some(Value::Integer(n)) if (1..=1024).contains(&n) => Ok(n as usize),
        Some(Value::Integer(n)) => Err(t.err(
            "workers",
            format!("{n} is out of range: expected 1 to 1024, or \"auto\""),
        )),
        Some(other) => Err(t.err(
            "workers",
            format!(
                "expected a number of workers or \"auto\", found {}",
                describe_value(&other)
            ),
        )),
    }
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

fn parse_log(mut t: Fields<'_>) -> Result<LogConfig, ConfigError> {
    let level = t.string("level")?.unwrap_or_else(|| "info".to_string());
    let known = ["off", "error", "warn", "info", "debug", "trace"];
    let base = level.split(',').next().unwrap_or("").trim();
    if !level.contains('=') && !known.contains(&base) {
        return Err(t.err(
            "level",
            format!(
                "\"{level}\" is not a log level: use one of {}",
                known.join(", ")
            ),
        ));
    }
    t.finish()?;
    Ok(LogConfig { level })
}

fn parse_tls(mut t: Fields<'_>) -> Result<TlsConfig, ConfigError> {
    let cert = t
        .string("cert")?
        .ok_or_else(|| t.err("cert", "missing: name the PEM certificate chain file"))?;
    let key = t
        .string("key")?
        .ok_or_else(|| t.err("key", "missing: name the PEM private key file"))?;
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    t.finish()?;
    Ok(TlsConfig {
        cert: base.join(cert),
        key: base.join(key),
    })
}

fn parse_routes(root: &mut Fields<'_>) -> Result<Vec<RouteConfig>, ConfigError> {
    let items = match root.take("routes") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(root.err(
                "routes",
                format!("expected [[routes]] tables, found {}", kind(&other)),
            ))
        }
    };
    let mut routes = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name = format!("routes[{i}]");
        let mut t = root.as_table(&name, item)?;
        let path = t.string("path")?.ok_or_else(|| {
            t.err(
                "path",
                "missing: every route needs a path such as \"/echo\"",
            )
        })?;
        let handler = t
            .string("handler")?
            .ok_or_else(|| t.err("handler", "missing: name a handler such as \"echo\""))?;
        let echo_self = t.boolean("echo_self")?.unwrap_or(true);
        let max_message_size = t.size("max_message_size", 1)?;
        let compression = parse_compression_mode(&mut t)?;
        t.finish()?;
        routes.push(RouteConfig {
            path,
            handler,
            echo_self,
            max_message_size,
            compression,
        });
    }
    Ok(routes)
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

/// The `[compression]` table (permessage-deflate settings).
fn parse_compression(mut t: Fields<'_>) -> Result<deflate::Settings, ConfigError> {
    let d = deflate::Settings::default();
    let bits = |t: &mut Fields<'_>, name: &str, default: u8| {
        t.integer(name, 9, 15)
            .map(|v| v.map_or(default, |n| n as u8))
    };
    let settings = deflate::Settings {
        server_context_takeover: t
            .boolean("server_context_takeover")?
            .unwrap_or(d.server_context_takeover),
        client_context_takeover: t
            .boolean("client_context_takeover")?
            .unwrap_or(d.client_context_takeover),
        server_max_window_bits: bits(&mut t, "server_max_window_bits", d.server_max_window_bits)?,
        client_max_window_bits: bits(&mut t, "client_max_window_bits", d.client_max_window_bits)?,
        memory_level: t
            .integer("memory_level", 1, 9)?
            .map_or(d.memory_level, |n| n as u8),
        level: t.integer("level", 1, 9)?.map_or(d.level, |n| n as u8),
        threshold: t.size("threshold", 0)?.unwrap_or(d.threshold),
    };
    t.finish()?;
    Ok(settings)
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
    fn workers_auto_is_cpu_count() {
        let c = parse("[server]\nworkers = \"auto\"\n").unwrap();
        assert_eq!(c.server.workers, cpu_count());
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
