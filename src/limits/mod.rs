//! Per-address limits, as self-contained pieces for the worker's upgrade
//! step and the master: address sets and grouping ([`cidr`]), the
//! handshake token bucket ([`bucket`]), the table of counts every worker
//! shares ([`table`]), and the client address behind trusted proxies
//! ([`forwarded`]). The `[limits]` configuration table is parsed in
//! [`crate::config`] into these types.

pub mod bucket;
pub mod cidr;
pub mod forwarded;
pub mod table;

pub use bucket::Rate;
pub use cidr::{CidrSet, IpKey};
pub use forwarded::client_address;
pub use table::{IpTable, Policy, Refusal};
