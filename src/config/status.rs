//! The `[status]` table.

use std::net::SocketAddr;

use super::fields::{Errors, Fields};
use super::server::resolve_listen;
use super::{defaults, ConfigError};

/// Settings of the `[status]` table: the master's HTTP listener for
/// `/status`, `/metrics` and `POST /publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// Address of the status listener (loopback by default).
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer TOKEN` for `POST`, if set.
    pub token: Option<String>,
}

pub(super) fn parse_status(mut t: Fields<'_>, errs: &mut Errors) -> Option<StatusConfig> {
    let status = errs.keep(status_fields(&mut t));
    t.finish(errs);
    status
}

pub(super) fn status_fields(t: &mut Fields<'_>) -> Result<StatusConfig, ConfigError> {
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
