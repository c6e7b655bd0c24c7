//! A connection before it is a WebSocket: the TLS handshake, the HTTP
//! request head, and the response (101 or an error status), as a state
//! machine that consumes its state at each step:
//!
//! ```text
//! Tls ─► Request ─► Response(101) ─► (open)
//!           │       Response(4xx) ─► (refused: linger)
//! ```

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use log::debug;
use mio::net::TcpStream;

use super::stream::{Stream, Transport};
use crate::app::App;
use crate::config::Config;
use crate::deflate::{self, ConnDeflate};
use crate::handler::{ConnId, ConnInfo};
use crate::handshake::{self, Reject};

/// The phases before the WebSocket is open.
pub(super) enum Upgrading {
    /// A TLS handshake in progress.
    Tls(Box<native_tls::MidHandshakeTlsStream<TcpStream>>),
    /// Collecting the HTTP request head.
    Request { stream: Stream, buf: Vec<u8> },
    /// Writing an HTTP response; `upgrade` is `Some` for a 101.
    Response {
        stream: Stream,
        out: Vec<u8>,
        pos: usize,
        upgrade: Option<Box<Upgrade>>,
    },
}

/// What becomes of a connection once its 101 response is written.
pub(super) struct Upgrade {
    /// What the handler will see.
    pub info: ConnInfo,
    /// Index of the route (and its handler).
    pub route: usize,
    /// Bytes that arrived after the request head: the first frames.
    pub leftover: Vec<u8>,
    /// The route's message size limit.
    pub max_message_size: usize,
    /// permessage-deflate state, when the route allows it and the client
    /// offered it acceptably.
    pub deflate: Option<ConnDeflate>,
}

/// What one step of the upgrade came to.
pub(super) enum Step {
    /// Waiting for the socket.
    Wait(Upgrading),
    /// Moved on; the next phase may have its data already.
    Again(Upgrading),
    /// The 101 is written: the connection is a WebSocket now.
    Open(Stream, Box<Upgrade>),
    /// An error response is written: linger, then close.
    Refused(Stream),
    /// Nothing more to say to this peer; drop it.
    Drop,
}

/// What routing a request needs to know about the worker and the peer.
pub(super) struct Context<'a> {
    /// The configuration generation.
    pub config: &'a Config,
    /// Routes.
    pub app: &'a App,
    /// The worker's pid and the connection's serial make its id.
    pub pid: u32,
    /// See `pid`.
    pub serial: u32,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Upgrading {
    /// The first phase of a freshly accepted connection; `None` if its
    /// TLS handshake failed at once.
    pub fn start(
        tcp: TcpStream,
        tls: Option<&native_tls::TlsAcceptor>,
        peer: SocketAddr,
    ) -> Option<Upgrading> {
        let Some(acceptor) = tls else {
            return Some(Upgrading::request(Transport::Plain(tcp)));
        };
        match acceptor.accept(tcp) {
            Ok(tls) => Some(Upgrading::request(Transport::Tls(Box::new(tls)))),
            Err(native_tls::HandshakeError::WouldBlock(mid)) => Some(Upgrading::Tls(Box::new(mid))),
            Err(native_tls::HandshakeError::Failure(e)) => {
                debug!("TLS handshake with {peer} failed: {e}");
                None
            }
        }
    }

    fn request(transport: Transport) -> Upgrading {
        Upgrading::Request {
            stream: Stream::new(transport),
            buf: Vec::new(),
        }
    }

    /// The stream, once past TLS.
    pub fn stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            Upgrading::Tls(_) => None,
            Upgrading::Request { stream, .. } | Upgrading::Response { stream, .. } => Some(stream),
        }
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> RawFd {
        match self {
            Upgrading::Tls(mid) => mid.get_ref().as_raw_fd(),
            Upgrading::Request { stream, .. } | Upgrading::Response { stream, .. } => {
                stream.as_raw_fd()
            }
        }
    }

    /// Advances as far as the socket allows in one phase.
    pub fn step(self, ctx: &Context<'_>) -> Step {
        match self {
            Upgrading::Tls(mid) => match mid.handshake() {
                Ok(tls) => Step::Again(Upgrading::request(Transport::Tls(Box::new(tls)))),
                Err(native_tls::HandshakeError::WouldBlock(mid)) => {
                    Step::Wait(Upgrading::Tls(Box::new(mid)))
                }
                Err(native_tls::HandshakeError::Failure(e)) => {
                    debug!("TLS handshake with {} failed: {e}", ctx.peer);
                    Step::Drop
                }
            },
            Upgrading::Request { stream, buf } => step_request(stream, buf, ctx),
            Upgrading::Response {
                mut stream,
                out,
                mut pos,
                upgrade,
            } => match write_out(&mut stream, &out, &mut pos) {
                Ok(false) => Step::Wait(Upgrading::Response {
                    stream,
                    out,
                    pos,
                    upgrade,
                }),
                Err(_) => Step::Drop,
                Ok(true) => match upgrade {
                    Some(up) => Step::Open(stream, up),
                    None => Step::Refused(stream),
                },
            },
        }
    }
}

