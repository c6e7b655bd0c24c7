//! Address sets (`exempt`, `trusted_proxies`) and the grouping of client
//! addresses into the keys that limits count.
//!
//! CIDR parsing and matching is `ipnet`'s (the ecosystem's standard crate
//! for it: parses both families, prefix lengths, host bits); this module
//! adds the set and the IPv4-mapped IPv6 handling wssd needs.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// A list of networks; an address matches if any network contains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(Vec<IpNet>);

/// A CIDR entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" is not an address or network: write e.g. \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/32\"",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl CidrSet {
    /// Parses entries such as `10.0.0.0/8`, `2001:db8::/32`, or a single
    /// address (`127.0.0.1` = `/32`, `::1` = `/128`). Host bits after the
    /// prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<CidrSet, (usize, CidrError)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_net(e.as_ref()).map_err(|err| (i, err)))
            .collect::<Result<Vec<_>, _>>()
            .map(CidrSet)
    }

    /// Whether `addr` is in one of the networks. An IPv4-mapped IPv6
    /// address (`::ffff:10.0.0.1`, what a dual-stack socket reports) is
    /// matched as the IPv4 address it carries.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many networks the set has.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

fn parse_net(text: &str) -> Result<IpNet, CidrError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| CidrError(text.to_string()))
}

/// `addr`, with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The key per-IP limits count under: an IPv4 address as itself, an IPv6
/// address cut to its first `ipv6_prefix` bits (one customer usually
/// holds a whole /64, so counting single IPv6 addresses limits nothing).
/// Both families live in one 128-bit space: IPv4 as IPv4-mapped IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(pub u128);

impl IpKey {
    /// The key of `addr` with IPv6 grouped by `ipv6_prefix` (0–128).
    pub fn new(addr: IpAddr, ipv6_prefix: u8) -> IpKey {
        match canonical(addr) {
            IpAddr::V4(v4) => IpKey(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpKey(u128::from(v6) & mask)
            }
        }
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => write!(f, "{v4}"),
            None => write!(f, "{v6}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sets_match_networks_single_addresses_and_mapped_v4() {
        let set =
            CidrSet::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.2.3/8"]).unwrap();
        assert!(set.contains(ip("10.255.0.1")));
        assert!(set.contains(ip("192.0.2.7")));
        assert!(!set.contains(ip("192.0.2.8")));
        assert!(set.contains(ip("2001:db8:ffff::1")));
        assert!(!set.contains(ip("2001:db9::1")));
        assert!(set.contains(ip("::ffff:10.0.0.1")));
        assert!(!set.contains(ip("11.0.0.1")));
        assert!(CidrSet::default().is_empty());
    }

    #[test]
    fn bad_entries_are_named_with_their_index() {
        let (i, err) = CidrSet::parse(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert_eq!(i, 1);
        assert!(err.to_string().contains("10.0.0.0/33"));
        assert!(CidrSet::parse(&["localhost"]).is_err());
    }

    #[test]
    fn ipv6_is_grouped_by_prefix_and_v4_stays_exact() {
        let a = IpKey::new(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = IpKey::new(ip("2001:db8:1:2:bbbb::9"), 64);
        let c = IpKey::new(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_ne!(
            IpKey::new(ip("2001:db8::1"), 128),
            IpKey::new(ip("2001:db8::2"), 128)
        );
        assert_eq!(IpKey::new(ip("2001:db8::1"), 0), IpKey(0));
        let v4 = IpKey::new(ip("127.0.0.2"), 64);
        assert_ne!(v4, IpKey::new(ip("127.0.0.3"), 64));
        assert_eq!(v4, IpKey::new(ip("::ffff:127.0.0.2"), 64));
        assert_eq!(v4.to_string(), "127.0.0.2");
    }
}
