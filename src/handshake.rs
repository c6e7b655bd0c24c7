//! The server side of the HTTP/1.1 opening handshake (RFC 6455 §4.2),
//! as pure functions over bytes: parse a request head, decide whether it
//! is a valid upgrade, and render the response.
//!
//! Kept apart from sockets so that the worker can feed it bytes as they
//! arrive (a slow client never blocks the worker) and so that it can be
//! fuzzed on its own.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The most headers a request may carry.
const MAX_HEADERS: usize = 64;

/// One request header: its name, and its value trimmed and lossily UTF-8
/// (borrowed from the head unless it had to be repaired).
pub type Header<'a> = (&'a str, Cow<'a, str>);

/// A parsed upgrade request, with what a handler may want to see.
///
/// Borrowed from the bytes it was parsed from: parsing copies nothing
/// but the list of headers (a handshake is on every connection's path).
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// The path, without the query string, as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string without the `?`; empty when there is none.
    pub query: &'a str,
    /// Header names and values in request order.
    pub headers: Vec<Header<'a>>,
}

impl<'a> Request<'a> {
    /// The headers as `(name, value)` pairs, in request order.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        pairs(&self.headers)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of header `name`, in order (a header sent on several
    /// lines, such as `Sec-WebSocket-Extensions`, is one list).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.header_pairs()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// `headers` as `(name, value)` pairs of `&str`.
pub fn pairs<'h>(
    headers: &'h [Header<'_>],
) -> impl ExactSizeIterator<Item = (&'h str, &'h str)> + DoubleEndedIterator + Clone {
    headers.iter().map(|(k, v)| (*k, v.as_ref()))
}

/// Why a request was refused, mapped to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed or not a WebSocket upgrade.
    BadRequest(String),
    /// 403: the Origin is not allowed.
    Forbidden(String),
    /// 404: no route serves the path.
    NotFound(String),
    /// 405: the method is not GET.
    MethodNotAllowed,
    /// 426: wrong `Sec-WebSocket-Version`.
    UpgradeRequired,
    /// 431: the request head is larger than allowed.
    HeadTooLarge(usize),
    /// 503: the route cannot take another connection now (an `exec`
    /// route at `max_processes`).
    Unavailable(String),
}

