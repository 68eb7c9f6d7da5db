//! Exchanged-token cache: moka, key, TTL, single-flight.
//!
//! Keyed by SHA-256 over the subject token and the whole target (length-prefixed, so no two
//! inputs share an encoding). An entry lives until the issued token's `exp` minus a skew, never
//! past the subject's `exp`. Concurrent misses for one key wait on one IdP call (moka
//! `entry().or_try_insert_with`). The size is bounded: moka evicts, it never flushes. `invalid_*`
//! answers are remembered briefly so a bad token cannot hammer the IdP.

use super::{ExchangeError, Issued, Target};
use crate::jwt;
use crate::secret::constant_time_eq;
use moka::Expiry;
use moka::future::Cache as Moka;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SHA-256 cache key; holds no token material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

/// The key of `subject`, a subject token's bytes (or of the service's own identity when `None`),
/// for `target`.
pub fn key(subject: Option<&[u8]>, target: &Target) -> Key {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |tag: u8, value: Option<&[u8]>| {
        h.update(&[tag]);
        match value {
            None => h.update(&[0]),
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    };
    field(b's', subject);
    field(b'a', target.audience.as_deref().map(str::as_bytes));
    field(b'n', Some(&(target.resources.len() as u64).to_be_bytes()));
    for r in &target.resources {
        field(b'r', Some(r.as_bytes()));
    }
    field(b'c', target.scope.as_deref().map(str::as_bytes));
    field(
        b't',
        target.requested_token_type.as_deref().map(str::as_bytes),
    );
    let lifetime = target.requested_lifetime.map(u64::to_be_bytes);
    field(b'l', lifetime.as_ref().map(|l| &l[..]));
    let mut out = [0; 32];
    out.copy_from_slice(h.finish().as_ref());
    Key(out)
}

/// The key of the subject token one connection last sent, and the route it was for (numbered
/// within one outbound state, whose generation goes with it: after a reload the same number may
/// name another route, with another target, and must not find the old key): a
/// connection that sends the same token again (an app's keep-alive connection carrying one
/// user's calls) skips the SHA-256 over it. The token is compared in constant time, so a
/// connection shared by several callers learns nothing of another's token from the time a
/// request takes.
#[derive(Default)]
pub struct LastKey(Mutex<Option<Remembered>>);

/// A subject token's bytes, the route it was for and its key.
type Remembered = (Box<[u8]>, RouteId, Key);

/// A route: the generation of the outbound state it belongs to and its number there.
pub type RouteId = (u64, usize);

impl LastKey {
    /// [`key`] of `subject` for `target`, the target of route `route`; remembered for the
    /// connection's next request.
    pub fn key(&self, subject: Option<&[u8]>, route: RouteId, target: &Target) -> Key {
        let Some(subject) = subject else {
            return key(None, target);
        };
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, r, k)) = last.as_ref()
            && *r == route
            && constant_time_eq(token, subject)
        {
            return *k;
        }
        let k = key(Some(subject), target);
        *last = Some((subject.into(), route, k));
        k
    }
}

/// Seconds an issued token may be served from the cache at unix time `now`: its remaining life
/// minus `skew`, never past the subject's `exp`; 0 means "use once, do not keep".
pub fn ttl(now: u64, issued_exp: u64, subject_exp: Option<u64>, skew: u64) -> u64 {
    let by_issued = issued_exp.saturating_sub(skew).saturating_sub(now);
    match subject_exp {
        Some(exp) => by_issued.min(exp.saturating_sub(now)),
        None => by_issued,
    }
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Served from the cache.
    Hit,
    /// Fetched from the IdP by this call.
    Miss,
}

impl Lookup {
    /// `hit` or `miss`, for the audit log and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Token(Arc<Issued>, Duration),
    Refused(ExchangeError, Duration),
}

impl Entry {
    /// What a lookup that found this entry answers.
    fn answer(self, lookup: Lookup) -> Result<(Arc<Issued>, Lookup), ExchangeError> {
        match self {
            Entry::Token(issued, _) => Ok((issued, lookup)),
            Entry::Refused(e, _) => Err(e),
        }
    }
}

struct PerEntry;

impl Expiry<Key, Entry> for PerEntry {
    fn expire_after_create(&self, _: &Key, entry: &Entry, _: Instant) -> Option<Duration> {
        match entry {
            Entry::Token(_, ttl) | Entry::Refused(_, ttl) => Some(*ttl),
        }
    }
}

/// The exchanged-token cache of one sidecar.
#[derive(Clone)]
pub struct Cache {
    inner: Moka<Key, Entry>,
    skew: u64,
    negative_ttl: Duration,
}

impl Cache {
    /// A cache of at most `max_entries` tokens, serving each until `exp - skew` seconds.
    pub fn new(max_entries: u64, skew: u64, negative_ttl: u64) -> Self {
        let inner = Moka::builder()
            .max_capacity(max_entries)
            // LRU rather than TinyLFU admission: a fresh token is always kept, the stalest goes.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .expire_after(PerEntry)
            .build();
        Self {
            inner,
            skew,
            negative_ttl: Duration::from_secs(negative_ttl),
        }
    }

    /// The cached token for `key`, or the result of the future `fetch` makes (one call per key
    /// however many callers miss at once). `subject` bounds the entry's life by its `exp`.
    ///
    /// A hit awaits moka's lookup only. The miss path is boxed and `fetch` makes its future only
    /// there: an exchange's future (an HTTP client's) is kilobytes, and as a by-value argument it
    /// would size, and be copied into, every request's future, hits included.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: Key,
        subject: Option<&[u8]>,
        fetch: F,
    ) -> Result<(Arc<Issued>, Lookup), ExchangeError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Issued, ExchangeError>>,
    {
        if let Some(entry) = self.inner.get(&key).await {
            return entry.answer(Lookup::Hit);
        }
        // The miss path: moka runs one `fetch` per key, and callers that missed meanwhile get its
        // result (or an entry another caller inserted first, a hit).
        Box::pin(async move {
            let (skew, negative_ttl) = (self.skew, self.negative_ttl);
            let init = async move {
                match fetch().await {
                    Ok(issued) => {
                        // Decoded on a miss only: a hit costs a hash and a lookup.
                        let subject_exp = subject
                            .and_then(|t| jwt::peek_claims(std::str::from_utf8(t).ok()?))
                            .and_then(|c| c.get("exp").and_then(Value::as_u64));
                        let secs = ttl(jwt::unix_now(), issued.expires_at, subject_exp, skew);
                        Ok(Entry::Token(Arc::new(issued), Duration::from_secs(secs)))
                    }
                    Err(e) if e.is_invalid() => Ok(Entry::Refused(e, negative_ttl)),
                    Err(e) => Err(e),
                }
            };
            let entry = self
                .inner
                .entry(key)
                .or_try_insert_with(init)
                .await
                .map_err(|e: Arc<ExchangeError>| (*e).clone())?;
            let lookup = if entry.is_fresh() {
                Lookup::Miss
            } else {
                Lookup::Hit
            };
            entry.into_value().answer(lookup)
        })
        .await
    }

    /// Drops `key`, e.g. after the upstream said the token is `invalid_token`.
    pub async fn invalidate(&self, key: &Key) {
        self.inner.invalidate(key).await;
    }

    /// Entries currently held (approximate until pending work runs).
    pub async fn len(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.entry_count()
    }

    /// True when no entry is held.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests;
