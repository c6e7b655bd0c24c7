//! A connection before it is a WebSocket: the PROXY protocol header
//! (with `[server] proxy_protocol = true`), the TLS handshake, the HTTP
//! request head, the admission (route, upgrade headers, origin,
//! subprotocol, per-address limits, the handler's `on_handshake`), and the
//! response (101 or an error status), as a state machine that consumes its
//! state at each step:
//!
//! ```text
//! Proxy ─► TlsHello ─► Tls ─► Request ─► Response(101) ─► (open)
//!                                │       Response(4xx) ─► (refused: linger)
//! ```

mod head;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error};
use mio::net::TcpStream;
use openssl::ssl::HandshakeError;

use self::head::{HeadBuf, HeadRead};
use super::access;
use super::admit::{Counted, Limits};
use super::socket::{ReadAhead, Socket};
use super::stream::{Stream, Transport};
use crate::admission::{self, Decision, HandshakeRequest, Outcome};
use crate::app::{App, RouteEntry};
use crate::config::Config;
use crate::deflate::{self, ConnDeflate};
use crate::handler::{ConnId, ConnInfo, Handler, InfoRequest};
use crate::handshake::{self, Reject};
use crate::limits::client_address;
use crate::proxy_protocol::{self, Parsed};
use crate::route::Match;
use crate::stats::WorkerSlot;

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
    Tls(Box<openssl::ssl::MidHandshakeSslStream<ReadAhead>>),
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

impl Upgrading {
    /// The stream of a connection past its TLS handshake (reading the
    /// request head or writing the response), for the TLS sweep.
    pub fn stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            Upgrading::Request { stream, .. } | Upgrading::Response { stream, .. } => Some(stream),
            Upgrading::Proxy(_) | Upgrading::TlsHello(..) | Upgrading::Tls(_) => None,
        }
    }
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
    /// The connection's count in the per-address limits, if counted
    /// (boxed: only with `[limits]`, and every session carries the field).
    pub counted: Option<Box<Counted>>,
    /// permessage-deflate state, when the route allows it and the client
    /// offered it acceptably.
    pub deflate: Option<ConnDeflate>,
    /// The route runs the built-in `echo`.
    pub echo: bool,
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

