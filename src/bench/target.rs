//! The server under test: parsing and resolving the `ws://` or `wss://` URL.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed and resolved `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
    /// The host name or address as written (without IPv6 brackets): the
    /// TLS server name.
    pub host: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// The `Host` header value (host and port as written).
    pub host_header: String,
    /// The request path including any query, at least `/`.
    pub path: String,
}

/// Why a URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Neither a `ws://` nor a `wss://` URL.
    Scheme(String),
    /// Bad or missing host or port.
    Authority(String),
    /// The host does not resolve.
    Resolve(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(url) => {
                write!(
                    f,
                    "unsupported URL {url:?}: only ws:// or wss://HOST[:PORT][/PATH] is supported"
                )
            }
            UrlError::Authority(a) => write!(f, "bad host or port {a:?} in URL"),
            UrlError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
        }
    }
}

impl Target {
    /// Parses `ws[s]://host[:port][/path]` and resolves the host.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(UrlError::Scheme(url.to_string())),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve(format!("{host}: {e}")))?
            .min_by_key(|a| a.is_ipv6())
            .ok_or_else(|| UrlError::Resolve(format!("{host}: no address")))?;
        Ok(Target {
            tls,
            host,
            addr,
            host_header: authority.to_string(),
            path,
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the port defaults to `default`.
fn split_host_port(authority: &str, default: u16) -> Result<(String, u16), UrlError> {
    let bad = || UrlError::Authority(authority.to_string());
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => default,
        Some(p) => p.parse().map_err(|_| bad())?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://127.0.0.1:9001/chat?x=1").unwrap();
        assert_eq!(t.addr.port(), 9001);
        assert_eq!(t.path, "/chat?x=1");
        assert_eq!(t.host_header, "127.0.0.1:9001");
        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = Target::parse("ws://[::1]:5/").unwrap();
        assert!(t.addr.is_ipv6());
        let t = Target::parse("wss://localhost/x").unwrap();
        assert!(t.tls);
        assert_eq!((t.addr.port(), t.host.as_str()), (443, "localhost"));
        assert!(matches!(
            Target::parse("http://x/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("ws://h:x/"),
            Err(UrlError::Authority(_))
        ));
    }
}
