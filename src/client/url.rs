//! `ws://` and `wss://` URLs, parsed by the `url` crate, in the parts the
//! client needs; and the `HOST:PORT` of a proxy.

/// The parts of a WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsUrl {
    /// `true` for `wss://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    /// Port, explicit or the scheme's default (80 / 443).
    pub port: u16,
    /// Path and query string sent in the request line; starts with `/`.
    pub resource: String,
    /// `user:password` from the URL, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl WsUrl {
    /// Parses `url` (WHATWG rules, by the `url` crate); the error says
    /// what is wrong with it.
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let parsed = ::url::Url::parse(url).map_err(|e| match e {
            ::url::ParseError::RelativeUrlWithoutBase => {
                "expected ws://HOST[:PORT][/PATH] or wss://...".to_string()
            }
            ::url::ParseError::EmptyHost => "missing host name".to_string(),
            ::url::ParseError::InvalidPort => "invalid port: expected 1-65535".to_string(),
            other => other.to_string(),
        })?;
        let tls = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(format!("unsupported scheme {other:?}: use ws:// or wss://")),
        };
        let host = match parsed.host() {
            Some(::url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => return Err("missing host name".to_string()),
        };
        if host.is_empty() {
            return Err("missing host name".to_string());
        }
        let port = match parsed.port_or_known_default() {
            Some(0) | None => return Err("invalid port 0: expected 1-65535".to_string()),
            Some(port) => port,
        };
        let resource = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            Some((
                decode_userinfo(parsed.username())?,
                decode_userinfo(parsed.password().unwrap_or_default())?,
            ))
        };
        Ok(WsUrl {
            tls,
            host,
            port,
            resource,
            credentials,
        })
    }

    /// `host:port` with IPv6 literals in brackets (as used by CONNECT).
    pub fn authority(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.port)
    }

    /// The value of the `Host` header: the port only when not the default.
    pub fn host_header(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            bracketed(&self.host)
        } else {
            self.authority()
        }
    }

    /// The URL without credentials, as given to the handshake.
    pub fn request_uri(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.host_header(), self.resource)
    }
}

/// Puts an IPv6 literal in brackets; other hosts are returned unchanged.
pub(crate) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Splits `HOST[:PORT]` or `[V6]:PORT`; `default_port` when none is given.
pub(crate) fn parse_host_port(hostport: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in IPv6 address {hostport:?}"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after IPv6 address")),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(format!(
                    "IPv6 address {hostport:?} must be written in brackets: [ADDR]:PORT"
                ))
            }
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("missing host name".to_string());
    }
    let port = match port {
        None => default_port,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("invalid port {text:?}: expected 1-65535")),
        },
    };
    Ok((host.to_string(), port))
}

/// Percent-decodes a user name or password from the URL.
fn decode_userinfo(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| format!("credentials in the URL are not UTF-8: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_paths() {
        let url = WsUrl::parse("ws://example.com").unwrap();
        assert_eq!((url.tls, url.port, url.resource.as_str()), (false, 80, "/"));
        assert_eq!(url.request_uri(), "ws://example.com/");
        let url = WsUrl::parse("wss://example.com?x=1").unwrap();
        assert_eq!(
            (url.tls, url.port, url.resource.as_str()),
            (true, 443, "/?x=1")
        );
        let url = WsUrl::parse("WS://h:8080/a/b?c=d&e=f#frag").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("h", 8080));
        assert_eq!(url.resource, "/a/b?c=d&e=f");
        assert_eq!(url.host_header(), "h:8080");
    }

    #[test]
    fn ipv6_literals() {
        let url = WsUrl::parse("ws://[::1]:9001/x").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 9001));
        assert_eq!(url.authority(), "[::1]:9001");
        assert_eq!(url.request_uri(), "ws://[::1]:9001/x");
        let url = WsUrl::parse("wss://[fe80::1]").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("fe80::1", 443));
        assert_eq!(url.host_header(), "[fe80::1]");
        assert!(WsUrl::parse("ws://::1:80/").is_err());
        assert!(WsUrl::parse("ws://[::1/").is_err());
    }

    #[test]
    fn credentials_are_split_off() {
        let url = WsUrl::parse("ws://al%40ice:p%3Ass:w@host:81/p").unwrap();
        assert_eq!(url.credentials, Some(("al@ice".into(), "p:ss:w".into())));
        assert_eq!(url.request_uri(), "ws://host:81/p");
        let url = WsUrl::parse("ws://bob@host").unwrap();
        assert_eq!(url.credentials, Some(("bob".into(), String::new())));
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://x",
            "x",
            "ws://",
            "ws://h:0",
            "ws://h:99999",
            "ws://h:abc",
            "ws://u@/",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
