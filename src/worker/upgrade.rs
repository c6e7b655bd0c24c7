//! A connection before it is a WebSocket: the PROXY protocol header
//! (with `[server] proxy_protocol = true`), the TLS handshake, the HTTP
//! request head, the admission (route, upgrade headers, origin,
//! subprotocol, per-address limits, the handler's `on_handshake`: see
//! [`mod@decide`]), and the response (101 or an error status), as a state
//! machine that consumes its state at each step:
//!
//! ```text
//! Proxy ─► TlsHello ─► Tls ─► Request ─► Response(101) ─► (open)
//!                                │       Response(4xx) ─► (refused: linger)
//! ```

mod decide;
mod head;

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use log::debug;
use mio::net::TcpStream;

use self::decide::{decide, Decided, Refused};
pub(super) use self::decide::{Context, Upgrade};
use self::head::{HeadBuf, HeadRead};
use super::access;
use super::socket::{ReadAhead, Socket};
use super::stream::{Stream, Transport};
use super::tls::Tls;
use crate::config::Config;
use crate::handler::ConnInfo;
use crate::handshake::{self, Reject};
use crate::proxy_protocol::{self, Parsed};
use crate::tls::Acceptor;

/// The phases before the WebSocket is open.
pub(super) enum Upgrading {
    /// Waiting for the PROXY protocol header (peeked, so that the bytes
    /// behind it stay in the socket for TLS or HTTP).
    Proxy(TcpStream),
    /// Waiting for the client's first TLS bytes: the handshake starts at
    /// the socket's first readiness event, not at accept, where the
    /// ClientHello is rarely there yet and the read would only say
    /// WouldBlock. The flag is the event's `short_read_ends`.
    TlsHello(TcpStream, bool),
    /// A TLS handshake in progress.
    Tls(Box<Tls>),
    /// Collecting the HTTP request head; `partial` is what arrived so far
    /// (see [`head`]).
    Request { stream: Stream, partial: Vec<u8> },
    /// Writing an HTTP response; `upgrade` is `Some` for a 101.
    Response {
        stream: Stream,
        out: Vec<u8>,
        pos: usize,
        upgrade: Option<Box<Upgrade>>,
    },
}

/// What one step of the upgrade came to.
pub(super) enum Step {
    /// Waiting for the socket.
    Wait(Upgrading),
    /// Moved on; the next phase may have its data already.
    Again(Upgrading),
    /// The PROXY protocol header named the client: it is the peer now.
    Proxied(Upgrading, SocketAddr),
    /// The 101 is written: the connection is a WebSocket now.
    Open(Stream, Box<Upgrade>),
    /// An error response is written: linger, then close.
    Refused(Stream),
    /// Nothing more to say to this peer; drop it.
    Drop,
}

impl Upgrading {
    /// The first phase of a freshly accepted connection: the PROXY
    /// protocol header if `proxy` is set, else TLS or the request.
    pub fn start(tcp: TcpStream, tls: bool, proxy: bool) -> Upgrading {
        match (proxy, tls) {
            (true, _) => Upgrading::Proxy(tcp),
            (false, true) => Upgrading::TlsHello(tcp, false),
            (false, false) => Upgrading::request(Transport::Plain(Socket::new(tcp))),
        }
    }

    /// Whether the phase waits for a readiness event before it reads
    /// (the loop then does not drive a new connection at once).
    pub fn waits_for_event(&self) -> bool {
        matches!(self, Upgrading::TlsHello(..))
    }

    /// TLS or the request, after a PROXY header: the bytes behind it are
    /// usually there already, so TLS starts at once. `None` if the TLS
    /// handshake failed at once.
    fn after_proxy(tcp: TcpStream, tls: Option<&Acceptor>, peer: SocketAddr) -> Option<Upgrading> {
        let Some(acceptor) = tls else {
            return Some(Upgrading::request(Transport::Plain(Socket::new(tcp))));
        };
        Upgrading::accept_tls(acceptor, ReadAhead::new(tcp), peer)
    }

