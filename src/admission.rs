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

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::handshake::{self, Reject};
use crate::http_token::is_token;
use crate::limits::Refusal;
use crate::route::percent_decode;

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

/// What the handshake hook sees of an upgrade request.
///
/// Borrowed from the worker's parsed request: building one costs no copy.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeRequest<'a> {
    path: &'a str,
    query: &'a str,
    headers: &'a [handshake::Header<'a>],
    params: &'a [(String, String)],
    route: &'a str,
    peer: SocketAddr,
    tls: bool,
    selected: Option<&'a str>,
}

impl<'a> HandshakeRequest<'a> {
    /// A view of `req` that came in on `route` (its template) with path
    /// parameters `params`, from `peer` (the client's address after
    /// X-Forwarded-For / PROXY protocol resolution), over TLS or not.
    pub fn new(
        req: &'a handshake::Request<'a>,
        route: &'a str,
        params: &'a [(String, String)],
        peer: SocketAddr,
        tls: bool,
    ) -> Self {
        HandshakeRequest {
            path: req.path,
            query: req.query,
            headers: &req.headers,
            params,
            route,
            peer,
            tls,
            selected: None,
        }
    }

    /// Records the subprotocol the route's `subprotocols` list selected
    /// (from [`negotiate_subprotocol`]), for the hook to see.
    #[must_use]
    pub fn with_selected_subprotocol(mut self, selected: Option<&'a str>) -> Self {
        self.selected = selected;
        self
    }

    /// The subprotocol the route's list selected, which the 101 will
    /// carry unless the hook picks another offered one.
    pub fn selected_subprotocol(&self) -> Option<&'a str> {
        self.selected
    }

    /// The request method. Always `GET`: anything else was refused with
    /// 405 before the hook runs.
    pub fn method(&self) -> &'static str {
        "GET"
    }

    /// The path as sent (percent-encoded), without the query string.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query string without `?` (empty when absent).
    pub fn query(&self) -> &'a str {
        self.query
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is
    /// a space); `None` if absent or not valid UTF-8 once decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_form(k)? == name).then(|| decode_form(v))
            })
            .next()
            .flatten()
    }

    /// All request headers as `(name, value)` pairs, in order.
    pub fn headers(
        &self,
    ) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + DoubleEndedIterator + Clone {
        handshake::pairs(self.headers)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The cookies of every `Cookie` header, as `(name, value)` in order
    /// (RFC 6265 §5.4 syntax; a value in double quotes is unquoted).
    pub fn cookies(&self) -> Vec<(&'a str, &'a str)> {
        self.header_values("Cookie")
            .flat_map(parse_cookies)
            .collect()
    }

    /// The value of the first cookie called `name` (names are
    /// case-sensitive, RFC 6265 §5.4).
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.header_values("Cookie")
            .flat_map(parse_cookies)
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The path parameter `name` (percent-decoded), e.g. `room`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All path parameters in template order.
    pub fn params(&self) -> &'a [(String, String)] {
        self.params
    }

    /// The route template, e.g. `/chat/{room}`.
    pub fn route(&self) -> &'a str {
        self.route
    }

    /// The client's address (see [`new`](Self::new)).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection is `wss://` (TLS terminated by wssd).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The subprotocols the client offered, in its order, across every
    /// `Sec-WebSocket-Protocol` header line.
    pub fn offered_subprotocols(&self) -> Vec<&'a str> {
        offered_subprotocols(self.headers())
    }
}

/// Decodes a query-string component: `+` is a space, then `%XX` escapes.
fn decode_form(s: &str) -> Option<String> {
    percent_decode(&s.replace('+', " "))
}

/// Splits one `Cookie` header value into `(name, value)` pairs.
///
/// RFC 6265 §5.4: `name=value` pairs separated by `;` and optional spaces.
/// Pairs without `=` or with an empty name are skipped, as browsers and
/// most servers do, rather than refusing the whole header.
pub fn parse_cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!name.is_empty()).then_some((name, value))
    })
}

