//! The login throttle's counters as a store keeps them: what a counter is ([`Key`], [`Record`]),
//! the rule it is judged by ([`Rule`]), and the seam a store implements ([`Store`]): in memory
//! ([`crate::idp::throttle::Memory`]) or in the shared database ([`super::Postgres`]). The
//! policy that reads them is [`crate::idp::throttle`].

use super::StoreError;
use crate::idp::config::Rule;

/// Most counters a shared table keeps per kind: its sweep deletes the oldest beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Counters of configured accounts.
    pub account: u64,
    /// Counters of usernames that are not configured.
    pub unknown: u64,
    /// Counters of trusted browsers.
    pub device: u64,
    /// Counters of networks.
    pub network: u64,
}
use std::future::Future;
use std::net::IpAddr;

/// Which counter a [`Key`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A configured user, for browsers without their device cookie.
    Account,
    /// A username that is not configured: the same rule, a separate bounded store.
    UnknownAccount,
    /// A browser where the user proved this factor before.
    Device,
    /// A client network.
    Network,
}

impl Kind {
    /// Its name in a shared store.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::UnknownAccount => "unknown",
            Kind::Device => "device",
            Kind::Network => "network",
        }
    }
}

/// A counter's name: its kind and a SHA-256 of what it counts (fixed size whatever the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The counter's kind.
    pub kind: Kind,
    /// SHA-256 of the kind's label, the factor and the name.
    pub id: [u8; 32],
}

impl Key {
    fn new(kind: Kind, factor: &str, name: &[u8]) -> Key {
        let label = format!("{kind:?}\0{factor}\0");
        Key {
            kind,
            id: crate::secret::sha256(&[label.as_bytes(), name]),
        }
    }

    /// The account counter of `user` for `factor`; `known` says whether the user is configured.
    pub fn account(user: &str, factor: &str, known: bool) -> Key {
        let kind = if known {
            Kind::Account
        } else {
            Kind::UnknownAccount
        };
        Key::new(kind, factor, user.as_bytes())
    }

    /// The counter of the trusted browser `device` (its cookie's id) for `factor`.
    pub fn device(device: &str, factor: &str) -> Key {
        Key::new(Kind::Device, factor, device.as_bytes())
    }

    /// The counter of the network `ip` belongs to: the address itself for IPv4 (and
    /// IPv4-mapped IPv6), its /64 for IPv6, where one subscriber holds a whole /64.
    pub fn network(ip: Option<IpAddr>) -> Key {
        let name = match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
            Some(IpAddr::V6(v6)) => v6.octets()[..8].to_vec(),
            None => Vec::new(),
        };
        Key::new(Kind::Network, "", &name)
    }
}

/// A counter's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Consecutive failures.
    pub failures: u32,
    /// When the last one happened (unix seconds).
    pub last: u64,
}

/// Where counters live. The in-memory [`crate::idp::throttle::Memory`] is the default; a store
/// shared by several replicas implements the same operations, `reserve` and `release`
/// atomically per key.
pub trait Store: Send + Sync {
    /// If `rule` lets `key` try at `now`, counts the attempt as a failure at once and returns
    /// the record it replaced; else the seconds left to wait. Counting before the check is what
    /// stops a burst of concurrent attempts from all passing the same open window.
    fn reserve(
        &self,
        key: &Key,
        rule: &Rule,
        now: u64,
    ) -> impl Future<Output = Result<Result<Option<Record>, u64>, StoreError>> + Send;
    /// Takes back an attempt `reserve` counted: the record goes back to `before` when nothing
    /// else counted since, else loses one failure.
    fn release(
        &self,
        key: &Key,
        before: Option<Record>,
        now: u64,
    ) -> impl Future<Output = ()> + Send;
    /// Forgets the counter after a success.
    fn clear(&self, key: &Key) -> impl Future<Output = ()> + Send;
}

/// What [`Record`] `release` leaves when `cur` is held and `before` was replaced by the
/// reservation made at `now`: `before` again when nothing else counted since, else one failure
/// less; `None` removes the counter.
pub fn released(cur: Record, before: Option<Record>, now: u64) -> Option<Record> {
    let reserved = Record {
        failures: before.map_or(0, |r| r.failures).saturating_add(1),
        last: now,
    };
    match before {
        _ if cur != reserved => Some(Record {
            failures: cur.failures.saturating_sub(1),
            last: cur.last,
        }),
        b => b,
    }
}
