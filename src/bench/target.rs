//! The server under test: parsing and resolving the `ws://` URL.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed and resolved `ws://` URL.
#[derive(Debug, Clone)]
pub struct Target {
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
    /// Not a `ws://` URL (`wss://` is not supported).
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
                    "unsupported URL {url:?}: only ws://HOST[:PORT][/PATH] is supported"
                )
            }
            UrlError::Authority(a) => write!(f, "bad host or port {a:?} in URL"),
            UrlError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
        }
    }
}

impl Target {
    /// Parses `ws://host[:port][/path]` and resolves the host.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| UrlError::Scheme(url.to_string()))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = split_host_port(authority)?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve(format!("{host}: {e}")))?
            .min_by_key(|a| a.is_ipv6())
            .ok_or_else(|| UrlError::Resolve(format!("{host}: no address")))?;
        Ok(Target {
            addr,
            host_header: authority.to_string(),
            path,
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the port defaults to 80.
fn split_host_port(authority: &str) -> Result<(String, u16), UrlError> {
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
        None => 80,
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
        assert!(matches!(
            Target::parse("wss://x/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("ws://h:x/"),
            Err(UrlError::Authority(_))
        ));
    }
}