/// A small value the handshake hook attaches to a connection, readable in
/// every later callback through [`Conn::value`](crate::Conn::value).
///
/// Any `Send + Sync + 'static` type fits (a user id, a struct of claims);
/// it is read back by type. It is an `Arc` so that the connection's
/// [`ConnInfo`](crate::ConnInfo) stays cheap to clone; values are only
/// read, never shared between connections by wssd.
#[derive(Clone, Default)]
pub struct ConnValue(Option<Arc<dyn Any + Send + Sync>>);

impl ConnValue {
    /// No value (the default).
    pub fn none() -> Self {
        ConnValue(None)
    }

    /// Wraps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        ConnValue(Some(Arc::new(value)))
    }

    /// The value, if there is one of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref::<T>())
    }

    /// Whether a value is set.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for ConnValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("ConnValue(None)"),
            Some(_) => f.write_str("ConnValue(..)"),
        }
    }
}

/// The handshake hook's answer.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Open the WebSocket.
    Accept {
        /// The subprotocol to select; `None` keeps what the route's
        /// `subprotocols` list selected. It must be one the client offered.
        subprotocol: Option<String>,
        /// Extra headers for the 101 response (e.g. `Set-Cookie`).
        headers: Vec<(String, String)>,
        /// The per-connection value later callbacks read.
        value: ConnValue,
    },
    /// Refuse with an HTTP response; the connection is then closed.
    Reject {
        /// The HTTP status: 400 to 599 (anything else is sent as 500).
        status: u16,
        /// Extra headers, e.g. `WWW-Authenticate`, `Retry-After`.
        headers: Vec<(String, String)>,
        /// A short plain-text body (cut to [`MAX_REJECT_BODY`] bytes).
        body: String,
    },
}

impl Default for Decision {
    fn default() -> Self {
        Decision::accept()
    }
}

impl Decision {
    /// Accept, as wssd does without a hook.
    pub fn accept() -> Self {
        Decision::Accept {
            subprotocol: None,
            headers: Vec::new(),
            value: ConnValue::none(),
        }
    }

    /// Reject with `status` (e.g. 401, 403, 429) and no body.
    pub fn reject(status: u16) -> Self {
        Decision::Reject {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// 401 with a `WWW-Authenticate: CHALLENGE` header (e.g. `Bearer`).
    pub fn unauthorized(challenge: &str) -> Self {
        Decision::reject(401).with_header("WWW-Authenticate", challenge)
    }

    /// 429 with `Retry-After` in whole seconds (at least 1).
    pub fn too_many_requests(retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Decision::reject(429).with_header("Retry-After", secs.max(1).to_string())
    }

    /// Adds a response header (to the 101 or the rejection).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        match &mut self {
            Decision::Accept { headers, .. } | Decision::Reject { headers, .. } => {
                headers.push((name.into(), value.into()))
            }
        }
        self
    }

    /// Selects `protocol` (accept only; ignored on a rejection).
    #[must_use]
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        if let Decision::Accept { subprotocol, .. } = &mut self {
            *subprotocol = Some(protocol.into());
        }
        self
    }

    /// Attaches the per-connection value (accept only).
    #[must_use]
    pub fn with_value<T: Any + Send + Sync>(mut self, v: T) -> Self {
        if let Decision::Accept { value, .. } = &mut self {
            *value = ConnValue::new(v);
        }
        self
    }

    /// Sets the body of a rejection (ignored on accept).
    #[must_use]
    pub fn with_body(mut self, text: impl Into<String>) -> Self {
        if let Decision::Reject { body, .. } = &mut self {
            *body = text.into();
        }
        self
    }
}

/// The subprotocols offered in a request's `Sec-WebSocket-Protocol`
/// headers (`(name, value)` pairs): comma-separated tokens, across every
/// header line, in order.
pub fn offered_subprotocols<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Vec<&'h str> {
    headers
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// The first of the server's `preferred` subprotocols (in the server's
/// order) that the client `offered`. Names compare exactly (RFC 6455
/// tokens are case-sensitive).
pub fn select_subprotocol<'p>(preferred: &'p [String], offered: &[&str]) -> Option<&'p str> {
    preferred
        .iter()
        .find(|p| offered.contains(&p.as_str()))
        .map(String::as_str)
}

