//! `compression` on `[server]` and routes, and the `[compression]`
//! table (permessage-deflate settings).

use super::fields::{Errors, Fields};
use super::ConfigError;
use crate::deflate;

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

/// `compression = "off" | "deflate"` in `[server]` or a route.
pub(super) fn parse_compression_mode(
    t: &mut Fields<'_>,
) -> Result<Option<Compression>, ConfigError> {
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
pub(super) fn parse_compression(mut t: Fields<'_>, errs: &mut Errors) -> deflate::Settings {
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
