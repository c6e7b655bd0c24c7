//! Whether a complete request is upgraded: routing, wssd's own checks
//! (upgrade headers, origin, an `exec` route's `max_processes`), the
//! subprotocol, permessage-deflate, the per-address limits and the
//! handler's `on_handshake`; what it comes to is the 101 with the
//! [`Upgrade`] to perform, or a [`Refused`] with its response.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::error;

use crate::admission::{self, Decision, HandshakeRequest, Outcome};
use crate::app::{App, RouteEntry};
use crate::config::Config;
use crate::deflate::{self, ConnDeflate};
use crate::handler::{ConnId, ConnInfo, Handler, InfoRequest};
use crate::handshake::{self, Reject};
use crate::limits::client_address;
use crate::route::Match;
use crate::stats::WorkerSlot;
use crate::worker::admit::{Counted, Limits};

/// What routing a request needs to know about the worker and the peer.
pub(in crate::worker) struct Context<'a> {
    /// The configuration generation.
    pub config: &'a Config,
    /// Routes.
    pub app: &'a App,
    /// The routes' handlers (for `on_handshake`), by route index.
    pub handlers: &'a mut [Box<dyn Handler>],
    /// The per-address limits, when configured.
    pub limits: Option<&'a Limits>,
    /// The TLS acceptor, when `[tls]` is configured.
    pub tls: Option<&'a crate::tls::Acceptor>,
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

/// What becomes of a connection once its 101 response is written.
pub(in crate::worker) struct Upgrade {
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

/// An admitted request: the upgrade to perform once its 101 is written.
pub(super) struct Decided {
    /// What the connection becomes.
    pub upgrade: Box<Upgrade>,
    /// The 101 response.
    pub response: Vec<u8>,
}

/// A refused request: who asked for what, and the refusal.
pub(super) struct Refused {
    /// The client (after `X-Forwarded-For`, once the head is parsed).
    pub peer: SocketAddr,
    /// The request method, `-` if unknown.
    pub method: String,
    /// The request path without the query, `-` if unknown.
    pub path: String,
    /// The status, reason and response.
    pub refusal: Refusal,
}

/// Why a request is refused and the response that says so, whoever
/// refused it: wssd's own checks ([`Reject`]), the per-address limits,
/// or the handler's `on_handshake`.
pub(super) struct Refusal {
    /// The HTTP status sent.
    pub status: u16,
    /// What the access log says.
    pub reason: String,
    /// The whole response.
    pub response: Vec<u8>,
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
pub(super) fn decide(
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