/// Applies a route's `subprotocols` list and `subprotocol_required` flag
/// to the request's headers (`(name, value)` pairs): the selected
/// subprotocol, or 400 when one is required and none of the route's was
/// offered.
pub fn negotiate_subprotocol<'h>(
    preferred: &[String],
    required: bool,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Option<String>, Reject> {
    if preferred.is_empty() {
        // Nothing to select, nothing to require (most routes).
        return Ok(None);
    }
    let offered = offered_subprotocols(headers);
    match select_subprotocol(preferred, &offered) {
        Some(p) => Ok(Some(p.to_string())),
        None if required => Err(Reject::BadRequest(format!(
            "this route requires a subprotocol: offer one of {} in Sec-WebSocket-Protocol",
            preferred.join(", ")
        ))),
        None => Ok(None),
    }
}

/// What the worker does after the hook: the response bytes, and for an
/// accepted connection its subprotocol and value.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send the 101 and open the connection.
    Open {
        /// The complete 101 response.
        response: Vec<u8>,
        /// The selected subprotocol.
        subprotocol: Option<String>,
        /// The hook's per-connection value.
        value: ConnValue,
    },
    /// Send this response and close.
    Refuse {
        /// The complete error response.
        response: Vec<u8>,
        /// Its status, for the log and the figures.
        status: u16,
    },
}

/// Combines the route's negotiated subprotocol with the hook's decision
/// into the bytes to send. `key` is the client's `Sec-WebSocket-Key`,
/// `headers` the request's `(name, value)` pairs.
///
/// A hook that selects a subprotocol the client did not offer is a bug in
/// the handler (the client would fail the handshake, RFC 6455 §4.1): the
/// request is refused with 500 and the reason logged.
pub fn conclude<'h>(
    key: &str,
    negotiated: Option<String>,
    extensions: Option<&str>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    decision: Decision,
) -> Outcome {
    match decision {
        Decision::Accept {
            subprotocol,
            headers: extra,
            value,
        } => {
            let selected = match subprotocol {
                None => negotiated,
                Some(p) => {
                    if !offered_subprotocols(headers).contains(&p.as_str()) {
                        log::error!(
                            "on_handshake selected subprotocol {p:?}, which the client did not offer; refusing with 500"
                        );
                        return Outcome::Refuse {
                            response: render_reject(
                                500,
                                &[],
                                "the server selected no usable subprotocol",
                            ),
                            status: 500,
                        };
                    }
                    Some(p)
                }
            };
            Outcome::Open {
                response: render_accept(key, selected.as_deref(), extensions, &extra),
                subprotocol: selected,
                value,
            }
        }
        Decision::Reject {
            status,
            headers,
            body,
        } => {
            let status = effective_status(status);
            Outcome::Refuse {
                response: render_reject(status, &headers, &body),
                status,
            }
        }
    }
}

/// The response to a connection refused by a per-address limit: 429 with
/// `Retry-After` (seconds, at least 1) for the connection cap and the
/// handshake rate, 503 with `Retry-After: 1` when the shared table is full.
pub fn refusal_response(refusal: &Refusal) -> (u16, Vec<u8>) {
    let (status, retry) = match refusal {
        Refusal::TooManyConnections { .. } => (429, 1),
        Refusal::RateLimited { retry_after } => (
            429,
            (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1),
        ),
        Refusal::TableFull => (503, 1),
    };
    let headers = [("Retry-After".to_string(), retry.to_string())];
    (
        status,
        render_reject(status, &headers, &format!("{refusal}\n")),
    )
}

