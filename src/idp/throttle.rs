//! Failure counters for the login pages (NIST SP 800-63B §5.2.2): every wrong password or
//! one-time code is counted against the account and the client's network, or, from a browser
//! the user already proved that factor in (the device cookie), against that browser alone. A
//! counter past
//! its free attempts makes the next attempt wait, twice as long after each further failure, up
//! to a cap; an attempt made during the wait is refused without being checked (and without
//! being counted). Each attempt is counted before it is checked, so concurrent attempts cannot
//! share one open window. The counters live outside any authorization request, so a fresh
//! `/authorize` resets nothing.
//!
//! Why three counters: the account counter bounds guessing from anywhere, but an attacker who
//! drives it up would also lock out the real user. A browser where that user already proved the
//! factor has its own counter instead, so the real user keeps signing in from their own browser
//! while strangers wait ([`Kind::Device`], OWASP's "device cookies"). The network counter bounds
//! one client spraying many accounts; sprayers have no device cookie for the accounts they try.
//!
//! Every store is bounded: counters of configured users are kept apart from those of unknown
//! usernames, so a flood of made-up names can evict only other made-up names, never a real
//! account's count. [`Store`] is the seam for a shared store: [`Counters`] keeps the counters
//! in memory or, with several replicas, in the shared database (see
//! [`super::store::Postgres`]).

