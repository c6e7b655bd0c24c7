//! What the handshake hook sees of an upgrade request: a borrowed view of
//! the worker's parsed request, with its query, cookies and parameters
//! decoded on demand.

use std::net::SocketAddr;

use super::offered_subprotocols;
use crate::handshake;
use crate::route::percent_decode;

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
    /// (from [`negotiate_subprotocol`](super::negotiate_subprotocol)), for the hook to see.
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
