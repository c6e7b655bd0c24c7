//! The status listener: a small HTTP/1.1 server inside the master's loop
//! (`[status] listen`), for `GET /status`, `GET /metrics` and
//! `POST /publish`.
//!
//! The master must never block, so everything here is non-blocking and
//! bounded: at most [`MAX_CONNS`] connections, a request head of at most
//! [`MAX_HEAD`] bytes, a body of at most the limit the master gives, and a
//! deadline of [`DEADLINE`] per connection from accept to the last byte
//! of the answer. One request per connection (`Connection: close`), which
//! is what monitoring scrapers and backends' HTTP clients cope with.
//! Requests are parsed with `httparse`; what to answer is the master's
//! business (`Master::answer`), this module only carries bytes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::config::StatusConfig;
use crate::error::Error;

/// Concurrent status connections; more are closed at once.
pub(super) const MAX_CONNS: usize = 64;
/// Largest request head.
pub(super) const MAX_HEAD: usize = 8 * 1024;
/// Time a status connection may take from accept to the end of the answer.
pub(super) const DEADLINE: Duration = Duration::from_secs(10);

/// A complete request.
#[derive(Debug)]
pub(super) struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The bearer token of `Authorization: Bearer ...`, if any.
    pub bearer: Option<String>,
    /// Whether it asked for a protocol upgrade (a WebSocket).
    pub upgrade: bool,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
}

/// An answer: status, content type, body.
pub(super) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text answer (errors), one line.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let phrase = match self.status {
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let extra = if self.status == 401 {
            "WWW-Authenticate: Bearer\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {phrase}\r\n{extra}Content-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Where a status connection is.
enum Phase {
    /// Reading the head and body.
    Reading(Vec<u8>),
    /// The request went to the master; waiting for its answer.
    Answering,
    /// Writing the answer; closed once written.
    Writing { out: Vec<u8>, pos: usize },
}

struct StatusConn {
    stream: TcpStream,
    deadline: Instant,
    phase: Phase,
}

/// What reading a connection came to.
pub(super) enum Event {
    /// Nothing to do yet (or the connection is gone).
    Nothing,
    /// A complete request for the master to answer.
    Request(Request),
}

/// The listener and its connections.
pub(super) struct StatusServer {
    listener: TcpListener,
    listen: SocketAddr,
    token: Option<String>,
    conns: HashMap<Token, StatusConn>,
    next: usize,
}

impl StatusServer {
    /// Binds `[status] listen` (or takes `passed`, the socket an
    /// upgrading master or systemd handed down for it) and registers it
    /// under `token`.
    pub fn bind(
        config: &StatusConfig,
        passed: Option<std::net::TcpListener>,
        registry: &Registry,
        token: Token,
    ) -> Result<Self, Error> {
        let mut listener = match passed {
            // Non-blocking already (`inherit::take_listener`).
            Some(l) => TcpListener::from_std(l),
            None => TcpListener::bind(config.listen).map_err(|e| {
                Error::Runtime(format!(
                    "cannot listen on {} ([status] listen): {e}",
                    config.listen
                ))
            })?,
        };
        registry
            .register(&mut listener, token, Interest::READABLE)
            .map_err(|e| Error::runtime("registering the status listener", e))?;
        if let Ok(addr) = listener.local_addr() {
            log::info!("status listener on {addr}");
        }
        Ok(StatusServer {
            listener,
            listen: config.listen,
            token: config.token.clone(),
            conns: HashMap::new(),
            next: super::FIRST_STATUS_CONN,
        })
    }

    /// The listening socket's fd, handed to a new master by a binary
    /// upgrade.
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.listener)
    }

    /// The configured address (as written, port 0 included).
    pub fn listen_config(&self) -> SocketAddr {
        self.listen
    }

    /// The token `POST` requires, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Takes a reloaded `[status] token`.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Closes the listener and every connection (reload to another address).
    pub fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.listener);
        for (_, mut c) in self.conns.drain() {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// The earliest connection deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().map(|c| c.deadline).min()
    }

    /// Accepts until the kernel queue is empty.
    pub fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= MAX_CONNS {
                        debug!("status: {MAX_CONNS} connections open; closing one from {peer}");
                        continue;
                    }
                    let token = Token(self.next);
                    self.next += 1;
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        token,
                        StatusConn {
                            stream,
                            deadline: now + DEADLINE,
                            phase: Phase::Reading(Vec::new()),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("status listener: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// A readiness event: reads (returning a complete request) or writes.
    /// `max_body` bounds a request body.
    pub fn on_event(&mut self, registry: &Registry, token: Token, max_body: usize) -> Event {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Event::Nothing;
        };
        let outcome = match &mut conn.phase {
            Phase::Reading(buf) => match read_request(&mut conn.stream, buf, max_body) {
                Ok(Some(req)) => {
                    conn.phase = Phase::Answering;
                    return Event::Request(req);
                }
                Ok(None) => Ok(false),
                Err(Refusal::Answer(response)) => {
                    conn.phase = Phase::Writing {
                        out: response.encode(),
                        pos: 0,
                    };
                    write_out(conn)
                }
                Err(Refusal::Gone) => Err(()),
            },
            Phase::Answering => Ok(false),
            Phase::Writing { .. } => write_out(conn),
        };
        if outcome != Ok(false) {
            self.drop_conn(registry, token);
        }
        Event::Nothing
    }

    /// Sends the master's answer to the request read on `token`.
    pub fn respond(&mut self, registry: &Registry, token: Token, response: &Response) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.phase = Phase::Writing {
            out: response.encode(),
            pos: 0,
        };
        if write_out(conn) != Ok(false) {
            self.drop_conn(registry, token);
        }
    }

    /// Closes connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            debug!("status: a connection passed its {DEADLINE:?} deadline; closing it");
            self.drop_conn(registry, t);
        }
    }

    fn drop_conn(&mut self, registry: &Registry, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

/// Why a request cannot be read: an error answer, or a dead peer.
enum Refusal {
    Answer(Response),
    Gone,
}

/// Reads what is available; a complete request, or `None` for more.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<Option<Request>, Refusal> {
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Refusal::Gone),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(req) = parse(buf, max_body)? {
                    return Ok(Some(req));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Refusal::Gone),
        }
    }
}

