//! The in-process store: one moka cache per kind of record, each bounded in entries or bytes
//! and expiring with what it holds, plus the in-memory [`revocation::Memory`]. Each operation
//! that must be atomic holds the lock of the record it changes.

use super::{Code, CodeGrant, Consume, Refresh, RefreshGrant, Rotation};
use crate::idp::authn::{Authentication, Session};
use crate::idp::config::Lifetimes;
use crate::idp::revocation::{self, Revocations, Root};
use crate::idp::totp;
use crate::jwt::{MAX_LEEWAY, unix_now};
use moka::sync::Cache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes the codes store may hold. A code needs a signed-in user, but a session gets codes
/// without a password check, so the store is weighed, not counted; the oldest go first.
pub const CODES_BUDGET: u64 = 16 << 20;

/// Most entries of each store counted in entries.
const ENTRIES: u64 = 1_000_000;

/// Every record of the IdP, in bounded caches.
pub struct Memory {
    codes: Cache<[u8; 32], Arc<Mutex<Code>>>,
    refresh: Cache<[u8; 32], Arc<RefreshGrant>>,
    /// Family id → the hash of its only working refresh token (`None` once revoked).
    families: Cache<String, Arc<Mutex<Option<[u8; 32]>>>>,
    sessions: Cache<[u8; 32], Session>,
    /// Client-assertion `client\0jti` → its `exp`, kept until the assertion expires.
    assertion_jtis: Cache<String, u64>,
    /// `user:step` of one-time codes already used (RFC 6238 §5.2: once per step).
    otp_used: Cache<String, ()>,
    /// DPoP proofs seen at the token endpoint (RFC 9449 §11.1), bounded in all and per key.
    dpop: crate::dpop::Replay,
    /// Revoked sessions and grant families (what sign-out, refresh reuse and code replay end).
    revocations: Box<dyn Revocations>,
}

impl Memory {
    /// Stores whose records live as long as `l` lets what they stand for live; at most
    /// `proofs_per_key` live DPoP proofs of one key.
    pub fn new(l: &Lifetimes, proofs_per_key: usize) -> Self {
        let ttl = |s: u64| Duration::from_secs(s.max(1));
        Self {
            codes: Cache::builder()
                .max_capacity(CODES_BUDGET)
                .weigher(|_, grant| code_weight(grant))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(ttl(l.code + l.access.max(l.id)))
                .build(),
            refresh: counted(l.refresh),
            families: counted(l.refresh),
            sessions: counted(l.session),
            assertion_jtis: Cache::builder()
                .max_capacity(ENTRIES)
                .expire_after(UntilExp)
                .build(),
            otp_used: counted(4 * totp::STEP),
            dpop: crate::dpop::Replay::new(crate::dpop::DEFAULT_REPLAY_CAPACITY, proofs_per_key),
            revocations: Box::new(revocation::Memory::new(
                l.sign_in + MAX_LEEWAY,
                revocation::PER_USER,
            )),
        }
    }

    // === codes ===

    /// Keeps a code's grant under the hash of the code.
    pub fn put_code(&self, key: [u8; 32], grant: CodeGrant) {
        let code = Code {
            grant,
            used: false,
            family: None,
        };
        self.codes.insert(key, Arc::new(Mutex::new(code)));
    }

    /// The code under `key`, used or not.
    pub fn code(&self, key: &[u8; 32]) -> Option<Code> {
        let entry = self.codes.get(key)?;
        let code = lock(&entry).clone();
        Some(code)
    }

    /// Marks the code used for `family` unless it already is (under the code's lock).
    pub fn consume_code(&self, key: &[u8; 32], family: &str) -> Consume {
        let Some(entry) = self.codes.get(key) else {
            return Consume::Lost(None);
        };
        let mut code = lock(&entry);
        if code.used {
            return Consume::Lost(code.family.clone());
        }
        code.used = true;
        code.family = Some(family.to_owned());
        Consume::Won
    }

    // === refresh families ===

    /// Starts a family whose only working token is `key`.
    pub fn start_family(&self, key: [u8; 32], grant: RefreshGrant) {
        let family = grant.family.clone();
        self.refresh.insert(key, Arc::new(grant));
        self.families
            .insert(family, Arc::new(Mutex::new(Some(key))));
    }

    /// A refresh token's record and its family's current token.
    pub fn refresh(&self, key: &[u8; 32]) -> Option<Refresh> {
        let grant = self.refresh.get(key)?;
        let current = self.families.get(&grant.family).and_then(|f| *lock(&f));
        Some(Refresh {
            grant: (*grant).clone(),
            current,
        })
    }

