//! [`ConnInfo`]: what is known about a connection from its upgrade
//! request, kept for the connection's whole life and so kept compactly.
//!
//! Every open connection holds one, so its size is most of what an idle
//! connection costs beyond the socket. The strings a handler can ask for
//! (route template, path, query, path parameters, request headers) live
//! back to back in one allocation with one small index beside it, instead
//! of a `String` per name and per value (each at least a 32-byte heap
//! chunk); the subprotocol and the handshake hook's value, rarely set,
//! sit behind one pointer that is null when neither is.

use std::fmt;
use std::iter::FusedIterator;
use std::net::SocketAddr;

use super::ConnId;
use crate::admission::ConnValue;

/// What is known about a connection from its upgrade request.
///
/// The request headers are kept without those that only carry the
/// upgrade and its negotiation (`Upgrade`, `Connection`,
/// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`,
/// `Sec-WebSocket-Extensions`): what was negotiated is on the connection
/// ([`compressed`](Self::compressed), [`subprotocol`](Self::subprotocol)).
#[derive(Clone)]
pub struct ConnInfo {
    /// The connection's id.
    pub id: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whether the connection negotiated permessage-deflate (messages
    /// reach the handler uncompressed either way).
    pub compressed: bool,
    request: RequestText,
    /// The subprotocol and the hook's value; `None` when neither is set.
    extra: Option<Box<Extra>>,
}

/// The rarely set parts of a [`ConnInfo`].
#[derive(Clone, Default)]
struct Extra {
    subprotocol: Option<Box<str>>,
    value: ConnValue,
}

/// The request's strings in one allocation: the route template, the
/// path, the query, then each parameter's name and value, then each
/// header's name and value; `ends[i]` is where piece `i` ends.
#[derive(Clone)]
struct RequestText {
    text: Box<str>,
    ends: Box<[u32]>,
    /// How many path parameters (the pairs after the query).
    params: u32,
}

/// Route, path and query come first.
const FIXED: usize = 3;

/// What a [`ConnInfo`] is built from: the request as the worker routed
/// and admitted it.
pub(crate) struct Request<'a, H> {
    /// The route template, e.g. `/chat/{room}`.
    pub route: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    /// The query without the `?`.
    pub query: &'a str,
    /// Path parameters, percent-decoded, in template order.
    pub params: &'a [(String, String)],
    /// The request headers to keep, in order.
    pub headers: H,
}

impl ConnInfo {
    /// A connection's info: `id` and `peer`, the request's strings,
    /// the subprotocol chosen in the handshake and the hook's value.
    pub(crate) fn new<'h, H>(
        id: ConnId,
        peer: SocketAddr,
        request: Request<'_, H>,
        subprotocol: Option<String>,
        value: ConnValue,
        compressed: bool,
    ) -> ConnInfo
    where
        H: Iterator<Item = (&'h str, &'h str)> + Clone,
    {
        let extra = (subprotocol.is_some() || value.is_some()).then(|| {
            Box::new(Extra {
                subprotocol: subprotocol.map(String::into_boxed_str),
                value,
            })
        });
        ConnInfo {
            id,
            peer,
            compressed,
            request: RequestText::new(request),
            extra,
        }
    }

    /// The request path (percent-encoded, as sent), without the query.
    pub fn path(&self) -> &str {
        self.request.piece(1)
    }

    /// The query string without the `?` (empty when absent).
    pub fn query(&self) -> &str {
        self.request.piece(2)
    }

    /// The route template the connection came in on, e.g. `/chat/{room}`.
    pub fn route(&self) -> &str {
        self.request.piece(0)
    }

    /// Path template parameters, percent-decoded, in template order.
    pub fn params(&self) -> Pairs<'_> {
        Pairs {
            text: &self.request,
            next: FIXED,
            end: FIXED + 2 * self.request.params as usize,
        }
    }

    /// The path parameter `name` (percent-decoded), e.g. `room`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The request headers in order, without those that only carry the
    /// upgrade (see the type's documentation).
    pub fn headers(&self) -> Pairs<'_> {
        Pairs {
            text: &self.request,
            next: FIXED + 2 * self.request.params as usize,
            end: self.request.ends.len(),
        }
    }

    /// The first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The subprotocol selected in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.extra.as_ref()?.subprotocol.as_deref()
    }

    /// The value [`Handler::on_handshake`](super::Handler::on_handshake)
    /// attached, if it is a `T`.
    pub fn value<T: std::any::Any>(&self) -> Option<&T> {
        self.extra.as_ref()?.value.get::<T>()
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("route", &self.route())
            .field("path", &self.path())
            .field("query", &self.query())
            .field("params", &self.params())
            .field("headers", &self.headers())
            .field("subprotocol", &self.subprotocol())
            .field("compressed", &self.compressed)
            .finish_non_exhaustive()
    }
}

