//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a
//! load balancer sends before anything else on a connection, naming the
//! client it accepted.
//!
//! [`parse`] is a pure function over the bytes received so far, so it can
//! be called again as more arrive (the worker keeps the bytes in the
//! connection's request buffer): it answers [`Parsed::Incomplete`] until
//! the header is whole, then the header's length and addresses; bytes
//! after the header belong to the HTTP request (or TLS). Anything that
//! cannot become a valid header is an error at once, so a client that is
//! not the load balancer is closed without waiting for a timeout.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
/// Longest possible v2 header (16 fixed bytes and a 16-bit length). A
/// caller that buffers less (e.g. `max_request_head`) should refuse a
/// header whose announced length does not fit rather than wait for it.
pub const V2_MAX: usize = 16 + u16::MAX as usize;

/// The outcome of [`parse`] on the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a valid header: wait for more bytes.
    Incomplete,
    /// A whole header of `len` bytes.
    Done {
        /// The header's length; the connection's own bytes start here.
        len: usize,
        /// The client and the address it connected to, or `None` for a
        /// v2 `LOCAL` command (the proxy's own health check), v1
        /// `UNKNOWN`, or an address family other than TCP/UDP over IPv4
        /// or IPv6: then the connection's own peer address stands.
        addresses: Option<(SocketAddr, SocketAddr)>,
    },
}

/// Why the bytes are not a PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError(pub String);

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid PROXY protocol header ({}); with proxy_protocol = true every connection must start with one",
            self.0
        )
    }
}

impl std::error::Error for ProxyError {}

fn err(why: impl Into<String>) -> ProxyError {
    ProxyError(why.into())
}

/// Parses the header at the start of `buf` (see the module comment).
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    if buf[0] == V2_SIGNATURE[0] {
        parse_v2(buf)
    } else if buf[0] == b'P' {
        parse_v1(buf)
    } else {
        Err(err("neither \"PROXY \" nor the v2 signature"))
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(err("v1 header does not start with \"PROXY \""));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(err("v1 header longer than 107 bytes"));
        }
        if buf.contains(&b'\n') {
            return Err(err("v1 header line ends without CRLF"));
        }
        return Ok(Parsed::Incomplete);
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(err("v1 header longer than 107 bytes"));
    }
    let line =
        std::str::from_utf8(&buf[prefix.len()..end]).map_err(|_| err("v1 header is not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(Parsed::Done {
            len,
            addresses: None,
        }),
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *proto == "TCP6";
            let src = v1_addr(src, sport, v6)?;
            let dst = v1_addr(dst, dport, v6)?;
            Ok(Parsed::Done {
                len,
                addresses: Some((src, dst)),
            })
        }
        _ => Err(err(format!(
            "v1 header {line:?} is not \"TCP4|TCP6 SRC DST SPORT DPORT\""
        ))),
    }
}

fn v1_addr(ip: &str, port: &str, v6: bool) -> Result<SocketAddr, ProxyError> {
    let ip: IpAddr = if v6 {
        ip.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        ip.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| err(format!("v1 address {ip:?} is not valid")))?;
    // The spec forbids leading zeros and signs; `u16::from_str` takes "+1".
    if port.is_empty()
        || !port.bytes().all(|b| b.is_ascii_digit())
        || (port.len() > 1 && port.starts_with('0'))
    {
        return Err(err(format!("v1 port {port:?} is not valid")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| err(format!("v1 port {port:?} is not valid")))?;
    Ok(SocketAddr::new(ip, port))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(err("bad v2 signature"));
    }
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(err(format!("v2 header with version {version}")));
    }
    let family = buf[13];
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..len];
    match command {
        0 => Ok(Parsed::Done {
            len,
            addresses: None,
        }),
        1 => Ok(Parsed::Done {
            len,
            // Addresses first; TLVs (if any) follow and are skipped.
            addresses: v2_addresses(family, body)?,
        }),
        other => Err(err(format!(
            "v2 command {other} is neither LOCAL nor PROXY"
        ))),
    }
}

fn v2_addresses(family: u8, body: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyError> {
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match family >> 4 {
        // AF_INET with STREAM or DGRAM
        1 if matches!(family & 0x0f, 1 | 2) => {
            let a = body
                .get(..12)
                .ok_or_else(|| err("v2 IPv4 addresses need 12 bytes"))?;
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            Ok(Some((
                SocketAddr::new(ip(&a[0..4]), port(&a[8..10])),
                SocketAddr::new(ip(&a[4..8]), port(&a[10..12])),
            )))
        }
        // AF_INET6
        2 if matches!(family & 0x0f, 1 | 2) => {
            let a = body
                .get(..36)
                .ok_or_else(|| err("v2 IPv6 addresses need 36 bytes"))?;
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Ok(Some((
                SocketAddr::new(ip(&a[0..16]), port(&a[32..34])),
                SocketAddr::new(ip(&a[16..32]), port(&a[34..36])),
            )))
        }
        // AF_UNSPEC, AF_UNIX: no usable client address; keep the peer's.
        0 | 3 => Ok(None),
        _ => Err(err(format!(
            "v2 address family byte {family:#04x} is unknown"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_valid_and_every_prefix_incomplete() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        let want = Parsed::Done {
            len: 45,
            addresses: Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443"))),
        };
        assert_eq!(parse(h), Ok(want));
        for k in 0..45 {
            assert_eq!(parse(&h[..k]), Ok(Parsed::Incomplete), "prefix {k}");
        }
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(matches!(
            parse(h6),
            Ok(Parsed::Done { addresses: Some((s, _)), .. }) if s == sa("[2001:db8::1]:1")
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n"),
            Ok(Parsed::Done {
                len: 24,
                addresses: None
            })
        );
    }

    #[test]
    fn v1_garbage_is_an_error() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXX",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn v2_proxy_local_tlvs_and_truncation() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']); // a TLV, skipped
        let mut h = v2(1, 0x11, &body);
        let len = h.len();
        h.extend_from_slice(b"GET");
        assert_eq!(
            parse(&h),
            Ok(Parsed::Done {
                len,
                addresses: Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
            })
        );
        for k in 0..len {
            assert_eq!(parse(&h[..k]), Ok(Parsed::Incomplete), "prefix {k}");
        }
        let mut b6 = vec![0u8; 36];
        b6[15] = 1;
        b6[31] = 2;
        b6[33] = 7;
        assert!(matches!(
            parse(&v2(1, 0x21, &b6)),
            Ok(Parsed::Done { addresses: Some((s, _)), .. }) if s == sa("[::1]:7")
        ));
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Ok(Parsed::Done {
                len: 16,
                addresses: None
            })
        );
        assert_eq!(
            parse(&v2(1, 0x31, &[0u8; 216])),
            Ok(Parsed::Done {
                len: 232,
                addresses: None
            })
        );
    }

    #[test]
    fn v2_garbage_is_an_error() {
        let mut bad_sig = v2(1, 0x11, &[0; 12]);
        bad_sig[5] = b'X';
        assert!(parse(&bad_sig).is_err());
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert!(parse(&bad_version).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 5])).is_err());
        assert!(parse(&v2(1, 0x21, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x41, &[0; 12])).is_err());
    }
}