/// `status` if it is an error status (400–599), else 500.
fn effective_status(status: u16) -> u16 {
    if (400..=599).contains(&status) {
        status
    } else {
        log::error!(
            "on_handshake rejected with status {status}, which is not 400-599; sending 500"
        );
        500
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> handshake::Request<'_> {
        handshake::parse_request(head.as_bytes(), 8192)
            .unwrap()
            .unwrap()
            .0
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_view_parses_query_cookies_and_protocols() {
        let req = request(
            "GET /chat/lobby?token=a%2Bb+c&x=1&token=second HTTP/1.1\r\nHost: h\r\n\
             Cookie: sid=abc; theme=\"dark\"\r\nCookie: junk; =nameless; lang=en\r\n\
             Sec-WebSocket-Protocol: chat.v1, chat.v2\r\nsec-websocket-protocol: mqtt\r\n\r\n",
        );
        let params = vec![("room".to_string(), "lobby".to_string())];
        let peer: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let view = HandshakeRequest::new(&req, "/chat/{room}", &params, peer, false)
            .with_selected_subprotocol(Some("chat.v1"));
        assert_eq!(view.selected_subprotocol(), Some("chat.v1"));
        assert_eq!(view.method(), "GET");
        assert_eq!(view.path(), "/chat/lobby");
        assert_eq!(view.query_param("token").as_deref(), Some("a+b c"));
        assert_eq!(view.query_param("missing"), None);
        assert_eq!(
            view.cookies(),
            vec![("sid", "abc"), ("theme", "dark"), ("lang", "en")]
        );
        assert_eq!(view.cookie("lang"), Some("en"));
        assert_eq!(view.cookie("SID"), None);
        assert_eq!(view.param("room"), Some("lobby"));
        assert_eq!(view.route(), "/chat/{room}");
        assert_eq!(view.peer_addr(), peer);
        assert!(!view.is_tls());
        assert_eq!(
            view.offered_subprotocols(),
            vec!["chat.v1", "chat.v2", "mqtt"]
        );
        assert_eq!(view.header_values("cookie").count(), 2);
    }

    #[test]
    fn subprotocols_follow_server_order() {
        let server = vec!["chat.v2".to_string(), "chat.v1".to_string()];
        assert_eq!(
            select_subprotocol(&server, &["chat.v1", "chat.v2"]),
            Some("chat.v2")
        );
        assert_eq!(select_subprotocol(&server, &["chat.v1"]), Some("chat.v1"));
        assert_eq!(select_subprotocol(&server, &["CHAT.V1"]), None);
        assert_eq!(select_subprotocol(&server, &[]), None);
    }

    #[test]
    fn required_subprotocol_refuses_with_400() {
        let server = vec!["chat.v2".to_string()];
        let none: [(&str, &str); 0] = [];
        let other = [("Sec-WebSocket-Protocol", "mqtt")];
        let good = [("Sec-WebSocket-Protocol", "mqtt, chat.v2")];
        assert_eq!(negotiate_subprotocol(&server, false, none), Ok(None));
        assert_eq!(negotiate_subprotocol(&server, false, other), Ok(None));
        let err = negotiate_subprotocol(&server, true, other).unwrap_err();
        assert_eq!(err.status().0, 400);
        assert!(err.to_string().contains("chat.v2"), "{err}");
        assert!(negotiate_subprotocol(&server, true, none).is_err());
        assert_eq!(
            negotiate_subprotocol(&server, true, good),
            Ok(Some("chat.v2".to_string()))
        );
        // No list on the route: nothing to require.
        assert_eq!(negotiate_subprotocol(&[], true, none), Ok(None));
    }

    #[test]
    fn rejections_render_status_headers_and_a_capped_body() {
        let d = Decision::unauthorized("Bearer realm=\"chat\"").with_body("token expired");
        let Outcome::Refuse { response, status } = conclude(KEY, None, None, [], d) else {
            panic!("not a refusal")
        };
        assert_eq!(status, 401);
        let r = text(response);
        assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
        assert!(
            r.contains("\r\nWWW-Authenticate: Bearer realm=\"chat\"\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nContent-Length: 13\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\ntoken expired"), "{r}");

        let r = text(render_reject(429, &[], &"é".repeat(1000)));
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body.len(), MAX_REJECT_BODY);
        assert!(r.contains(&format!("Content-Length: {MAX_REJECT_BODY}\r\n")));

        let d = Decision::too_many_requests(Duration::from_millis(1500));
        let Outcome::Refuse { response, .. } = conclude(KEY, None, None, [], d) else {
            panic!()
        };
        let r = text(response);
        assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
        assert!(r.contains("Retry-After: 2\r\n"), "{r}");
        assert!(r.contains("Content-Length: 0\r\n"), "{r}");
    }

    #[test]
    fn limit_refusals_are_429_or_503_with_retry_after() {
        let (status, r) = refusal_response(&Refusal::RateLimited {
            retry_after: Duration::from_millis(2100),
        });
        let r = text(r);
        assert_eq!(status, 429);
        assert!(
            r.starts_with("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n"),
            "{r}"
        );
        let (status, r) = refusal_response(&Refusal::TooManyConnections { max: 5 });
        assert_eq!(status, 429);
        assert!(text(r).contains("already has 5 connections"));
        let (status, r) = refusal_response(&Refusal::TableFull);
        assert_eq!(status, 503);
        assert!(text(r).contains("Retry-After: 1\r\n"));
    }

    #[test]
    fn odd_statuses_and_bad_headers_are_contained() {
        let d = Decision::reject(200)
            .with_header("X-Ok", "1")
            .with_header("Content-Length", "99")
            .with_header("X-Split", "a\r\nSet-Cookie: evil=1")
            .with_header("Bad Name", "x");
        let Outcome::Refuse { response, status } = conclude(KEY, None, None, [], d) else {
            panic!()
        };
        assert_eq!(status, 500);
        let r = text(response);
        assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
        assert!(r.contains("X-Ok: 1\r\n"));
        assert!(!r.contains("99"), "{r}");
        assert!(!r.contains("evil"), "{r}");
        assert!(!r.contains("Bad Name"), "{r}");
    }

    #[test]
    fn accept_carries_subprotocol_headers_and_value() {
        let offered = [("Sec-WebSocket-Protocol", "a, b")];
        let d = Decision::accept()
            .with_header("Set-Cookie", "seen=1")
            .with_value(42u64);
        let Outcome::Open {
            response,
            subprotocol,
            value,
        } = conclude(KEY, Some("b".into()), None, offered, d)
        else {
            panic!()
        };
        assert_eq!(subprotocol.as_deref(), Some("b"));
        assert_eq!(value.get::<u64>(), Some(&42));
        assert_eq!(value.get::<String>(), None);
        let r = text(response);
        assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{r}");
        assert!(r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Protocol: b\r\n"), "{r}");
        assert!(r.contains("\r\nSet-Cookie: seen=1\r\n"), "{r}");
        assert!(
            r.ends_with("\r\n\r\n") && !r.ends_with("\r\n\r\n\r\n"),
            "{r}"
        );

        // The hook may override the route's choice with another offered one...
        let d = Decision::accept().with_subprotocol("a");
        let Outcome::Open { subprotocol, .. } = conclude(KEY, Some("b".into()), None, offered, d)
        else {
            panic!()
        };
        assert_eq!(subprotocol.as_deref(), Some("a"));
        // ...but not with one the client did not offer.
        let d = Decision::accept().with_subprotocol("zzz");
        assert!(matches!(
            conclude(KEY, None, None, offered, d),
            Outcome::Refuse { status: 500, .. }
        ));
        // Without any subprotocol the 101 names none.
        let Outcome::Open { response, .. } = conclude(KEY, None, None, [], Decision::default())
        else {
            panic!()
        };
        assert!(!text(response).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn accept_names_the_accepted_extension_once_despite_the_hook() {
        let d = Decision::accept().with_header("Sec-WebSocket-Extensions", "x-evil");
        let answer = "permessage-deflate; server_no_context_takeover";
        let Outcome::Open { response, .. } = conclude(KEY, None, Some(answer), [], d) else {
            panic!()
        };
        let r = text(response);
        assert!(
            r.contains(&format!("\r\nSec-WebSocket-Extensions: {answer}\r\n")),
            "{r}"
        );
        assert_eq!(r.matches("Sec-WebSocket-Extensions").count(), 1, "{r}");
        assert!(
            r.ends_with("\r\n\r\n") && !r.ends_with("\r\n\r\n\r\n"),
            "{r}"
        );
    }
}
