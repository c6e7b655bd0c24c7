//! The `[[routes]]` tables.

use toml::Value;

use super::compression::{parse_compression_mode, Compression};
use super::exec::{parse_exec, ExecConfig};
use super::fields::{kind, Errors, Fields};
use super::server::ServerConfig;
use super::ConfigError;
use crate::http_token::is_token;

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

impl RouteConfig {
    /// This route's compression: its own, else the server's.
    pub fn compression(&self, server: &ServerConfig) -> Compression {
        self.compression.unwrap_or(server.compression)
    }
}

pub(super) fn parse_routes(root: &mut Fields<'_>, errs: &mut Errors) -> Vec<RouteConfig> {
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
pub(super) fn parse_subprotocols(t: &mut Fields<'_>) -> Result<Vec<String>, ConfigError> {
    let list = t.string_list("subprotocols")?.unwrap_or_default();
    for (i, p) in list.iter().enumerate() {
        if !is_token(p) {
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
