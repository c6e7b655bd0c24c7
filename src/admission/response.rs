//! The bytes of the handshake's answer: the `101 Switching Protocols`
//! and an error response, with the handler's extra headers (those the
//! worker writes itself dropped) and a bounded body.

use crate::handshake;
use crate::http_token::is_token;

/// Longest reject body sent, in bytes; longer bodies are cut (at a
/// character boundary). A reject is for a person reading a log or a
/// browser console, not a transport for documents.
pub const MAX_REJECT_BODY: usize = 1024;

/// Response headers the worker writes itself; a handler's value for one of
/// these is dropped (with a warning in the log) rather than sent twice.
const RESERVED_HEADERS: [&str; 7] = [
    "connection",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// The `101 Switching Protocols` response for `key`, with the selected
/// subprotocol, the accepted extensions (`Sec-WebSocket-Extensions`, e.g.
/// permessage-deflate's answer) and the handler's extra headers.
pub fn render_accept(
    key: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut out = handshake::accept_response_with(key, extensions);
    out.truncate(out.len() - 2); // reopen the head: drop the final CRLF
    if let Some(p) = subprotocol {
        push_header(&mut out, "Sec-WebSocket-Protocol", p);
    }
    push_extra(&mut out, extra);
    out.extend_from_slice(b"\r\n");
    out
}

/// An error response: status line, the handler's headers, a plain-text
/// body of at most [`MAX_REJECT_BODY`] bytes, `Content-Length` and
/// `Connection: close`. A status outside 400–599 is sent as 500.
pub fn render_reject(status: u16, extra: &[(String, String)], body: &str) -> Vec<u8> {
    let status = if (400..=599).contains(&status) {
        status
    } else {
        500
    };
    let body = cut(body, MAX_REJECT_BODY);
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
    push_extra(&mut out, extra);
    if !body.is_empty() {
        push_header(&mut out, "Content-Type", "text/plain; charset=utf-8");
    }
    push_header(&mut out, "Content-Length", &body.len().to_string());
    push_header(&mut out, "Connection", "close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Appends the handler's headers, skipping reserved and malformed ones.
fn push_extra(out: &mut Vec<u8>, extra: &[(String, String)]) {
    for (name, value) in extra {
        if RESERVED_HEADERS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
        {
            log::warn!("handshake response header {name:?} is set by wssd itself; dropped");
        } else if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            log::warn!("handshake response header {name:?} is malformed (name must be a token, value one line); dropped");
        } else {
            push_header(out, name, value.trim());
        }
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The reason phrase of the statuses a handshake can end with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}