impl Reject {
    /// The HTTP status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Reject::BadRequest(_) => (400, "Bad Request"),
            Reject::Forbidden(_) => (403, "Forbidden"),
            Reject::NotFound(_) => (404, "Not Found"),
            Reject::MethodNotAllowed => (405, "Method Not Allowed"),
            Reject::UpgradeRequired => (426, "Upgrade Required"),
            Reject::HeadTooLarge(_) => (431, "Request Header Fields Too Large"),
            Reject::Unavailable(_) => (503, "Service Unavailable"),
        }
    }

    /// The full HTTP response, with a one-line plain-text body.
    pub fn response(&self) -> Vec<u8> {
        let (code, phrase) = self.status();
        let body = format!("{self}\n");
        let extra = match self {
            Reject::UpgradeRequired => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            Reject::MethodNotAllowed => "Allow: GET\r\n",
            _ => "",
        };
        format!(
            "HTTP/1.1 {code} {phrase}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::BadRequest(why) => write!(f, "bad request: {why}"),
            Reject::Forbidden(why) => write!(f, "forbidden: {why}"),
            Reject::NotFound(path) => write!(f, "no route serves {path}"),
            Reject::MethodNotAllowed => f.write_str("only GET can open a WebSocket"),
            Reject::UpgradeRequired => {
                f.write_str("unsupported WebSocket version: this server speaks version 13")
            }
            Reject::HeadTooLarge(max) => {
                write!(f, "request head larger than {max} bytes")
            }
            Reject::Unavailable(why) => write!(f, "service unavailable: {why}"),
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, `Ok(Some((request,
/// head_len)))` once it is complete (bytes after `head_len` belong to the
/// WebSocket stream), or the rejection.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<(Request<'_>, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => Reject::HeadTooLarge(max_head),
        other => Reject::BadRequest(format!("malformed HTTP request ({other})")),
    })?;
    let head_len = match status {
        httparse::Status::Partial if buf.len() >= max_head => {
            return Err(Reject::HeadTooLarge(max_head))
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > max_head => {
            return Err(Reject::HeadTooLarge(max_head))
        }
        httparse::Status::Complete(n) => n,
    };
    if req.method != Some("GET") {
        return Err(Reject::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(Reject::BadRequest("HTTP/1.1 or later is required".into()));
    }
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(Reject::BadRequest(format!(
            "request target \"{target}\" is not an absolute path"
        )));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    // The head is checked as UTF-8 once (it is nearly always ASCII): its
    // header values are then slices of that text, with no check each.
    let head = &buf[..head_len];
    let text = std::str::from_utf8(head).ok();
    let headers = req
        .headers
        .iter()
        .map(|h| (h.name, trimmed_value(text, head, h.value)))
        .collect();
    Ok(Some((
        Request {
            path,
            query,
            headers,
        },
        head_len,
    )))
}

/// A header value (a slice of `head`) without surrounding whitespace, as
/// UTF-8: a slice of `text` (the head, when it is all UTF-8), else
/// checked on its own, borrowed when it is valid UTF-8 and with U+FFFD
/// for each invalid sequence when not.
fn trimmed_value<'a>(text: Option<&'a str>, head: &[u8], value: &'a [u8]) -> Cow<'a, str> {
    let checked = match offset_in(head, value).and_then(|at| text?.get(at..at + value.len())) {
        Some(v) => Ok(v),
        None => std::str::from_utf8(value),
    };
    match checked {
        Ok(v) => Cow::Borrowed(trim(v)),
        Err(_) => Cow::Owned(String::from_utf8_lossy(value).trim().to_string()),
    }
}

/// Where `part` starts in `whole`, if it is a slice of it. (Live
/// allocations do not overlap, so a `part` that starts and ends within
/// `whole`'s addresses is a slice of it.)
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = part.as_ptr().addr().checked_sub(whole.as_ptr().addr())?;
    (at.checked_add(part.len())? <= whole.len()).then_some(at)
}

/// `v.trim()`, skipping its walk over characters in the usual case of a
/// value that starts and ends with a visible ASCII character (none of
/// which is whitespace).
fn trim(v: &str) -> &str {
    let visible = |b: Option<&u8>| b.is_none_or(u8::is_ascii_graphic);
    if visible(v.as_bytes().first()) && visible(v.as_bytes().last()) {
        v
    } else {
        v.trim()
    }
}

/// Whether the bytes added to `buf` after `old_len` contain an empty line
/// (`\n\r\n` or `\n\n`), the only way a request head can end.
pub fn may_end_head(buf: &[u8], old_len: usize) -> bool {
    let new = &buf[old_len.saturating_sub(2).min(buf.len())..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
}

/// Checks the upgrade headers of RFC 6455 §4.2.1; returns the
/// `Sec-WebSocket-Key`.
pub fn validate_upgrade<'r>(req: &'r Request<'_>) -> Result<&'r str, Reject> {
    let h = UpgradeHeaders::of(req);
    if h.host.is_none() {
        return Err(Reject::BadRequest("missing Host header".into()));
    }
    if !has_token(h.upgrade, "websocket") {
        return Err(Reject::BadRequest(
            "not a WebSocket upgrade (no \"Upgrade: websocket\" header)".into(),
        ));
    }
    if !has_token(h.connection, "upgrade") {
        return Err(Reject::BadRequest(
            "not a WebSocket upgrade (no \"Connection: Upgrade\" header)".into(),
        ));
    }
    match h.version {
        Some("13") => {}
        Some(_) => return Err(Reject::UpgradeRequired),
        None => {
            return Err(Reject::BadRequest(
                "missing Sec-WebSocket-Version header".into(),
            ))
        }
    }
    let key = h
        .key
        .ok_or_else(|| Reject::BadRequest("missing Sec-WebSocket-Key header".into()))?;
    if !is_valid_key(key) {
        return Err(Reject::BadRequest(
            "Sec-WebSocket-Key is not 16 bytes in base64".into(),
        ));
    }
    Ok(key)
}

/// The first value of each header [`validate_upgrade`] checks, found in
/// one pass over the headers rather than one per header.
#[derive(Default)]
struct UpgradeHeaders<'r> {
    host: Option<&'r str>,
    upgrade: Option<&'r str>,
    connection: Option<&'r str>,
    version: Option<&'r str>,
    key: Option<&'r str>,
}

impl<'r> UpgradeHeaders<'r> {
    fn of(req: &'r Request<'_>) -> UpgradeHeaders<'r> {
        let mut h = UpgradeHeaders::default();
        for (name, value) in req.header_pairs() {
            let slot = if name.eq_ignore_ascii_case("Host") {
                &mut h.host
            } else if name.eq_ignore_ascii_case("Upgrade") {
                &mut h.upgrade
            } else if name.eq_ignore_ascii_case("Connection") {
                &mut h.connection
            } else if name.eq_ignore_ascii_case("Sec-WebSocket-Version") {
                &mut h.version
            } else if name.eq_ignore_ascii_case("Sec-WebSocket-Key") {
                &mut h.key
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        h
    }
}

/// Whether the comma-separated header value contains `token`
/// (case-insensitive). A value that is the token alone (the usual
/// `Upgrade: websocket`, `Connection: Upgrade`) is recognised without
/// splitting it.
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| {
        v.eq_ignore_ascii_case(token) || v.split(',').any(|t| trim(t).eq_ignore_ascii_case(token))
    })
}

