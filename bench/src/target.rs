//! The server under test: the `ws://` or `wss://` URL, parsed with the
//! `url` crate and resolved.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use url::{Host, Url};

/// A parsed and resolved `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
    /// The host name or address (without IPv6 brackets): the TLS server
    /// name.
    pub host: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// The `Host` header value (host, and the port unless it is the
    /// scheme's default).
    pub host_header: String,
    /// The request path including any query, at least `/`.
    pub path: String,
}

/// Why a URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Neither a `ws://` nor a `wss://` URL.
    Scheme(String),
    /// Not a URL, or a bad or missing host or port.
    Authority(String),
    /// The host does not resolve.
    Resolve(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(url) => write!(
                f,
                "unsupported URL {url:?}: only ws:// or wss://HOST[:PORT][/PATH] is supported"
            ),
            UrlError::Authority(e) => write!(f, "bad URL: {e}"),
            UrlError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
        }
    }
}

impl Target {
    /// Parses `ws[s]://host[:port][/path][?query]` and resolves the host.
    pub fn parse(text: &str) -> Result<Target, UrlError> {
        let bad = |e: String| UrlError::Authority(format!("{text:?}: {e}"));
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            _ => return Err(UrlError::Scheme(text.to_string())),
        };
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host".into())),
        };
        // ws and wss are special schemes: `url` knows their default ports.
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("no port".into()))?;
        let host_str = url.host_str().unwrap_or(&host);
        let host_header = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve(format!("{host}: {e}")))?
            .min_by_key(|a| a.is_ipv6())
            .ok_or_else(|| UrlError::Resolve(format!("{host}: no address")))?;
        Ok(Target {
            tls,
            host,
            addr,
            host_header,
            path,
        })
    }
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
        let t = Target::parse("ws://127.0.0.1?q").unwrap();
        assert_eq!(t.path, "/?q");
        let t = Target::parse("ws://[::1]:5/").unwrap();
        assert!(t.addr.is_ipv6());
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:5")
        );
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
