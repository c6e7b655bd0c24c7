//! Fuzz target: the HTTP upgrade request head, as the worker handles it.
//!
//! Input: byte 0 picks the `max_request_head` limit, byte 1 the sizes of
//! the reads the bytes arrive in; the rest is what the client sends. Like
//! `Worker::step_request`, the harness grows a buffer read by read, parses
//! it after every read, and on a complete head routes the path, checks the
//! upgrade headers and the Origin, and renders the response. It checks the
//! contracts the worker relies on, not just the absence of panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::internals::handshake::{self, Reject, Request};
use wssd::internals::route::{percent_decode, RouteTable, Template};

/// `max_request_head` values: the default, the configuration minimum, and
/// tiny limits that push the size checks.
const LIMITS: [usize; 4] = [16 << 10, 1024, 64, 7];

/// Route templates like those of config/wssd.toml, plus the other shapes.
const ROUTES: [&str; 6] = [
    "/echo",
    "/chat/{room}",
    "/chat/admin",
    "/files/{*rest}",
    "/files/readme",
    "/notifications/{entity}/{context}/{token}",
];

/// `allowed_origins` patterns: exact and wildcard.
const ORIGINS: [&str; 3] = [
    "https://example.com",
    "https://*.example.org",
    "http://localhost:8080",
];

/// What the worker's read loop would see: the head limit, then the
/// sizes of successive reads.
struct Feed<'a> {
    max_head: usize,
    seed: u8,
    bytes: &'a [u8],
}

impl<'a> Feed<'a> {
    fn new(data: &'a [u8]) -> Option<Feed<'a>> {
        let (&limit, rest) = data.split_first()?;
        let (&seed, bytes) = rest.split_first()?;
        Some(Feed {
            max_head: LIMITS[usize::from(limit) % LIMITS.len()],
            seed,
            bytes,
        })
    }

    /// The length of the `i`-th read: 1..=4096 bytes, small ones often.
    fn read_len(&self, i: usize) -> usize {
        let x = (self.seed as usize)
            .wrapping_mul(31)
            .wrapping_add(i.wrapping_mul(17));
        if self.seed & 0x80 != 0 {
            1 + x % 4096
        } else {
            1 + x % 13
        }
    }
}

/// A decoder written from RFC 3986 §2.1 as the reference for
/// `percent_decode`: `%` must be followed by exactly two hex digits.
fn reference_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = (*b.get(i + 1)? as char).to_digit(16)?;
            let lo = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn routes() -> RouteTable<usize> {
    let mut table = RouteTable::default();
    for (i, path) in ROUTES.iter().enumerate() {
        table
            .add(Template::parse(path).expect("fixed template"), i)
            .expect("fixed routes are unambiguous");
    }
    table
}

/// `Worker::decide` without the connection bookkeeping.
fn decide(req: &Request, table: &RouteTable<usize>) -> Result<String, Reject> {
    let (m, params) = table
        .find(req.path)
        .ok_or_else(|| Reject::NotFound(req.path.to_string()))?;
    assert!(m.template.matches(req.path).is_some());
    for (_, value) in &params {
        assert!(!value.is_empty() || m.template.as_str().contains('*'));
    }
    let key = handshake::validate_upgrade(req)?.to_string();
    let allowed: Vec<String> = ORIGINS.iter().map(|s| s.to_string()).collect();
    match req.header("Origin") {
        None => return Err(Reject::Forbidden("an Origin header is required".into())),
        Some(o) if !handshake::origin_allowed(o, &allowed) => {
            return Err(Reject::Forbidden(format!("origin {o} is not allowed")))
        }
        Some(_) => {}
    }
    Ok(key)
}

/// A rejection must render a well-formed HTTP response.
fn check_response(reject: &Reject) {
    let resp = reject.response();
    let text = std::str::from_utf8(&resp).expect("responses are UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("Content-Length");
    assert_eq!(len, body.len());
    assert!(!head.contains('\0'));
}

/// Properties of a complete request head.
fn check_request(req: &Request, head_len: usize, buf: &[u8], max_head: usize) {
    assert!(head_len <= buf.len() && head_len <= max_head);
    assert!(buf[..head_len].ends_with(b"\n"));
    assert!(req.path.starts_with('/') && !req.path.contains('?'));
    // The head alone parses to the same request.
    let (again, n) = handshake::parse_request(&buf[..head_len], max_head)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(n, head_len);
    assert_eq!(again.path, req.path);
    assert_eq!(again.headers, req.headers);
    // Path and query decode as a strict decoder says.
    for s in [req.path, req.query] {
        assert_eq!(percent_decode(s), reference_decode(s), "decoding {s:?}");
    }
    // A path without braces is a literal template that matches itself.
    if !req.path.contains(['{', '}']) {
        let t = Template::parse(req.path).expect("a literal path is a template");
        assert_eq!(t.matches(req.path), Some(Vec::new()));
    }
}

/// Feeds the bytes read by read until the worker would answer (or the
/// input ends), checking each step.
fn run(feed: &Feed<'_>, table: &RouteTable<usize>) {
    let mut buf = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    loop {
        let end = (pos + feed.read_len(i)).min(feed.bytes.len());
        buf.extend_from_slice(&feed.bytes[pos..end]);
        pos = end;
        i += 1;
        match handshake::parse_request(&buf, feed.max_head) {
            Ok(Some((req, head_len))) => {
                check_request(&req, head_len, &buf, feed.max_head);
                match decide(&req, table) {
                    Ok(key) => {
                        let resp = handshake::accept_response(&key);
                        assert!(resp.starts_with(b"HTTP/1.1 101 "));
                    }
                    Err(reject) => check_response(&reject),
                }
                return;
            }
            Ok(None) => assert!(buf.len() < feed.max_head),
            Err(reject) => {
                check_response(&reject);
                return;
            }
        }
        if pos == feed.bytes.len() {
            // The peer went quiet or closed before finishing the head:
            // the worker times it out or drops it; nothing to answer.
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(feed) = Feed::new(data) else {
        return;
    };
    let table = routes();
    run(&feed, &table);
    // Route lookup and template parsing on arbitrary text, too.
    if let Ok(text) = std::str::from_utf8(feed.bytes) {
        let _ = table.find(text);
        let _ = Template::parse(text);
        assert_eq!(percent_decode(text), reference_decode(text));
    }
});