    /// Starts the TLS handshake; `None` if it failed at once.
    fn accept_tls(acceptor: &Acceptor, socket: ReadAhead, peer: SocketAddr) -> Option<Upgrading> {
        match Tls::new(acceptor, socket) {
            Ok(tls) => Upgrading::handshake(Box::new(tls), peer),
            Err(e) => {
                debug!("TLS handshake with {peer} failed: {e}");
                None
            }
        }
    }

    /// Advances the TLS handshake: the request phase once it is done,
    /// the same phase while it waits for the socket, `None` if it failed.
    fn handshake(mut tls: Box<Tls>, peer: SocketAddr) -> Option<Upgrading> {
        match tls.handshake() {
            Ok(true) => Some(Upgrading::request(Transport::Tls(tls))),
            Ok(false) => Some(Upgrading::Tls(tls)),
            Err(e) => {
                debug!("TLS handshake with {peer} failed: {e}");
                None
            }
        }
    }

    fn request(transport: Transport) -> Upgrading {
        Upgrading::Request {
            stream: Stream::new(transport),
            partial: Vec::new(),
        }
    }

    /// A readiness event arrived (see [`Socket::arm`]). The PROXY phase
    /// peeks, so it has nothing to arm.
    pub fn arm(&mut self, short_read_ends: bool) {
        match self {
            Upgrading::Proxy(_) => {}
            Upgrading::TlsHello(_, armed) => *armed = short_read_ends,
            Upgrading::Tls(tls) => tls.arm(short_read_ends),
            Upgrading::Request { stream, .. } | Upgrading::Response { stream, .. } => {
                stream.arm(short_read_ends)
            }
        }
    }

    /// Advances as far as the socket allows in one phase.
    pub fn step(self, ctx: &mut Context<'_>) -> Step {
        match self {
            Upgrading::Proxy(tcp) => step_proxy(tcp, ctx),
            Upgrading::TlsHello(tcp, short_read_ends) => {
                let Some(acceptor) = ctx.tls else {
                    return Step::Drop; // TLS was configured when accepted
                };
                let mut socket = ReadAhead::new(tcp);
                socket.arm(short_read_ends);
                match Upgrading::accept_tls(acceptor, socket, ctx.peer) {
                    Some(next) => Step::Again(next),
                    None => Step::Drop,
                }
            }
            Upgrading::Tls(tls) => match Upgrading::handshake(tls, ctx.peer) {
                Some(Upgrading::Tls(tls)) => Step::Wait(Upgrading::Tls(tls)),
                Some(next) => Step::Again(next),
                None => Step::Drop,
            },
            Upgrading::Request { stream, partial } => step_request(stream, partial, ctx),
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
                    Some(up) => {
                        log_opened(ctx.config, &up.info);
                        Step::Open(stream, up)
                    }
                    None => Step::Refused(stream),
                },
            },
        }
    }
}

/// Peeks at the PROXY protocol header; once it is whole, consumes it and
/// goes on with the client it names as the peer. Anything that cannot be
/// a valid header closes the connection (only this one).
fn step_proxy(mut tcp: TcpStream, ctx: &Context<'_>) -> Step {
    // A v2 header may announce up to 64 KiB; we wait for no more than a
    // request head's worth.
    let limit = ctx
        .config
        .server
        .max_request_head
        .clamp(proxy_protocol::V1_MAX, proxy_protocol::V2_MAX);
    let mut buf = vec![0u8; limit];
    let n = match tcp.peek(&mut buf) {
        Ok(0) => return Step::Drop,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Step::Wait(Upgrading::Proxy(tcp))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            return Step::Again(Upgrading::Proxy(tcp))
        }
        Err(_) => return Step::Drop,
    };
    let (len, addresses) = match proxy_protocol::parse(&buf[..n]) {
        Ok(Parsed::Done { len, addresses }) => (len, addresses),
        Ok(Parsed::Incomplete) if n < limit => return Step::Wait(Upgrading::Proxy(tcp)),
        Ok(Parsed::Incomplete) => {
            debug!(
                "closing {}: PROXY protocol header longer than {limit} bytes",
                ctx.peer
            );
            return Step::Drop;
        }
        Err(e) => {
            debug!("closing {}: {e}", ctx.peer);
            return Step::Drop;
        }
    };
    // The header's bytes are in the socket's buffer (we just peeked them).
    if tcp.read_exact(&mut buf[..len]).is_err() {
        return Step::Drop;
    }
    let peer = addresses.map_or(ctx.peer, |(src, _)| src);
    match Upgrading::after_proxy(tcp, ctx.tls, peer) {
        Some(next) => Step::Proxied(next, peer),
        None => Step::Drop,
    }
}