/// A key is 16 random bytes in base64: 22 base64 characters and "==".
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Whether `origin` is allowed by the `allowed_origins` patterns: an exact
/// match (case-insensitive), or `scheme://*.domain` matching any subdomain.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|pattern| {
        if pattern.eq_ignore_ascii_case(origin) {
            return true;
        }
        let Some((scheme, host)) = pattern.split_once("://*.") else {
            return false;
        };
        let Some((o_scheme, o_host)) = origin.split_once("://") else {
            return false;
        };
        let suffix = format!(".{}", host.to_ascii_lowercase());
        o_scheme.eq_ignore_ascii_case(scheme)
            && o_host.to_ascii_lowercase().ends_with(&suffix)
            && o_host.len() > suffix.len()
    })
}

/// The `Sec-WebSocket-Accept` value for `key` (RFC 6455 §4.2.2): the
/// base64 of the SHA-1 of the key and the protocol's GUID.
fn accept_key(key: &str) -> [u8; 28] {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID);
    let mut accept = [0u8; 28];
    // 20 bytes of digest are 28 of base64: the buffer always fits.
    let _ = STANDARD.encode_slice(sha1.finalize(), &mut accept);
    accept
}

/// The `101 Switching Protocols` response for `key`.
pub fn accept_response(key: &str) -> Vec<u8> {
    accept_response_with(key, None)
}

