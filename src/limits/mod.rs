//! Per-address limits, as self-contained pieces for the worker's upgrade
//! step and the master: address sets and grouping ([`cidr`]), the
//! handshake token bucket ([`bucket`]), the table of counts every worker
//! shares ([`table`]), the client address behind trusted proxies
//! ([`forwarded`]), and [`Limiter`], which puts them together as the
//! `[limits]` table ([`LimitsConfig`]) describes.

pub mod bucket;
pub mod cidr;
pub mod forwarded;
pub mod table;

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

pub use bucket::Rate;
pub use cidr::{CidrSet, IpKey};
pub use forwarded::client_address;
pub use table::{IpTable, Policy, Refusal};

/// Settings of the `[limits]` table (all off by default); parsed and
/// validated by the `config` module (which imports this one, not the other way round).
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// Most connections open at once per address (group), across all
    /// workers.
    pub max_connections_per_ip: Option<u32>,
    /// Handshakes per address (group) per period, e.g. `"20/s"`.
    pub handshake_rate_per_ip: Option<Rate>,
    /// Handshakes an address may make at once before the rate applies.
    pub handshake_burst: u32,
    /// IPv6 addresses are counted per prefix of this many bits.
    pub ipv6_prefix: u8,
    /// Addresses no limit applies to.
    pub exempt: CidrSet,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: CidrSet,
    /// Slots of the shared per-address table.
    pub table_size: usize,
}

impl LimitsConfig {
    /// Whether any per-address limit is configured (else no table is
    /// needed).
    pub fn any(&self) -> bool {
        self.max_connections_per_ip.is_some() || self.handshake_rate_per_ip.is_some()
    }

    fn policy(&self) -> Policy {
        Policy {
            max_connections: self.max_connections_per_ip,
            rate: self
                .handshake_rate_per_ip
                .map(|r| (r, self.handshake_burst.max(1))),
        }
    }

    /// The limits in one line, for the log:
    /// `max_connections_per_ip = 5, handshake_rate_per_ip = 20/1s (burst 20), 1 exempt network`.
    pub fn describe(&self) -> String {
        let max = self
            .max_connections_per_ip
            .map_or_else(|| "none".to_string(), |m| m.to_string());
        let rate = self.handshake_rate_per_ip.map_or_else(
            || "none".to_string(),
            |r| format!("{r} (burst {})", self.handshake_burst.max(1)),
        );
        format!(
            "max_connections_per_ip = {max}, handshake_rate_per_ip = {rate}, {} exempt networks",
            self.exempt.len()
        )
    }
}

/// A connection counted by [`Limiter::admit`]; give it back to
/// [`Limiter::release`] when the connection ends (whatever the reason).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be released when its connection ends"]
pub struct Permit {
    key: IpKey,
}

/// The per-address limits of one generation of workers: made by the
/// master before it forks (the table must be mapped before the fork to be
/// shared), then used by every worker on its inherited copy.
///
/// A reload makes the next generation's limiter with
/// [`Limiter::reconfigure`]: new limits and exemptions over the same
/// table, so that connections of every generation are counted together.
#[derive(Debug)]
pub struct Limiter {
    table: Rc<IpTable>,
    policy: Policy,
    exempt: CidrSet,
    ipv6_prefix: u8,
    /// `table_size` as configured when the table was made.
    table_size: usize,
}

impl Limiter {
    /// Maps the shared table for `settings` with `owners` worker ids
    /// (see [`IpTable::new`]); `Ok(None)` when no limit is configured.
    pub fn new(settings: &LimitsConfig, owners: usize) -> nix::Result<Option<Limiter>> {
        if !settings.any() {
            return Ok(None);
        }
        Ok(Some(Limiter {
            table: Rc::new(IpTable::new(settings.table_size, owners)?),
            policy: settings.policy(),
            exempt: settings.exempt.clone(),
            ipv6_prefix: settings.ipv6_prefix,
            table_size: settings.table_size,
        }))
    }

    /// The limiter for a reloaded `[limits]` over this one's table: the
    /// limits (`max_connections_per_ip`, the handshake rate and burst)
    /// and `exempt` are the new ones; the counts and buckets carry on.
    /// Settings of the table itself cannot change without a new table,
    /// which would forget the connections open now: `ipv6_prefix` and
    /// `table_size` keep their values, and each one kept although the
    /// new settings differ is described in the returned list.
    ///
    /// With no limit left in `settings`, connections are still counted
    /// (nothing is refused), so that a later reload that sets limits
    /// again finds the counts exact.
    pub fn reconfigure(&self, settings: &LimitsConfig) -> (Limiter, Vec<String>) {
        let mut kept = Vec::new();
        if settings.ipv6_prefix != self.ipv6_prefix {
            kept.push(format!(
                "[limits] ipv6_prefix stays {} (the file says {}) until a restart: the shared table counts connections by it",
                self.ipv6_prefix, settings.ipv6_prefix
            ));
        }
        if settings.table_size != self.table_size {
            kept.push(format!(
                "[limits] table_size stays {} (the file says {}) until a restart: the shared table is mapped once",
                self.table_size, settings.table_size
            ));
        }
        let next = Limiter {
            table: Rc::clone(&self.table),
            policy: settings.policy(),
            exempt: settings.exempt.clone(),
            ipv6_prefix: self.ipv6_prefix,
            table_size: self.table_size,
        };
        (next, kept)
    }

