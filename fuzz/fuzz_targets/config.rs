//! Fuzz target: `Config::from_str`, the configuration file (and the
//! duration and size syntaxes it uses). A bad file must be refused with
//! a message, never crash the master at startup or on reload.
//!
//! `server.listen` values that are not literal socket addresses would be
//! resolved through the system resolver (DNS); such inputs are skipped so
//! that the fuzzer stays fast and off the network.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wssd::config::{parse_duration, parse_size, Config};
use wssd::internals::route::Template;

/// Whether parsing `text` could reach the resolver.
fn resolves_names(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    match table
        .get("server")
        .and_then(|s| s.as_table())
        .and_then(|s| s.get("listen"))
    {
        Some(toml::Value::String(s)) => s.parse::<std::net::SocketAddr>().is_err(),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(text);
    let _ = parse_size(text);
    if resolves_names(text) {
        return;
    }
    let Ok(config) = Config::from_str(text, Path::new("fuzz.toml")) else {
        return;
    };
    let s = &config.server;
    assert!(s.workers >= 1 && s.max_connections_per_worker >= 1);
    assert!(s.max_request_head >= 1024 && s.max_message_size >= 1);
    assert!(!s.handshake_timeout.is_zero());
    for route in &config.routes {
        let _ = Template::parse(&route.path);
    }
});