/// The `101 Switching Protocols` response for `key`, naming the accepted
/// extensions (e.g. `deflate::Accepted::response`) when there are any.
/// Room is left for a few more headers (see `admission::render_accept`).
pub fn accept_response_with(key: &str, extensions: Option<&str>) -> Vec<u8> {
    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    const EXTENSIONS: &[u8] = b"Sec-WebSocket-Extensions: ";
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(e) = extensions {
        out.extend_from_slice(EXTENSIONS);
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"GET /chat/lobby?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nrest";

    #[test]
    fn parses_a_valid_upgrade() {
        let (req, n) = parse_request(GOOD, 4096).unwrap().unwrap();
        assert_eq!(&GOOD[n..], b"rest");
        assert_eq!(req.path, "/chat/lobby");
        assert_eq!(req.query, "x=1");
        assert_eq!(validate_upgrade(&req).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        let resp = String::from_utf8(accept_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{resp}");
    }

    #[test]
    fn extension_offers_on_several_lines_reach_the_negotiation() {
        let text = String::from_utf8_lossy(GOOD).replace(
            "\r\n\r\nrest",
            "\r\nSec-WebSocket-Extensions: x-foo\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        );
        let (req, _) = parse_request(text.as_bytes(), 4096).unwrap().unwrap();
        let offers: Vec<&str> = req.header_values("Sec-WebSocket-Extensions").collect();
        assert_eq!(
            offers,
            ["x-foo", "permessage-deflate; client_max_window_bits"]
        );
        let accepted =
            crate::deflate::accept_offer(offers, &crate::deflate::Settings::default()).unwrap();
        let resp = String::from_utf8(accept_response_with(
            "dGhlIHNhbXBsZSBub25jZQ==",
            Some(&accepted.response),
        ))
        .unwrap();
        assert!(resp.ends_with("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"), "{resp}");
        assert_eq!(
            accept_response("dGhlIHNhbXBsZSBub25jZQ=="),
            accept_response_with("dGhlIHNhbXBsZSBub25jZQ==", None)
        );
    }

    #[test]
    fn partial_heads_wait_and_large_ones_fail() {
        assert!(parse_request(&GOOD[..30], 4096).unwrap().is_none());
        assert_eq!(
            parse_request(&GOOD[..30], 20).unwrap_err(),
            Reject::HeadTooLarge(20)
        );
    }

    #[test]
    fn head_end_is_found_across_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        // The head arrives one byte at a time: only the last byte ends it.
        for k in 1..=head.len() {
            assert_eq!(may_end_head(&head[..k], k - 1), k == head.len(), "byte {k}");
        }
        assert!(!may_end_head(b"GET / HTTP/1.1\r\n", 3));
    }

    #[test]
    fn garbage_and_plain_http_are_400() {
        assert!(matches!(
            parse_request(b"\x16\x03\x01garbage\r\n\r\n", 4096),
            Err(Reject::BadRequest(_))
        ));
        let (req, _) = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 4096)
            .unwrap()
            .unwrap();
        assert!(matches!(validate_upgrade(&req), Err(Reject::BadRequest(_))));
    }

    #[test]
    fn the_first_of_repeated_upgrade_headers_counts() {
        let text = String::from_utf8_lossy(GOOD).replace(
            "Version: 13\r\n",
            "Version: 13\r\nsec-websocket-version: 8\r\nUPGRADE: h2c\r\n",
        );
        let (req, _) = parse_request(text.as_bytes(), 4096).unwrap().unwrap();
        assert_eq!(validate_upgrade(&req).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        let text = String::from_utf8_lossy(GOOD).replace(
            "Upgrade: WebSocket\r\n",
            "upgrade: h2c\r\nUpgrade: WebSocket\r\n",
        );
        let (req, _) = parse_request(text.as_bytes(), 4096).unwrap().unwrap();
        assert!(matches!(validate_upgrade(&req), Err(Reject::BadRequest(_))));
    }

    #[test]
    fn accept_keys_are_those_tungstenite_derives() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "x"] {
            let ours = accept_key(key);
            let theirs = tungstenite::handshake::derive_accept_key(key.as_bytes());
            assert_eq!(std::str::from_utf8(&ours).unwrap(), theirs);
        }
    }

    #[test]
    fn the_101_is_exactly_this() {
        assert_eq!(
            String::from_utf8(accept_response_with(
                "dGhlIHNhbXBsZSBub25jZQ==",
                Some("x; y")
            ))
            .unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Extensions: x; y\r\n\r\n"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_repaired() {
        let head =
            b"GET / HTTP/1.1\r\nA: \xe2\x80\x83x y\xc2\xa0\r\nB: v\xff\r\nC: \tz \t\r\nD:\r\n\r\n";
        let (req, _) = parse_request(head, 4096).unwrap().unwrap();
        let values: Vec<&str> = req.header_pairs().map(|(_, v)| v).collect();
        assert_eq!(values, ["x y", "v\u{fffd}", "z", ""]);
    }

    #[test]
    fn wrong_version_is_426() {
        let text = String::from_utf8_lossy(GOOD).replace("Version: 13", "Version: 8");
        let (req, _) = parse_request(text.as_bytes(), 4096).unwrap().unwrap();
        assert_eq!(validate_upgrade(&req), Err(Reject::UpgradeRequired));
        assert!(String::from_utf8(Reject::UpgradeRequired.response())
            .unwrap()
            .starts_with("HTTP/1.1 426"));
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let allowed = vec![
            "https://example.com".to_string(),
            "https://*.example.org".to_string(),
        ];
        assert!(origin_allowed("https://example.com", &allowed));
        assert!(origin_allowed("https://a.b.example.org", &allowed));
        assert!(!origin_allowed("https://example.org", &allowed));
        assert!(!origin_allowed("http://a.example.org", &allowed));
        assert!(!origin_allowed("https://evilexample.org", &allowed));
        assert!(!origin_allowed("https://example.com.evil", &allowed));
    }
}
