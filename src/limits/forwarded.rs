//! The client's address behind trusted proxies, from `X-Forwarded-For`.

use std::net::IpAddr;

use super::cidr::{canonical, CidrSet};

/// The address to treat as the client's.
///
/// A connection from an address outside `trusted` is its own client: its
/// `X-Forwarded-For` is ignored (anyone can send one). From a trusted
/// proxy, the `X-Forwarded-For` lists (every header line, comma-separated,
/// oldest hop first) are read from the right, skipping trusted proxies;
/// the first address that is not one is the client. Each proxy appends
/// the address it received from, so everything left of that point was
/// written by someone we do not trust.
///
/// If every listed hop is trusted, the leftmost is used. An entry that is
/// not an IP address (`unknown`, an obfuscated name, garbage) stops the
/// walk: the last trusted hop seen is used, since an address left of
/// garbage cannot be told apart from a forged one.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &CidrSet,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(addr) = parse_hop(hop) else {
            return client;
        };
        client = canonical(addr);
        if !trusted.contains(client) {
            return client;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), or a bracketed IPv6.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted() -> CidrSet {
        CidrSet::parse(&["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap()
    }

    #[test]
    fn untrusted_peers_are_their_own_client() {
        let got = client_address(ip("203.0.113.9"), ["1.2.3.4"], &trusted());
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        // client 198.51.100.7 forged "1.1.1.1", went through proxy 10.0.0.5
        // to the edge proxy 10.0.0.1 that connected to us.
        let xff = ["1.1.1.1, 198.51.100.7", "10.0.0.5"];
        assert_eq!(
            client_address(ip("10.0.0.1"), xff, &trusted()),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), ["2001:db8::1"], &trusted()),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(
                ip("10.0.0.1"),
                ["[2001:db8::2]:443", "192.0.2.1:80"],
                &trusted()
            ),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn all_trusted_missing_or_garbage() {
        assert_eq!(
            client_address(ip("10.0.0.1"), ["10.0.0.9, 10.0.0.8"], &trusted()),
            ip("10.0.0.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), std::iter::empty(), &trusted()),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_address(
                ip("10.0.0.1"),
                ["198.51.100.7, unknown, 10.0.0.2"],
                &trusted()
            ),
            ip("10.0.0.2")
        );
    }
}
