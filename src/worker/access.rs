//! The access log: one `info` line per handshake, accepted (101) or
//! refused (4xx, 5xx), as nginx's access log has one per request. The
//! line names the client, the request line, the status, the reason and,
//! for an accepted one, the connection id:
//!
//! ```text
//! 127.0.0.1:45264 "GET /chat/lobby" 101 conn=4242-17 "open"
//! 127.0.0.2:51012 "GET /chat/lobby" 429 conn=- "this address already has 5 connections open"
//! ```
//!
//! The same fields go with the record as structured key-values (`peer`,
//! `method`, `path`, `status`, `reason`, `conn`), which
//! `[log] format = "json"` writes as keys of the line's object
//! (`crate::logging`). The records have their own target,
//! [`TARGET`], so that a filter can keep or drop them alone
//! (`level = "warn,wssd::access=info"`); `[log] access_log = false`
//! turns them off.
//!
//! The query string is left out: it may carry a token (docs/handlers.md).

use std::net::SocketAddr;

use crate::handler::ConnId;

/// The log target of access lines.
pub(crate) const TARGET: &str = "wssd::access";

/// The longest method and path written (longer ones are cut, marked
/// with `...`): a hostile request line must not make huge log lines.
const MAX_FIELD: usize = 256;

/// One handshake as the access log tells it.
pub(super) struct Entry<'a> {
    /// The client: the peer, or the address the PROXY header or a
    /// trusted proxy's `X-Forwarded-For` named.
    pub peer: SocketAddr,
    /// The request method (`-` when the request line could not be read).
    pub method: &'a str,
    /// The path, without the query (`-` when unknown).
    pub path: &'a str,
    /// 101, or the status of the refusal.
    pub status: u16,
    /// Why it was refused, or `open` (with the subprotocol, if any).
    pub reason: &'a str,
    /// The connection's id, for an accepted handshake.
    pub conn: Option<ConnId>,
}

/// Writes `entry` as one `info` line of [`TARGET`].
pub(super) fn log(entry: &Entry<'_>) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let peer = client(entry.peer);
    let method = cut(entry.method);
    let path = cut(entry.path);
    let conn = entry.conn.map(|c| c.to_string());
    let request = format!("{method} {path}");
    log::info!(
        target: TARGET,
        peer = peer.as_str(),
        method = method.as_str(),
        path = path.as_str(),
        status = entry.status,
        reason = entry.reason,
        conn = conn.as_deref();
        "{peer} {request:?} {} conn={} {:?}",
        entry.status,
        conn.as_deref().unwrap_or("-"),
        entry.reason,
    );
}

/// `IP:PORT`, or the IP alone when the port is unknown (0: an address
/// from `X-Forwarded-For`).
fn client(peer: SocketAddr) -> String {
    if peer.port() == 0 {
        peer.ip().to_string()
    } else {
        peer.to_string()
    }
}

/// `s` cut to [`MAX_FIELD`] characters.
fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The method and path of a request head that could not be parsed
/// (a refusal before routing: malformed, not GET, too large), read
/// leniently from its first line; `-` for what is not there.
pub(super) fn request_line(head: &[u8]) -> (String, String) {
    let end = head
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(head.len())
        .min(2 * MAX_FIELD + 16);
    let line = String::from_utf8_lossy(&head[..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let method = parts.next().unwrap_or("-");
    let target = parts.next().unwrap_or("-");
    let path = target.split('?').next().unwrap_or("-");
    (cut(method), cut(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_of_a_bad_head() {
        assert_eq!(
            request_line(b"POST /echo?token=secret HTTP/1.1\r\nHost: x\r\n"),
            ("POST".to_string(), "/echo".to_string())
        );
        assert_eq!(
            request_line(b"\x16\x03\x01garbage"),
            ("\u{16}\u{3}\u{1}garbage".to_string(), "-".to_string())
        );
        assert_eq!(request_line(b""), ("-".to_string(), "-".to_string()));
        let (_, path) = request_line(format!("GET /{} HTTP/1.1", "a".repeat(5000)).as_bytes());
        assert!(path.ends_with("...") && path.len() < 300, "{path}");
    }

    #[test]
    fn a_client_without_a_port_is_its_ip() {
        assert_eq!(client("203.0.113.7:0".parse().unwrap()), "203.0.113.7");
        assert_eq!(client("[::1]:8080".parse().unwrap()), "[::1]:8080");
    }
}