use super::store::{Postgres, StoreError};
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The client's address, put in each request's extensions by [`super::serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// How one kind of counter throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Consecutive failures allowed without waiting.
    pub free: u32,
    /// The wait after the first failure past `free`, in seconds; it doubles with each failure.
    pub first_wait: u64,
    /// The longest wait, in seconds.
    pub max_wait: u64,
    /// A counter is forgotten this many seconds after its last failure.
    pub forget_after: u64,
}

impl Rule {
    /// Seconds that must pass after the last of `failures` consecutive failures before the next
    /// attempt is checked: 0 within the free attempts, then `first_wait · 2^k`, capped.
    pub fn wait(&self, failures: u32) -> u64 {
        let Some(past) = failures.checked_sub(self.free) else {
            return 0;
        };
        let doubled = self.first_wait.saturating_mul(1u64 << past.min(62));
        doubled.min(self.max_wait)
    }
}

/// The counters' rules and store sizes. The defaults are what `baton-idp` runs with; tests
/// change them through `Config::login`. A counter costs about 320 bytes in memory, so each
/// store of 10,000 holds at most about 3.2 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per account and factor, for browsers the user never signed in from (unknown usernames
    /// too, in their own store).
    pub account: Rule,
    /// Per trusted browser (device cookie) and factor.
    pub device: Rule,
    /// Per client network (an IPv4 address, an IPv6 /64), all accounts and factors together.
    pub network: Rule,
    /// Most counters kept for usernames that are not configured.
    pub unknown_entries: u64,
    /// Most counters kept for trusted browsers.
    pub device_entries: u64,
    /// Most counters kept for networks.
    pub network_entries: u64,
}

const DAY: u64 = 86_400;

impl Default for Limits {
    /// Ten free failures per account, then 1 s, 2 s, 4 s … up to one attempt a day: 100
    /// consecutive failures take more than 70 days, a year of guessing gets about 400 tries.
    fn default() -> Self {
        let account = Rule {
            free: 10,
            first_wait: 1,
            max_wait: DAY,
            forget_after: 7 * DAY,
        };
        Limits {
            account,
            device: account,
            network: Rule {
                free: 50,
                first_wait: 1,
                max_wait: 900,
                forget_after: 3_600,
            },
            unknown_entries: 10_000,
            device_entries: 10_000,
            network_entries: 10_000,
        }
    }
}

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

/// Where counters live. The in-memory [`Memory`] is the default; a store shared by several
/// replicas implements the same operations, `reserve` and `release` atomically per key.
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

/// The counters of this IdP: in memory, or in the shared database.
// One per IdP, never moved after start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Counters {
    /// In the process.
    Memory(Memory),
    /// In PostgreSQL, shared by every replica.
    Postgres(Arc<Postgres>),
}

impl Store for Counters {
    async fn reserve(
        &self,
        key: &Key,
        rule: &Rule,
        now: u64,
    ) -> Result<Result<Option<Record>, u64>, StoreError> {
        match self {
            Counters::Memory(m) => m.reserve(key, rule, now).await,
            Counters::Postgres(p) => p.reserve_attempt(key, rule, now).await,
        }
    }

    async fn release(&self, key: &Key, before: Option<Record>, now: u64) {
        match self {
            Counters::Memory(m) => m.release(key, before, now).await,
            Counters::Postgres(p) => p.release_attempt(key, before, now).await,
        }
    }

    async fn clear(&self, key: &Key) {
        match self {
            Counters::Memory(m) => m.clear(key).await,
            Counters::Postgres(p) => p.clear_attempts(key).await,
        }
    }
}

/// The in-memory store: one bounded cache per kind, each entry forgotten `forget_after`
/// seconds after its last failure.
pub struct Memory {
    accounts: Cache<[u8; 32], Record>,
    unknown: Cache<[u8; 32], Record>,
    devices: Cache<[u8; 32], Record>,
    networks: Cache<[u8; 32], Record>,
}

impl Memory {
    /// Stores sized by `limits`; `accounts` is the number of configured users (two factors
    /// each), which nothing a client sends can grow.
    pub fn new(limits: &Limits, accounts: usize) -> Memory {
        let cache = |entries: u64, rule: &Rule| {
            Cache::builder()
                .max_capacity(entries)
                .time_to_live(Duration::from_secs(rule.forget_after.max(1)))
                .build()
        };
        Memory {
            accounts: cache(2 * accounts as u64 + 16, &limits.account),
            unknown: cache(limits.unknown_entries, &limits.account),
            devices: cache(limits.device_entries, &limits.device),
            networks: cache(limits.network_entries, &limits.network),
        }
    }

    fn cache(&self, kind: Kind) -> &Cache<[u8; 32], Record> {
        match kind {
            Kind::Account => &self.accounts,
            Kind::UnknownAccount => &self.unknown,
            Kind::Device => &self.devices,
            Kind::Network => &self.networks,
        }
    }

    /// The counter under `key`, if any failure is remembered.
    pub fn get(&self, key: &Key) -> Option<Record> {
        self.cache(key.kind).get(&key.id)
    }

    /// Counters held per kind (after pending evictions ran): what tests bound.
    pub fn entries(&self, kind: Kind) -> u64 {
        let c = self.cache(kind);
        c.run_pending_tasks();
        c.entry_count()
    }
}

impl Store for Memory {
    async fn reserve(
        &self,
        key: &Key,
        rule: &Rule,
        now: u64,
    ) -> Result<Result<Option<Record>, u64>, StoreError> {
        Ok(self.reserve_now(key, rule, now))
    }

    async fn release(&self, key: &Key, before: Option<Record>, now: u64) {
        self.cache(key.kind)
            .entry(key.id)
            .and_compute_with(|current| {
                let Some(cur) = current.map(|e| e.into_value()) else {
                    return Op::Nop;
                };
                match released(cur, before, now) {
                    Some(r) => Op::Put(r),
                    None => Op::Remove,
                }
            });
    }

    async fn clear(&self, key: &Key) {
        self.cache(key.kind).invalidate(&key.id);
    }
}

impl Memory {
    fn reserve_now(&self, key: &Key, rule: &Rule, now: u64) -> Result<Option<Record>, u64> {
        let mut outcome = Err(0);
        self.cache(key.kind).entry(key.id).and_compute_with(|old| {
            let before = old.map(|e| e.into_value());
            if let Some(r) = before {
                let left = r.last.saturating_add(rule.wait(r.failures));
                if left > now {
                    outcome = Err(left - now);
                    return Op::Nop;
                }
            }
            outcome = Ok(before);
            Op::Put(Record {
                failures: before.map_or(0, |r| r.failures).saturating_add(1),
                last: now,
            })
        });
        outcome
    }
}

/// The login pages' throttle: rules plus a store.
pub struct Throttle<S = Memory> {
    limits: Limits,
    store: S,
}

impl Throttle<Memory> {
    /// An in-memory throttle for `accounts` configured users.
    pub fn new(limits: Limits, accounts: usize) -> Throttle {
        Throttle {
            store: Memory::new(&limits, accounts),
            limits,
        }
    }
}

impl<S: Store> Throttle<S> {
    /// A throttle keeping its counters in `store`.
    pub fn with_store(limits: Limits, store: S) -> Throttle<S> {
        Throttle { limits, store }
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Why an attempt may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A counter must wait this many seconds (at least one).
    Wait(u64),
    /// The counters cannot be reached (a shared store that is down).
    Unavailable,
}

impl<S: Store> Throttle<S> {
    fn rule(&self, kind: Kind) -> &Rule {
        match kind {
            Kind::Account | Kind::UnknownAccount => &self.limits.account,
            Kind::Device => &self.limits.device,
            Kind::Network => &self.limits.network,
        }
    }

    /// Starts an attempt counted under every key, as a failure until its outcome says
    /// otherwise; the seconds to wait when a key must wait (then nothing stays counted).
    pub async fn attempt(&self, keys: &[Key], now: u64) -> Result<Attempt<'_, S>, Refused> {
        let mut reserved = Vec::with_capacity(keys.len());
        for k in keys {
            let refused = match self.store.reserve(k, self.rule(k.kind), now).await {
                Ok(Ok(before)) => {
                    reserved.push((*k, before));
                    continue;
                }
                Ok(Err(wait)) => Refused::Wait(wait.max(1)),
                Err(_) => Refused::Unavailable,
            };
            for (k, before) in reserved {
                self.store.release(&k, before, now).await;
            }
            return Err(refused);
        }
        Ok(Attempt {
            throttle: self,
            reserved,
            now,
        })
    }

    /// The store, for tests that bound it.
    pub fn store(&self) -> &S {
        &self.store
    }
}

/// An attempt in progress: already counted as a failure.
#[must_use = "an attempt's outcome decides what stays counted"]
pub struct Attempt<'a, S: Store> {
    throttle: &'a Throttle<S>,
    reserved: Vec<(Key, Option<Record>)>,
    now: u64,
}

impl<S: Store> Attempt<'_, S> {
    /// The check failed: the failure stays counted.
    pub fn failed(self) {}

    /// The check passed: the run of consecutive failures of the account or browser that
    /// succeeded ends. The network's count only loses this attempt: one valid account must not
    /// let a client reset the count of its guesses at others.
    pub async fn succeeded(self) {
        for (k, before) in &self.reserved {
            match k.kind {
                Kind::Network => self.throttle.store.release(k, *before, self.now).await,
                _ => self.throttle.store.clear(k).await,
            }
        }
    }

    /// Nothing was checked (the password pool was busy): the attempt is not counted.
    pub async fn abandoned(self) {
        for (k, before) in &self.reserved {
            self.throttle.store.release(k, *before, self.now).await;
        }
    }
}

#[cfg(test)]
mod tests;
