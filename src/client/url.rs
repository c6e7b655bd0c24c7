//! Parsing of `ws://` and `wss://` URLs into the parts the client needs.

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
    /// Parses `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "expected ws://HOST[:PORT][/PATH] or wss://...".to_string())?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            other => return Err(format!("unsupported scheme {other:?}: use ws:// or wss://")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(end);
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(parse_userinfo(userinfo)?), hostport),
            None => (None, authority),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = parse_host_port(hostport, default_port)?;
        let resource = match resource.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{resource}"),
            Some(_) => resource.to_string(),
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

/// Parses `user[:password]`, percent-decoding both.
fn parse_userinfo(userinfo: &str) -> Result<(String, String), String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    Ok((percent_decode(user)?, percent_decode(password)?))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent escape in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("credentials in the URL are not UTF-8: {text:?}"))
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