/// Parses a complete request from `buf`, or `None` if more is needed.
fn parse(buf: &[u8], max_body: usize) -> Result<Option<Request>, Refusal> {
    let refuse = |status: u16, why: &str| Err(Refusal::Answer(Response::text(status, why)));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return refuse(431, "request head too large");
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return refuse(431, "too many headers"),
        Err(e) => return refuse(400, &format!("malformed HTTP request ({e})")),
    };
    if head_len > MAX_HEAD {
        return refuse(431, "request head too large");
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if header("Transfer-Encoding").is_some() {
        return refuse(400, "chunked bodies are not supported: send Content-Length");
    }
    let length = match header("Content-Length") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return refuse(400, "Content-Length is not a number"),
        },
    };
    if length > max_body {
        return refuse(413, &format!("body over {max_body} bytes"));
    }
    if buf.len() < head_len + length {
        return Ok(None);
    }
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    let bearer = header("Authorization").and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        path,
        bearer,
        upgrade: header("Upgrade").is_some(),
        body: buf[head_len..head_len + length].to_vec(),
    }))
}

/// Writes what the socket takes; `Ok(true)` once all is written,
/// `Err` if the peer is gone.
fn write_out(conn: &mut StatusConn) -> Result<bool, ()> {
    let Phase::Writing { out, pos } = &mut conn.phase else {
        return Ok(false);
    };
    while *pos < out.len() {
        match conn.stream.write(&out[*pos..]) {
            Ok(0) => return Err(()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Option<Request>, u16> {
        parse(text.as_bytes(), 100).map_err(|r| match r {
            Refusal::Answer(resp) => resp.status,
            Refusal::Gone => 0,
        })
    }

    #[test]
    fn requests_parse_with_body_and_bearer() {
        let r = parsed("POST /publish?x=1 HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/publish"));
        assert_eq!(r.bearer.as_deref(), Some("s3cret"));
        assert_eq!(r.body, b"{}");
        assert!(parsed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_requests_are_answered() {
        assert_eq!(parsed("\x01\x02 junk\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            parsed("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n").unwrap_err(),
            413
        );
        assert_eq!(
            parsed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            400
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(parsed(&long).unwrap_err(), 431);
    }
}