    /// Rotates `old` to `next` under the family's lock, or finds `old` reused and revokes.
    pub fn rotate(
        &self,
        old: &[u8; 32],
        next: [u8; 32],
        grant: RefreshGrant,
        now: u64,
    ) -> Rotation {
        let Some(family) = self.families.get(&grant.family) else {
            return Rotation::Gone;
        };
        let mut current = lock(&family);
        match *current {
            Some(c) if c == *old => {
                self.refresh.insert(next, Arc::new(grant));
                *current = Some(next);
                Rotation::Rotated
            }
            Some(c) => {
                self.refresh.invalidate(&c);
                *current = None;
                self.revocations.revoke(
                    &grant.auth.user,
                    Root::Grant(&grant.family),
                    grant.auth.auth_time,
                    now,
                );
                Rotation::Reused
            }
            None => Rotation::Gone,
        }
    }

    /// Revokes a family: drops its current token and records the revocation.
    pub fn revoke_family(&self, family: &str, auth: &Authentication, now: u64) -> bool {
        let had = self.families.get(family).and_then(|f| lock(&f).take());
        if let Some(k) = had {
            self.refresh.invalidate(&k);
        }
        self.revocations
            .revoke(&auth.user, Root::Grant(family), auth.auth_time, now);
        had.is_some()
    }

    // === login sessions ===

    /// Keeps (or replaces) the session under the hash of its cookie.
    pub fn put_session(&self, key: [u8; 32], session: Session) {
        self.sessions.insert(key, session);
    }

    /// The session under the hash of a cookie.
    pub fn session(&self, key: &[u8; 32]) -> Option<Session> {
        self.sessions.get(key)
    }

    /// Forgets a session and revokes its `sid`.
    pub fn end_session(&self, key: &[u8; 32], session: &Session, now: u64) {
        self.sessions.invalidate(key);
        self.revocations.revoke(
            &session.user,
            Root::Session(&session.sid),
            session.auth_time(),
            now,
        );
    }

    // === replay sets ===

    /// Records a client assertion's `key` (client and `jti`) until its `exp`; whether this is
    /// its first use. One atomic check-and-insert: two concurrent uses cannot both be first.
    pub fn first_assertion_use(&self, key: String, exp: u64) -> bool {
        self.assertion_jtis.entry(key).or_insert(exp).is_fresh()
    }

    /// Records a one-time code's `user:step`; whether this is its first use (atomic, as above).
    pub fn first_otp_use(&self, key: String) -> bool {
        self.otp_used.entry(key).or_insert(()).is_fresh()
    }

    /// Records a DPoP proof (`jkt`, `jti`) until `until`: refused when seen before or when
    /// the store, or the key's share of it, is full of live proofs.
    pub fn first_dpop_use(
        &self,
        jkt: &str,
        jti: &str,
        until: u64,
        now: u64,
    ) -> Result<(), crate::dpop::ProofError> {
        self.dpop.first_use(jkt, jti, until, now)
    }

    /// Entries held by its caches (codes, refresh tokens, families, sessions, assertion and
    /// one-time-code uses), after pending evictions ran.
    pub fn records(&self) -> u64 {
        self.codes.run_pending_tasks();
        self.refresh.run_pending_tasks();
        self.families.run_pending_tasks();
        self.sessions.run_pending_tasks();
        self.assertion_jtis.run_pending_tasks();
        self.otp_used.run_pending_tasks();
        self.codes.entry_count()
            + self.refresh.entry_count()
            + self.families.entry_count()
            + self.sessions.entry_count()
            + self.assertion_jtis.entry_count()
            + self.otp_used.entry_count()
    }

    // === revocations ===

    /// The revocation store.
    pub fn revocations(&self) -> &dyn Revocations {
        self.revocations.as_ref()
    }
}

/// Locks a record; a panic elsewhere while it was held leaves its data usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cache of at most [`ENTRIES`], each kept `life` seconds (at least one).
fn counted<K, V>(life: u64) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(ENTRIES)
        .time_to_live(Duration::from_secs(life.max(1)))
        .build()
}

/// About the bytes a stored code holds: its strings plus the entry's fixed cost. A code whose
/// lock is held (being redeemed) weighs the most a capped request can.
fn code_weight(code: &Arc<Mutex<Code>>) -> u32 {
    let Ok(c) = code.try_lock() else {
        return 8 << 10;
    };
    let g = &c.grant;
    let a = &g.auth;
    let lists = g.scope.iter().chain(&g.resources).chain(&a.amr);
    let strings: usize = [&g.client, &g.redirect_uri, &g.challenge, &a.user, &a.acr]
        .into_iter()
        .chain(lists)
        .chain(g.nonce.iter())
        .chain(a.sid.iter())
        .map(String::len)
        .sum();
    let entries = g.scope.len() + g.resources.len() + a.amr.len();
    u32::try_from(512 + 24 * entries + strings).unwrap_or(u32::MAX)
}

/// Expires a client-assertion `jti` when the assertion itself expires (value = its `exp`).
struct UntilExp;

impl moka::Expiry<String, u64> for UntilExp {
    fn expire_after_create(&self, _k: &String, exp: &u64, _at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(
            exp.saturating_sub(unix_now()) + MAX_LEEWAY,
        ))
    }
}
