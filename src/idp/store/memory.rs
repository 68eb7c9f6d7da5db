//! The in-process store: one moka cache per kind of record, each bounded in entries or bytes
//! and expiring with what it holds, plus the in-memory [`revocation::Memory`].

use super::{CodeGrant, LOGOUT_SECS, PendingLogout, RefreshGrant};
use crate::idp::authn::Session;
use crate::idp::config::Lifetimes;
use crate::idp::revocation::{self, Revocations};
use crate::idp::totp;
use crate::jwt::{MAX_LEEWAY, unix_now};
use moka::sync::Cache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes the codes store may hold. A code needs a signed-in user, but a session gets codes
/// without a password check, so the store is weighed, not counted; the oldest go first.
pub const CODES_BUDGET: u64 = 16 << 20;

/// Bytes all pending sign-out confirmations may weigh together; past it the least used are
/// dropped (their users are asked to sign out again).
pub const LOGOUTS_BUDGET: u64 = 8 << 20;

/// Most entries of each store counted in entries.
const ENTRIES: u64 = 1_000_000;

/// Every record of the IdP, in bounded caches.
pub struct Memory {
    codes: Cache<[u8; 32], Arc<Mutex<CodeGrant>>>,
    refresh: Cache<[u8; 32], Arc<RefreshGrant>>,
    sessions: Cache<[u8; 32], Session>,
    logouts: Cache<String, Arc<PendingLogout>>,
    /// Client-assertion `client\0jti` → its `exp`, kept until the assertion expires.
    assertion_jtis: Cache<String, u64>,
    /// `user:step` of one-time codes already used (RFC 6238 §5.2: once per step).
    otp_used: Cache<String, ()>,
    /// Revoked sessions and grant families (what sign-out, refresh reuse and code replay end).
    revocations: Box<dyn Revocations>,
}

impl Memory {
    /// Stores whose records live as long as `l` lets what they stand for live.
    pub fn new(l: &Lifetimes) -> Self {
        let ttl = |s: u64| Duration::from_secs(s.max(1));
        Self {
            codes: Cache::builder()
                .max_capacity(CODES_BUDGET)
                .weigher(|_, grant| code_weight(grant))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(ttl(l.code + l.access.max(l.id)))
                .build(),
            refresh: counted(l.refresh),
            sessions: counted(l.session),
            logouts: Cache::builder()
                .weigher(|id: &String, p: &Arc<PendingLogout>| p.weight(id))
                .max_capacity(LOGOUTS_BUDGET)
                .time_to_live(Duration::from_secs(LOGOUT_SECS))
                .build(),
            assertion_jtis: Cache::builder()
                .max_capacity(ENTRIES)
                .expire_after(UntilExp)
                .build(),
            otp_used: counted(4 * totp::STEP),
            revocations: Box::new(revocation::Memory::new(
                l.sign_in + MAX_LEEWAY,
                revocation::PER_USER,
            )),
        }
    }

    // === codes ===

    /// Keeps a code's grant under the hash of the code.
    pub fn put_code(&self, key: [u8; 32], grant: CodeGrant) {
        self.codes.insert(key, Arc::new(Mutex::new(grant)));
    }

    /// The grant of a code, used or not; redeeming it holds its lock.
    pub fn code(&self, key: &[u8; 32]) -> Option<Arc<Mutex<CodeGrant>>> {
        self.codes.get(key)
    }

    // === refresh tokens ===

    /// Keeps a refresh token's grant under the hash of the token.
    pub fn put_refresh(&self, key: [u8; 32], grant: RefreshGrant) {
        self.refresh.insert(key, Arc::new(grant));
    }

    /// The grant of a refresh token, current or rotated away.
    pub fn refresh(&self, key: &[u8; 32]) -> Option<Arc<RefreshGrant>> {
        self.refresh.get(key)
    }

    /// Forgets a refresh token.
    pub fn drop_refresh(&self, key: &[u8; 32]) {
        self.refresh.invalidate(key);
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

    /// Forgets a session.
    pub fn drop_session(&self, key: &[u8; 32]) {
        self.sessions.invalidate(key);
    }

    // === sign-out confirmations ===

    /// Keeps a confirmation under the id its page carries, for [`LOGOUT_SECS`].
    pub fn put_logout(&self, id: String, pending: PendingLogout) {
        self.logouts.insert(id, Arc::new(pending));
    }

    /// Takes a confirmation out: each is used at most once.
    pub fn take_logout(&self, id: &str) -> Option<Arc<PendingLogout>> {
        self.logouts.remove(id)
    }

    /// Confirmations held and their weight in bytes, after pending evictions ran.
    #[cfg(test)]
    pub fn logouts_held(&self) -> (u64, u64) {
        self.logouts.run_pending_tasks();
        (self.logouts.entry_count(), self.logouts.weighted_size())
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

    // === revocations ===

    /// The revocation store.
    pub fn revocations(&self) -> &dyn Revocations {
        self.revocations.as_ref()
    }
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
fn code_weight(grant: &Arc<Mutex<CodeGrant>>) -> u32 {
    let Ok(g) = grant.try_lock() else {
        return 8 << 10;
    };
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