fn step_request(mut stream: Stream, mut buf: Vec<u8>, ctx: &Context<'_>) -> Step {
    let max_head = ctx.config.server.max_request_head;
    let before = buf.len();
    let read = read_head(&mut stream, &mut buf, max_head);
    // Parse the first bytes (garbage is refused at once) and then only
    // when a head could have ended: a client sending a byte at a time
    // must not make us re-parse the whole head per byte.
    let parsed = if before == 0 || handshake::may_end_head(&buf, before) {
        handshake::parse_request(&buf, max_head)
    } else if buf.len() > max_head {
        Err(Reject::HeadTooLarge(max_head))
    } else {
        Ok(None)
    };
    let outcome = match (read, parsed) {
        (_, Ok(Some((req, head_len)))) => decide(ctx, req, buf.split_off(head_len)),
        (_, Err(reject)) => Err(reject),
        (Ok(HeadRead::WouldBlock), Ok(None)) => {
            return Step::Wait(Upgrading::Request { stream, buf });
        }
        (Ok(HeadRead::Full), Ok(None)) => Err(Reject::HeadTooLarge(max_head)),
        (Ok(HeadRead::Eof), Ok(None)) | (Err(_), Ok(None)) => return Step::Drop,
    };
    let (out, upgrade) = match outcome {
        Ok((upgrade, key, extensions)) => (
            handshake::accept_response_with(&key, extensions.as_deref()),
            Some(upgrade),
        ),
        Err(reject) => {
            debug!("refused {}: {reject}", ctx.peer);
            (reject.response(), None)
        }
    };
    Step::Again(Upgrading::Response {
        stream,
        out,
        pos: 0,
        upgrade,
    })
}

/// Routes and checks a complete request: the upgrade to perform (with
/// the client's key), or why not.
fn decide(
    ctx: &Context<'_>,
    req: handshake::Request,
    leftover: Vec<u8>,
) -> Result<(Box<Upgrade>, String, Option<String>), Reject> {
    let (m, params) = ctx
        .app
        .routes
        .find(&req.path)
        .ok_or_else(|| Reject::NotFound(req.path.clone()))?;
    let key = handshake::validate_upgrade(&req)?.to_string();
    let allowed = &ctx.config.server.allowed_origins;
    if !allowed.is_empty() {
        match req.header("Origin") {
            None => return Err(Reject::Forbidden("an Origin header is required".into())),
            Some(o) if !handshake::origin_allowed(o, allowed) => {
                return Err(Reject::Forbidden(format!("origin {o} is not allowed")))
            }
            Some(_) => {}
        }
    }
    // RFC 7692 §5: accept the first acceptable offer (or none) and name
    // exactly what was accepted in the response.
    let settings = &ctx.config.compression;
    let accepted = m
        .target
        .compression
        .then(|| deflate::accept_offer(req.header_values("Sec-WebSocket-Extensions"), settings))
        .flatten();
    let (deflate, extensions) = match accepted {
        Some(a) => (
            Some(ConnDeflate::new(a.params, deflate::Role::Server, settings)),
            Some(a.response),
        ),
        None => (None, None),
    };
    let info = ConnInfo {
        id: ConnId::new(ctx.pid, ctx.serial),
        peer: ctx.peer,
        path: req.path,
        query: req.query,
        headers: req.headers,
        params,
        route: m.template.as_str().to_string(),
        compressed: deflate.is_some(),
    };
    let upgrade = Upgrade {
        info,
        route: m.index,
        leftover,
        max_message_size: m.target.max_message_size,
        deflate,
    };
    Ok((Box::new(upgrade), key, extensions))
}

/// How reading a request head ended.
enum HeadRead {
    /// The socket has no more bytes for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// More than `limit` bytes arrived; stop reading.
    Full,
}

/// Reads into `buf` until the socket would block, the peer closes, or
/// `buf` holds more than `limit` bytes.
fn read_head(stream: &mut Stream, buf: &mut Vec<u8>, limit: usize) -> io::Result<HeadRead> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() > limit {
            return Ok(HeadRead::Full);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(HeadRead::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HeadRead::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `out[*pos..]`; `Ok(true)` once all of it is written.
fn write_out(stream: &mut Stream, out: &[u8], pos: &mut usize) -> io::Result<bool> {
    while *pos < out.len() {
        match stream.write(&out[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
