//! Who gets in: the handshake hook's vocabulary and the responses it leads
//! to, as pure functions.
//!
//! A [`HandshakeRequest`] is what [`Handler::on_handshake`](crate::Handler::on_handshake)
//! sees of an upgrade request (method, path, query, headers, cookies, path
//! parameters, peer address, TLS, the subprotocols offered); a
//! [`Decision`] is its answer: accept (with a subprotocol, extra response
//! headers and a per-connection [`ConnValue`]) or reject (status, headers,
//! short body). [`negotiate_subprotocol`] applies a route's `subprotocols`
//! list; [`render_accept`] and [`render_reject`] turn the outcome into
//! bytes for the socket.
//!
//! Nothing here does I/O, so the worker can call it from its upgrade step
//! and tests can drive it without sockets.
//!
//! `request`: what the hook sees; `decision`: its answer and the
//! connection's value; `negotiate`: the route's subprotocols and the
//! decision combined into an [`Outcome`]; `response`: the bytes of the
//! 101 and of a refusal.

mod decision;
mod negotiate;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use decision::{ConnValue, Decision};
pub use negotiate::{
    conclude, negotiate_subprotocol, offered_subprotocols, refusal_response, select_subprotocol,
    Outcome,
};
pub use request::{parse_cookies, HandshakeRequest};
pub use response::{reason_phrase, render_accept, render_reject, MAX_REJECT_BODY};