/// What routing a request needs to know about the worker and the peer.
pub(super) struct Context<'a> {
    /// The configuration generation.
    pub config: &'a Config,
    /// Routes.
    pub app: &'a App,
    /// The routes' handlers (for `on_handshake`), by route index.
    pub handlers: &'a mut [Box<dyn Handler>],
    /// The per-address limits, when configured.
    pub limits: Option<&'a Limits>,
    /// The TLS acceptor, when `[tls]` is configured.
    pub tls: Option<&'a openssl::ssl::SslAcceptor>,
    /// The loop's clock.
    pub now: Instant,
    /// The worker's pid and the connection's serial make its id.
    pub pid: u32,
    /// See `pid`.
    pub serial: u32,
    /// The peer's address.
    pub peer: SocketAddr,
    /// This worker's counters, for refused handshakes.
    pub stats: Option<&'static WorkerSlot>,
    /// Programs each route's `exec` runs in this worker (by route index).
    pub exec_running: &'a [usize],
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
    fn after_proxy(
        tcp: TcpStream,
        tls: Option<&openssl::ssl::SslAcceptor>,
        peer: SocketAddr,
    ) -> Option<Upgrading> {
        let Some(acceptor) = tls else {
            return Some(Upgrading::request(Transport::Plain(Socket::new(tcp))));
        };
        Upgrading::accept_tls(acceptor, ReadAhead::new(tcp), peer)
    }

    /// Starts the TLS handshake; `None` if it failed at once.
    fn accept_tls(
        acceptor: &openssl::ssl::SslAcceptor,
        socket: ReadAhead,
        peer: SocketAddr,
    ) -> Option<Upgrading> {
        match acceptor.accept(socket) {
            Ok(tls) => Some(Upgrading::request(Transport::tls(tls))),
            Err(HandshakeError::WouldBlock(mid)) => Some(Upgrading::Tls(Box::new(mid))),
            Err(HandshakeError::Failure(mid)) => {
                debug!("TLS handshake with {peer} failed: {}", mid.error());
                None
            }
            Err(HandshakeError::SetupFailure(e)) => {
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
            Upgrading::Tls(mid) => mid.get_mut().arm(short_read_ends),
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
            Upgrading::Tls(mid) => match mid.handshake() {
                Ok(tls) => Step::Again(Upgrading::request(Transport::tls(tls))),
                Err(HandshakeError::WouldBlock(mid)) => Step::Wait(Upgrading::Tls(Box::new(mid))),
                Err(HandshakeError::Failure(mid)) => {
                    debug!("TLS handshake with {} failed: {}", ctx.peer, mid.error());
                    Step::Drop
                }
                Err(HandshakeError::SetupFailure(e)) => {
                    debug!("TLS handshake with {} failed: {e}", ctx.peer);
                    Step::Drop
                }
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

/// An admitted request: the upgrade to perform once its 101 is written.
struct Decided {
    /// What the connection becomes.
    upgrade: Box<Upgrade>,
    /// The 101 response.
    response: Vec<u8>,
}

/// A refused request: who asked for what, and the refusal.
struct Refused {
    /// The client (after `X-Forwarded-For`, once the head is parsed).
    peer: SocketAddr,
    /// The request method, `-` if unknown.
    method: String,
    /// The request path without the query, `-` if unknown.
    path: String,
    /// The status, reason and response.
    refusal: Refusal,
}

/// Why a request is refused and the response that says so, whoever
/// refused it: wssd's own checks ([`Reject`]), the per-address limits,
/// or the handler's `on_handshake`.
struct Refusal {
    /// The HTTP status sent.
    status: u16,
    /// What the access log says.
    reason: String,
    /// The whole response.
    response: Vec<u8>,
}

impl From<Reject> for Refusal {
    fn from(reject: Reject) -> Refusal {
        Refusal {
            status: reject.status().0,
            reason: reject.to_string(),
            response: reject.response(),
        }
    }
}

/// Routes and checks a complete request (route, upgrade headers, origin,
/// subprotocol, per-address limits, the handler's hook): the upgrade to
/// perform, or why not.
fn decide(
    ctx: &mut Context<'_>,
    req: handshake::Request<'_>,
    leftover: Vec<u8>,
) -> Result<Decided, Box<Refused>> {
    let peer = client_peer(ctx, &req);
    admit(ctx, req, leftover, peer).map_err(|(path, refusal)| {
        // Boxed: a refusal is much larger than the upgrade's handle, and
        // rarer.
        Box::new(Refused {
            peer,
            method: "GET".to_string(),
            path,
            refusal,
        })
    })
}

/// [`decide`]'s checks for the client `peer`; a refusal comes with the
/// request's path (the request itself is consumed).
fn admit(
    ctx: &mut Context<'_>,
    req: handshake::Request<'_>,
    leftover: Vec<u8>,
    peer: SocketAddr,
) -> Result<Decided, (String, Refusal)> {
    let refuse =
        |req: handshake::Request<'_>, refusal: Refusal| Err((req.path.to_string(), refusal));
    let app = ctx.app;
    let Some((m, params)) = app.routes.find(req.path) else {
        let reject = Reject::NotFound(req.path.to_string());
        return refuse(req, reject.into());
    };
    let key = match check(ctx, &req, &m) {
        Ok(key) => key,
        Err(reject) => return refuse(req, reject.into()),
    };
    let negotiated = match admission::negotiate_subprotocol(
        &m.target.subprotocols,
        m.target.subprotocol_required,
        req.header_pairs(),
    ) {
        Ok(n) => n,
        Err(reject) => return refuse(req, reject.into()),
    };
    let counted = match ctx.limits.map(|l| l.admit(peer.ip(), ctx.now)) {
        None => None,
        Some(Ok(counted)) => Some(counted),
        Some(Err(over)) => {
            let (status, response) = admission::refusal_response(&over);
            let reason = over.to_string();
            return refuse(
                req,
                Refusal {
                    status,
                    reason,
                    response,
                },
            );
        }
    };
    // RFC 7692 §5: accept the first acceptable permessage-deflate offer
    // (or none) and name exactly what was accepted in the 101.
    let settings = &ctx.config.compression;
    let accepted = m
        .target
        .compression
        .then(|| deflate::accept_offer(req.header_values("Sec-WebSocket-Extensions"), settings))
        .flatten();
    let template = m.template.as_str();
    let decision = match ctx.handlers.get_mut(m.index) {
        Some(handler) => {
            let view = HandshakeRequest::new(&req, template, &params, peer, ctx.tls.is_some())
                .with_selected_subprotocol(negotiated.as_deref());
            hook(handler.as_mut(), &view)
        }
        None => Decision::accept(),
    };
    let extensions = accepted.as_ref().map(|a| a.response.as_str());
    match admission::conclude(key, negotiated, extensions, req.header_pairs(), decision) {
        Outcome::Refuse { response, status } => {
            // `counted` is dropped here: a refused connection gives its
            // place back at once.
            let reason = format!("on_handshake answered {status}");
            refuse(
                req,
                Refusal {
                    status,
                    reason,
                    response,
                },
            )
        }
        Outcome::Open {
            response,
            subprotocol,
            value,
        } => {
            let deflate =
                accepted.map(|a| ConnDeflate::new(a.params, deflate::Role::Server, settings));
            let request = InfoRequest {
                route: template,
                path: req.path,
                query: req.query,
                params: &params,
                headers: kept_headers(req.header_pairs()),
            };
            let info = ConnInfo::new(
                ConnId::new(ctx.pid, ctx.serial),
                peer,
                request,
                subprotocol,
                value,
                deflate.is_some(),
            );
            let upgrade = Upgrade {
                info,
                route: m.index,
                leftover,
                max_message_size: m.target.max_message_size,
                counted: counted.map(Box::new),
                deflate,
                echo: m.target.builtin_echo,
            };
            Ok(Decided {
                upgrade: Box::new(upgrade),
                response,
            })
        }
    }
}

/// wssd's own checks of a routed request: the upgrade headers (the
/// `Sec-WebSocket-Key` is returned), the origin allow-list, and an
/// `exec` route's `max_processes`.
fn check<'r>(
    ctx: &Context<'_>,
    req: &'r handshake::Request<'_>,
    m: &Match<'_, RouteEntry>,
) -> Result<&'r str, Reject> {
    let key = handshake::validate_upgrade(req)?;
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
    if let Some(max) = m.target.exec.as_ref().and_then(|e| e.max_processes) {
        if ctx.exec_running.get(m.index).copied().unwrap_or(0) >= max {
            return Err(Reject::Unavailable(format!(
                "{} runs {max} programs in this worker (max_processes); try again later",
                m.template.as_str()
            )));
        }
    }
    Ok(key)
}

/// The client's address: the peer (after the PROXY protocol header, if
/// any), or, from a trusted proxy, the one its `X-Forwarded-For` names.
fn client_peer(ctx: &Context<'_>, req: &handshake::Request<'_>) -> SocketAddr {
    let trusted = &ctx.config.limits.trusted_proxies;
    let forwarded = req.header_values("X-Forwarded-For");
    let client = client_address(ctx.peer.ip(), forwarded, trusted);
    if client == ctx.peer.ip() {
        ctx.peer
    } else {
        // The proxy does not tell the client's port.
        SocketAddr::new(client, 0)
    }
}

/// Runs the handler's `on_handshake`; a panic refuses with 500 (and only
/// this request: the worker and its connections go on).
fn hook(handler: &mut dyn Handler, req: &HandshakeRequest<'_>) -> Decision {
    catch_unwind(AssertUnwindSafe(|| handler.on_handshake(req))).unwrap_or_else(|_| {
        error!(
            "on_handshake of route {} panicked; refusing {} with 500",
            req.route(),
            req.peer_addr()
        );
        Decision::reject(500).with_body("the server failed to decide on this request")
    })
}

/// Request headers that only carry the upgrade and its negotiation
/// (checked above) and mean nothing once the connection is open: not kept
/// for the handler, since every open connection holds its headers for its
/// whole life. What was negotiated is on the connection instead
/// (`ConnInfo::compressed`, `ConnInfo::subprotocol`).
const HANDSHAKE_ONLY: [&str; 5] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
];

/// The request headers (`(name, value)` pairs) a connection keeps: all
/// but [`HANDSHAKE_ONLY`].
fn kept_headers<'h>(
    headers: impl Iterator<Item = (&'h str, &'h str)> + Clone,
) -> impl Iterator<Item = (&'h str, &'h str)> + Clone {
    headers.filter(|(name, _)| !HANDSHAKE_ONLY.iter().any(|h| name.eq_ignore_ascii_case(h)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerResult;

    /// A hook that panics, as a buggy handler's might.
    struct Panicky;

    impl Handler for Panicky {
        fn on_handshake(&mut self, _req: &HandshakeRequest<'_>) -> Decision {
            panic!("hook bug");
        }

        fn on_message(
            &mut self,
            _conn: &mut crate::handler::Conn<'_>,
            _message: crate::message::Message,
        ) -> HandlerResult {
            Ok(())
        }
    }

    #[test]
    fn only_the_headers_that_carried_the_upgrade_are_dropped() {
        let headers = [
            ("Host", "h"),
            ("upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "k"),
            ("Sec-WebSocket-Version", "13"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Origin", "o"),
            ("X-Custom", "x"),
        ];
        assert_eq!(
            kept_headers(headers.into_iter()).collect::<Vec<_>>(),
            [
                ("Host", "h"),
                ("Sec-WebSocket-Protocol", "chat"),
                ("Origin", "o"),
                ("X-Custom", "x")
            ]
        );
    }

    #[test]
    fn a_panicking_hook_refuses_with_500_and_the_worker_goes_on() {
        let req = handshake::Request {
            path: "/x",
            query: "",
            headers: Vec::new(),
        };
        let view = HandshakeRequest::new(&req, "/x", &[], ([127, 0, 0, 1], 1).into(), false);
        let mut handler = Panicky;
        for _ in 0..2 {
            match hook(&mut handler, &view) {
                Decision::Reject { status, .. } => assert_eq!(status, 500),
                Decision::Accept { .. } => panic!("a panicking hook must not accept"),
            }
        }
    }
}
