//! The `[cluster]` table.

use super::fields::{Errors, Fields};
use super::{defaults, ConfigError};

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

pub(super) fn parse_cluster(mut t: Fields<'_>, errs: &mut Errors) -> Option<ClusterConfig> {
    let cluster = errs.keep(cluster_fields(&mut t));
    t.finish(errs);
    cluster
}

pub(super) fn cluster_fields(t: &mut Fields<'_>) -> Result<ClusterConfig, ConfigError> {
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
