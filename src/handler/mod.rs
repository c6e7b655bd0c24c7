//! The programming model: the [`Handler`] trait, the [`Conn`] handle a
//! handler receives with every event, and the built-in handlers.
//!
//! One handler value serves every connection of its route within one
//! worker process (as in php-wss, where one handler object serves the
//! server). That makes per-worker shared state, such as the members of a
//! chat room, plain fields of the handler: no `Rc`, no `RefCell`, no
//! `unsafe`. Per-connection state lives in a map keyed by [`ConnId`],
//! cleaned up in [`Handler::on_close`].
//!
//! A [`Conn`] does not write to the socket itself: it records what the
//! handler asked for (send, close, broadcast) and the worker carries it
//! out when the callback returns. That keeps handlers free of I/O errors
//! and lets one callback address many connections.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::admission::{Decision, HandshakeRequest};
use crate::message::truncate_reason;
pub use crate::message::{CloseCode, Message, Text};

mod info;
pub(crate) use info::Request as InfoRequest;
pub use info::{ConnInfo, Pairs};

/// What a handler callback may fail with; passed to [`Handler::on_error`].
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a handler callback.
pub type HandlerResult = Result<(), HandlerError>;

/// A connection's identifier: unique across all workers of the daemon and
/// stable for the life of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Builds the id of the `seq`-th connection of the worker with `pid`.
    pub(crate) fn new(pid: u32, seq: u32) -> ConnId {
        ConnId((u64::from(pid) << 32) | u64::from(seq))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Which connections a broadcast reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every connection of the daemon, on every route.
    All,
    /// Every connection on the sender's route template.
    Route,
    /// Every connection on the sender's route whose path parameters are the
    /// same as the sender's: a room such as `/chat/lobby`.
    Room,
}

/// A request from a handler, carried out by the worker after the callback.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send to the connection itself.
    Send(Message),
    /// Start the close handshake with this code and reason.
    Close(CloseCode, String),
    /// Send to every connection in scope, except `skip_self`'s sender.
    Broadcast {
        scope: Scope,
        message: Message,
        skip_self: bool,
    },
    /// Broadcast `messages` one by one with `delay` between them.
    BroadcastMany {
        scope: Scope,
        messages: Vec<Message>,
        delay: Duration,
        skip_self: bool,
    },
}

/// The handle a handler receives with each event of a connection.
pub struct Conn<'a> {
    info: &'a ConnInfo,
    actions: &'a mut Vec<Action>,
}

impl<'a> Conn<'a> {
    pub(crate) fn new(info: &'a ConnInfo, actions: &'a mut Vec<Action>) -> Self {
        Conn { info, actions }
    }

    /// The connection's id, unique across workers.
    pub fn id(&self) -> ConnId {
        self.info.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.info.peer
    }

    /// The request path as sent, without the query string.
    pub fn path(&self) -> &'a str {
        self.info.path()
    }

    /// The query string without `?` (empty when absent).
    pub fn query(&self) -> &'a str {
        self.info.query()
    }

    /// The request headers, in order (without those that only carry the
    /// upgrade; see [`ConnInfo`]).
    pub fn headers(&self) -> Pairs<'a> {
        self.info.headers()
    }

    /// The first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.info.header(name)
    }

    /// The path parameter `name` (percent-decoded), e.g. `room`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.info.param(name)
    }

    /// All path parameters in template order.
    pub fn params(&self) -> Pairs<'a> {
        self.info.params()
    }

    /// The route template the connection came in on.
    pub fn route(&self) -> &'a str {
        self.info.route()
    }

    /// The subprotocol selected in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&'a str> {
        self.info.subprotocol()
    }

    /// The value [`Handler::on_handshake`] attached with
    /// [`Decision::with_value`], if it is a `T`.
    pub fn value<T: std::any::Any>(&self) -> Option<&'a T> {
        self.info.value::<T>()
    }

    /// Whether the connection negotiated permessage-deflate (RFC 7692);
    /// handlers see uncompressed messages either way.
    pub fn compressed(&self) -> bool {
        self.info.compressed
    }

    /// Everything known about the connection.
    pub fn info(&self) -> &ConnInfo {
        self.info
    }

    /// Queues a text message to this connection.
    pub fn send_text(&mut self, text: impl Into<Text>) {
        self.send(Message::Text(text.into()));
    }

    /// Queues a binary message to this connection.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) {
        self.send(Message::Binary(data.into()));
    }

    /// Queues a message to this connection.
    pub fn send(&mut self, message: Message) {
        self.actions.push(Action::Send(message));
    }

    /// Starts the close handshake with `code` and `reason` (at most 123
    /// bytes; longer reasons are cut at a character boundary).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.actions
            .push(Action::Close(code, truncate_reason(reason).to_string()));
    }

    /// Sends `message` to every connection in `scope` on every worker,
    /// the sender included.
    pub fn broadcast(&mut self, scope: Scope, message: Message) {
        self.actions.push(Action::Broadcast {
            scope,
            message,
            skip_self: false,
        });
    }

    /// Like [`broadcast`](Self::broadcast), but not to the sender.
    pub fn broadcast_others(&mut self, scope: Scope, message: Message) {
        self.actions.push(Action::Broadcast {
            scope,
            message,
            skip_self: true,
        });
    }

    /// Broadcasts `messages` in order with `delay` between them, without
    /// blocking the worker (php-wss `broadCastMany`).
    pub fn broadcast_many(&mut self, scope: Scope, messages: Vec<Message>, delay: Duration) {
        self.actions.push(Action::BroadcastMany {
            scope,
            messages,
            delay,
            skip_self: false,
        });
    }
}

