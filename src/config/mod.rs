//! The daemon's configuration: the TOML file, its validation, and the
//! typed values the master and the workers read.
//!
//! Parsing is done by hand over a `toml::Table` rather than with
//! `#[derive(Deserialize)]` so that every error names the file, the full
//! key (`server.workers`, `routes[2].path`) and the reason, which is what an
//! operator needs at 3 a.m. Unknown keys are errors, as in nginx.

mod cluster;
mod compression;
mod error;
mod exec;
mod fields;
mod limits;
mod log;
mod routes;
mod server;
mod status;
#[cfg(test)]
mod tests;
mod tls;
mod values;

use std::path::{Path, PathBuf};

use toml::Table;

use crate::deflate;
pub use crate::limits::LimitsConfig;

use cluster::parse_cluster;
pub use cluster::ClusterConfig;
use compression::parse_compression;
pub use compression::Compression;
pub use error::ConfigError;
pub use exec::{ExecConfig, ExecMode};
use fields::{Errors, Fields};
use limits::parse_limits;
use log::parse_log;
pub use log::{LogConfig, LogFormat};
use routes::parse_routes;
pub use routes::RouteConfig;
use server::parse_server;
pub use server::{cpu_count, ServerConfig};
use status::parse_status;
pub use status::StatusConfig;
use tls::parse_tls;
pub use tls::TlsConfig;
pub use values::{parse_duration, parse_size};

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
