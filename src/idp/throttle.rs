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

pub use super::config::{Limits, Rule};
use super::store::counter::{Bounds, Store, released};
pub use super::store::counter::{Key, Kind, Record};
use super::store::{Postgres, StoreError};
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The client's address, put in each request's extensions by [`super::serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// The bounds a shared table keeps for `accounts` configured users (two factors each, and a
/// margin for users added by a reload).
pub fn bounds(limits: &Limits, accounts: usize) -> Bounds {
    Bounds {
        account: 2 * accounts as u64 + 16,
        unknown: limits.unknown_entries,
        device: limits.device_entries,
        network: limits.network_entries,
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

impl Counters {
    /// The counters that go with `store`: in memory (as `limits` says for `accounts` configured
    /// users), or in the same database.
    pub fn of(store: &super::store::Store, limits: &Limits, accounts: usize) -> Counters {
        match store {
            super::store::Store::Memory(_) => Counters::Memory(Memory::new(limits, accounts)),
            super::store::Store::Postgres(p) => Counters::Postgres(p.clone()),
        }
    }
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