impl RequestText {
    fn new<'h, H>(r: Request<'_, H>) -> RequestText
    where
        H: Iterator<Item = (&'h str, &'h str)> + Clone,
    {
        let fixed = [r.route, r.path, r.query];
        let params = r.params.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]);
        let headers = r.headers.flat_map(|(k, v)| [k, v]);
        let pieces = fixed.into_iter().chain(params).chain(headers);
        // One pass to size both allocations, one to fill them.
        let (len, count) = pieces
            .clone()
            .fold((0, 0), |(len, count), piece| (len + piece.len(), count + 1));
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(count);
        for piece in pieces {
            text.push_str(piece);
            // A request head is bounded by `max_request_head`, far below
            // 4 GiB; saturate rather than wrap if it ever were not.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        RequestText {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            params: u32::try_from(r.params.len()).unwrap_or(u32::MAX),
        }
    }

    /// Piece `i` (see the type).
    fn piece(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends[i] as usize;
        self.text.get(start..end).unwrap_or_default()
    }
}

/// Name and value pairs of a connection's request, in order: its headers
/// ([`ConnInfo::headers`]) or its path parameters ([`ConnInfo::params`]).
#[derive(Clone)]
pub struct Pairs<'a> {
    text: &'a RequestText,
    /// The piece of the next name.
    next: usize,
    /// One past the last piece.
    end: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next + 1 >= self.end {
            return None;
        }
        let pair = (self.text.piece(self.next), self.text.piece(self.next + 1));
        self.next += 2;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end.saturating_sub(self.next) / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Pairs<'_> {}
impl FusedIterator for Pairs<'_> {}

impl fmt::Debug for Pairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(params: &[(String, String)], headers: &[(&str, &str)]) -> ConnInfo {
        ConnInfo::new(
            ConnId(7),
            ([127, 0, 0, 1], 9).into(),
            Request {
                route: "/chat/{room}/{*rest}",
                path: "/chat/caf%C3%A9/a/b",
                query: "x=1&y=",
                params,
                headers: headers.iter().copied(),
            },
            None,
            ConnValue::none(),
            false,
        )
    }

    #[test]
    fn every_string_comes_back_as_it_went_in() {
        let params = vec![
            ("room".to_string(), "café".to_string()),
            ("rest".to_string(), "a/b".to_string()),
        ];
        let headers = [
            ("Host", "127.0.0.1:9"),
            ("X-Empty", ""),
            ("x-twice", "1"),
            ("X-Twice", "2"),
        ];
        let i = info(&params, &headers);
        assert_eq!(i.route(), "/chat/{room}/{*rest}");
        assert_eq!(i.path(), "/chat/caf%C3%A9/a/b");
        assert_eq!(i.query(), "x=1&y=");
        assert_eq!(
            i.params().collect::<Vec<_>>(),
            [("room", "café"), ("rest", "a/b")]
        );
        assert_eq!(i.params().len(), 2);
        assert_eq!(i.param("rest"), Some("a/b"));
        assert_eq!(i.param("nope"), None);
        assert_eq!(i.headers().collect::<Vec<_>>(), headers);
        assert_eq!(i.headers().len(), 4);
        assert_eq!(i.header("x-empty"), Some(""));
        assert_eq!(i.header("X-TWICE"), Some("1"), "the first of a name");
        assert_eq!(i.subprotocol(), None);
        assert_eq!(i.value::<u32>(), None);
    }

    #[test]
    fn nothing_at_all_is_fine() {
        let i = info(&[], &[]);
        assert_eq!(i.params().next(), None);
        assert_eq!(i.headers().next(), None);
        assert_eq!(i.query(), "x=1&y=");
    }

    #[test]
    fn the_subprotocol_and_value_are_kept_when_set() {
        let i = ConnInfo::new(
            ConnId(1),
            ([127, 0, 0, 1], 9).into(),
            Request {
                route: "/",
                path: "/",
                query: "",
                params: &[],
                headers: std::iter::empty(),
            },
            Some("chat.v2".into()),
            ConnValue::new(42u32),
            true,
        );
        assert_eq!(i.subprotocol(), Some("chat.v2"));
        assert_eq!(i.value::<u32>(), Some(&42));
        assert_eq!(i.value::<u64>(), None);
        assert!(i.compressed);
    }

    /// Every open connection holds a `ConnInfo` for its whole life (in
    /// its boxed session): its inline size is part of an idle
    /// connection's memory (docs/benchmarks.md, "Memory per idle
    /// connection"). It was 216 bytes with a `String` per piece.
    #[test]
    fn a_conn_info_stays_small() {
        assert!(
            std::mem::size_of::<ConnInfo>() <= 96,
            "{} bytes",
            std::mem::size_of::<ConnInfo>()
        );
    }
}
