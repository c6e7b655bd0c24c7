//! The `[limits]` table (per-address admission limits).

use super::fields::{Errors, Fields};
use super::{defaults, ConfigError};
use crate::limits::{CidrSet, LimitsConfig, Rate};

pub(super) fn parse_limits(mut t: Fields<'_>) -> Result<LimitsConfig, ConfigError> {
    let max_connections_per_ip = t
        .integer("max_connections_per_ip", 1, i64::from(u32::MAX))?
        .map(|n| n as u32);
    let handshake_rate_per_ip = match t.string("handshake_rate_per_ip")? {
        None => None,
        Some(text) => Some(Rate::parse(&text).ok_or_else(|| {
            t.err(
                "handshake_rate_per_ip",
                format!("\"{text}\" is not a rate: write COUNT/PERIOD, e.g. \"20/s\", \"100/m\" or \"5/10s\""),
            )
        })?),
    };
    let burst = t
        .integer("handshake_burst", 1, 1_000_000)?
        .map(|n| n as u32);
    if burst.is_some() && handshake_rate_per_ip.is_none() {
        return Err(t.err(
            "handshake_burst",
            "is set but handshake_rate_per_ip is not: set the rate too, e.g. \"20/s\"",
        ));
    }
    // Default burst: one period's worth, so "20/s" allows 20 at once.
    let handshake_burst = burst.unwrap_or(handshake_rate_per_ip.map_or(0, |r| r.count));
    let ipv6_prefix = t
        .integer("ipv6_prefix", 1, 128)?
        .map_or(defaults::IPV6_PREFIX, |n| n as u8);
    let exempt = cidr_list(&mut t, "exempt")?;
    let trusted_proxies = cidr_list(&mut t, "trusted_proxies")?;
    let table_size = t
        .integer("table_size", 64, 1 << 24)?
        .map_or(defaults::LIMITS_TABLE_SIZE, |n| n as usize);
    let mut unknown = Errors::default();
    t.finish(&mut unknown);
    unknown.into_result(())?;
    Ok(LimitsConfig {
        max_connections_per_ip,
        handshake_rate_per_ip,
        handshake_burst,
        ipv6_prefix,
        exempt,
        trusted_proxies,
        table_size,
    })
}

pub(super) fn cidr_list(t: &mut Fields<'_>, name: &str) -> Result<CidrSet, ConfigError> {
    let list = t.string_list(name)?.unwrap_or_default();
    CidrSet::parse(&list).map_err(|(i, e)| t.err(&format!("{name}[{i}]"), e.to_string()))
}