/// Reads what there is of the request head into the worker's buffer and
/// answers the request once the head is whole (or cannot be).
fn step_request(mut stream: Stream, partial: Vec<u8>, ctx: &mut Context<'_>) -> Step {
    let max_head = ctx.config.server.max_request_head;
    let before = partial.len();
    let mut head = HeadBuf::lend(max_head, partial);
    let read = head.read_from(&mut stream, max_head);
    let buf = head.filled();
    // Parse the first bytes (garbage is refused at once) and then only
    // when a head could have ended: a client sending a byte at a time
    // must not make us re-parse the whole head per byte.
    let parsed = if before == 0 || handshake::may_end_head(buf, before) {
        handshake::parse_request(buf, max_head)
    } else if buf.len() > max_head {
        Err(Reject::HeadTooLarge(max_head))
    } else {
        Ok(None)
    };
    let reject = match (read, parsed) {
        (_, Ok(Some((req, head_len)))) => {
            let leftover = buf[head_len..].to_vec();
            let decided = decide(ctx, req, leftover);
            return respond(stream, decided, ctx);
        }
        (_, Err(reject)) => reject,
        (Ok(HeadRead::WouldBlock), Ok(None)) => {
            let partial = head.into_partial();
            return Step::Wait(Upgrading::Request { stream, partial });
        }
        (Ok(HeadRead::Full), Ok(None)) => Reject::HeadTooLarge(max_head),
        (Ok(HeadRead::Eof), Ok(None)) | (Err(_), Ok(None)) => return Step::Drop,
    };
    // Refused before routing: the request line is read leniently.
    let (method, path) = access::request_line(buf);
    let refused = Refused {
        peer: ctx.peer,
        method,
        path,
        refusal: reject.into(),
    };
    respond(stream, Err(Box::new(refused)), ctx)
}

/// Goes on to write the 101 or the refusal. A refusal is counted
/// (`/status`, `/metrics`) and logged here, the one place every refusal
/// passes, whoever refused.
fn respond(stream: Stream, decided: Result<Decided, Box<Refused>>, ctx: &Context<'_>) -> Step {
    let (out, upgrade) = match decided {
        Ok(Decided { upgrade, response }) => (response, Some(upgrade)),
        Err(refused) => {
            let Refused {
                peer,
                method,
                path,
                refusal,
            } = *refused;
            // STATS: handshake failures by status
            if let Some(s) = ctx.stats {
                s.handshake_failed(refusal.status);
            }
            if ctx.config.log.access_log {
                access::log(&access::Entry {
                    peer,
                    method: &method,
                    path: &path,
                    status: refusal.status,
                    reason: &refusal.reason,
                    conn: None,
                });
            }
            (refusal.response, None)
        }
    };
    Step::Again(Upgrading::Response {
        stream,
        out,
        pos: 0,
        upgrade,
    })
}

/// The access log's line for a connection whose 101 is written.
fn log_opened(config: &Config, info: &ConnInfo) {
    if !config.log.access_log {
        return;
    }
    let reason = match info.subprotocol() {
        Some(p) => format!("open, subprotocol {p}"),
        None => "open".to_string(),
    };
    access::log(&access::Entry {
        peer: info.peer,
        method: "GET",
        path: info.path(),
        status: 101,
        reason: &reason,
        conn: Some(info.id),
    });
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