    /// Admits a connection from `client` (the address after
    /// X-Forwarded-For / PROXY protocol resolution) for worker `owner`:
    /// `Ok(None)` for an exempt address (nothing counted), `Ok(Some)` with
    /// the permit to release later, or why it is refused.
    pub fn admit(
        &self,
        owner: usize,
        client: IpAddr,
        now: Instant,
    ) -> Result<Option<Permit>, Refusal> {
        if self.exempt.contains(client) {
            return Ok(None);
        }
        let key = IpKey::new(client, self.ipv6_prefix);
        match self.table.admit(owner, key, &self.policy, now) {
            Ok(()) => Ok(Some(Permit { key })),
            // Without a limit (a reload removed them) there is nothing to
            // keep by refusing: the connection goes uncounted.
            Err(Refusal::TableFull) if self.policy.is_none() => Ok(None),
            Err(refusal) => Err(refusal),
        }
    }

    /// How many owner ids (worker columns) the table has.
    pub fn owners(&self) -> usize {
        self.table.owners()
    }

    /// Forgets a connection admitted for `owner`.
    pub fn release(&self, owner: usize, permit: Permit) {
        self.table.release(owner, permit.key);
    }

    /// Forgets every connection of a dead worker (master side).
    pub fn forget_owner(&self, owner: usize) {
        self.table.forget_owner(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_sixth_connection_is_refused_but_others_and_exempt_go_on() {
        let settings = LimitsConfig {
            max_connections_per_ip: Some(5),
            ipv6_prefix: 64,
            exempt: CidrSet::parse(&["127.0.0.1/32"]).unwrap(),
            table_size: 1024,
            ..LimitsConfig::default()
        };
        let limiter = Limiter::new(&settings, 2).unwrap().unwrap();
        let now = Instant::now();
        let permits: Vec<Permit> = (0..5)
            .map(|i| limiter.admit(i % 2, ip("127.0.0.2"), now).unwrap().unwrap())
            .collect();
        assert_eq!(
            limiter.admit(0, ip("127.0.0.2"), now),
            Err(Refusal::TooManyConnections { max: 5 })
        );
        assert!(limiter.admit(0, ip("127.0.0.3"), now).unwrap().is_some());
        for _ in 0..10 {
            assert_eq!(limiter.admit(0, ip("127.0.0.1"), now), Ok(None));
        }
        let mut permits = permits.into_iter();
        limiter.release(0, permits.next().unwrap());
        assert!(limiter.admit(0, ip("127.0.0.2"), now).is_ok());
        // A /64 shares one count.
        for i in 1..=5 {
            let a = ip(&format!("2001:db8::{i}"));
            assert!(limiter.admit(1, a, now).is_ok());
        }
        assert!(limiter.admit(1, ip("2001:db8::ffff"), now).is_err());
        assert!(limiter.admit(1, ip("2001:db8:0:1::1"), now).is_ok());
    }

    #[test]
    fn a_reconfigured_limiter_counts_on_the_same_table() {
        let five = LimitsConfig {
            max_connections_per_ip: Some(5),
            ipv6_prefix: 64,
            table_size: 1024,
            ..LimitsConfig::default()
        };
        let old = Limiter::new(&five, 8).unwrap().unwrap();
        let now = Instant::now();
        let a = ip("127.0.0.2");
        let held: Vec<Permit> = (0..3)
            .map(|_| old.admit(0, a, now).unwrap().unwrap())
            .collect();
        // The next generation allows 4: one more, counting the old three.
        let four = LimitsConfig {
            max_connections_per_ip: Some(4),
            ipv6_prefix: 48,
            ..five.clone()
        };
        let (new, kept) = old.reconfigure(&four);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].contains("ipv6_prefix stays 64"), "{kept:?}");
        let fourth = new.admit(4, a, now).unwrap().unwrap();
        assert_eq!(
            new.admit(4, a, now),
            Err(Refusal::TooManyConnections { max: 4 })
        );
        // An old connection that ends gives its place to the new generation.
        let mut held = held.into_iter();
        old.release(0, held.next().unwrap());
        assert!(new.admit(5, a, now).is_ok());
        new.release(4, fourth);
        // A rate set by a reload starts with a full bucket for addresses
        // already in the table.
        let rate = LimitsConfig {
            handshake_rate_per_ip: Rate::parse("1/h"),
            handshake_burst: 2,
            ..LimitsConfig::default()
        };
        let (rated, _) = new.reconfigure(&LimitsConfig {
            ipv6_prefix: 64,
            table_size: 1024,
            ..rate
        });
        assert!(rated.admit(6, a, now).is_ok());
        assert!(rated.admit(6, a, now).is_ok());
        assert!(matches!(
            rated.admit(6, a, now),
            Err(Refusal::RateLimited { .. })
        ));
        // No limit left: counted, never refused.
        let (none, kept) = rated.reconfigure(&LimitsConfig {
            ipv6_prefix: 64,
            table_size: 1024,
            ..LimitsConfig::default()
        });
        assert!(kept.is_empty());
        for _ in 0..10 {
            assert!(none.admit(7, a, now).unwrap().is_some());
        }
    }

    #[test]
    fn no_limits_no_table() {
        assert!(Limiter::new(&LimitsConfig::default(), 1).unwrap().is_none());
    }
}