/// The events of a route's connections. One value serves every connection
/// of its route in one worker; see the module documentation.
///
/// Errors returned from a callback are passed to [`on_error`](Self::on_error)
/// and logged; a panic closes only the connection (code 1011).
pub trait Handler {
    /// An upgrade request for this route passed wssd's own checks (route,
    /// upgrade headers, origin, subprotocol, limits); decide whether it
    /// opens. The default accepts, as wssd did before the hook existed.
    ///
    /// It runs inside the worker's event loop before the 101 is sent, so it
    /// **must not block** (no network or database calls, no sleeping): a
    /// slow hook stalls every connection of the worker. For a slow check,
    /// accept with what is known cheaply, verify in
    /// [`on_open`](Self::on_open) or on the first message, and close with
    /// 1008 (policy violation) if it fails.
    fn on_handshake(&mut self, req: &HandshakeRequest<'_>) -> Decision {
        let _ = req;
        Decision::accept()
    }

    /// The handshake is done and the 101 response has been queued.
    fn on_open(&mut self, conn: &mut Conn<'_>) -> HandlerResult {
        let _ = conn;
        Ok(())
    }

    /// A whole text or binary message arrived (fragments reassembled,
    /// text checked for UTF-8). Pings and pongs have their own callbacks.
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult;

    /// The connection is gone: `code` is the peer's close code, or `None`
    /// if it vanished without a close frame.
    fn on_close(&mut self, conn: &mut Conn<'_>, code: Option<CloseCode>, reason: &str) {
        let _ = (conn, code, reason);
    }

    /// A callback of this handler returned an error, or the connection
    /// failed (protocol error, I/O error).
    fn on_error(&mut self, conn: &mut Conn<'_>, error: &HandlerError) {
        log::warn!("route {}: connection {}: {error}", conn.route(), conn.id());
    }

    /// A ping arrived; the pong has already been queued.
    fn on_ping(&mut self, conn: &mut Conn<'_>, payload: &[u8]) {
        let _ = (conn, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, conn: &mut Conn<'_>, payload: &[u8]) {
        let _ = (conn, payload);
    }
}

/// Makes the handler of a route, once in each worker process.
pub(crate) type HandlerFactory = std::rc::Rc<dyn Fn() -> Box<dyn Handler>>;

/// Built-in `echo`: every message goes back to its sender.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        conn.send(message);
        Ok(())
    }
}

/// Built-in `broadcast`: every message goes to every connection on the
/// same path (the same room), on every worker.
#[derive(Debug)]
pub struct Broadcast {
    /// Whether the sender receives its own messages.
    pub echo_self: bool,
}

impl Handler for Broadcast {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        if self.echo_self {
            conn.broadcast(Scope::Room, message);
        } else {
            conn.broadcast_others(Scope::Room, message);
        }
        Ok(())
    }
}

/// The names `handler = "..."` accepts in the binary, with their factories.
pub(crate) fn builtin(name: &str, echo_self: bool) -> Option<HandlerFactory> {
    match name {
        "echo" => Some(std::rc::Rc::new(|| Box::new(Echo) as Box<dyn Handler>)),
        "broadcast" => Some(std::rc::Rc::new(move || {
            Box::new(Broadcast { echo_self }) as Box<dyn Handler>
        })),
        _ => None,
    }
}

/// Names of the built-in handlers, for error messages.
pub(crate) const BUILTIN_NAMES: &[&str] = &["echo", "broadcast", "exec"];

/// Per-connection state for handlers that keep it: a map from [`ConnId`].
pub type PerConn<T> = HashMap<ConnId, T>;
