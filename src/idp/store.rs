//! What baton-idp remembers between requests: authorization codes, refresh-token families,
//! login sessions, sign-out confirmations waiting for a click, revocations, and the replay sets
//! of client-assertion `jti`s, DPoP proofs and one-time codes. The records are defined here; [`Store`] is
//! every operation the IdP performs on them, kept either in the process ([`Memory`], one
//! replica) or in PostgreSQL ([`Postgres`], shared by every replica). The login failure
//! counters ([`counter::Store`]) and the signing keys ([`super::keys::Store`]) have
//! stores of their own.
//!
//! Codes, refresh tokens and session cookies are stored under the SHA-256 of their value, so
//! the store holds nothing a client could present.
//!
//! Operations that must hold under concurrency (across replicas, for the database) are single
//! store operations: a code is consumed once ([`Store::consume_code`]), a refresh family is
//! rotated or found reused in one step ([`Store::rotate`]), a `jti`, a DPoP proof or a
//! one-time-code step is recorded if absent ([`Store::first_assertion_use`],
//! [`Store::first_dpop_use`], [`Store::first_otp_use`]).

pub mod counter;
pub mod keys;
mod memory;
pub mod postgres;

pub use memory::{CODES_BUDGET, Memory};
pub use postgres::Postgres;

use super::authn::{Authentication, Session};
use super::config::{Config, StoreConfig};
use super::revocation::{Lineage, Root};
use serde::{Deserialize, Serialize};

/// Why the store could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or the revocations copy is too old): retry shortly.
    #[error("the shared store is unavailable")]
    Unavailable,
    /// A record could not be read back: a bug or a foreign write; details are logged.
    #[error("a stored record is unreadable")]
    Corrupt,
}

/// A code issued at `/login`, bound to client, redirect URI and PKCE challenge (RFC 7636 §4.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub(crate) client: String,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) auth: Authentication,
    pub(crate) scope: Vec<String>,
    /// RFC 8707 resource URIs asked at `/authorize` (already checked against the client's edges).
    pub(crate) resources: Vec<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) expires_at: u64,
    /// `dpop_jkt` of the authorization request (RFC 9449 §10): the code is redeemed only with
    /// a proof of this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpop_jkt: Option<String>,
}

/// A stored code and whether it was redeemed.
#[derive(Debug, Clone)]
pub struct Code {
    pub(crate) grant: CodeGrant,
    /// Redeemed already: a replay.
    pub(crate) used: bool,
    /// The grant family of the tokens issued from this code, revoked if it is replayed
    /// (RFC 6749 §4.1.2).
    pub(crate) family: Option<String>,
}

/// Who won a code's redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consume {
    /// This request: the code is now used and names the family given.
    Won,
    /// Another request (or the code is gone): the family that one started, if any.
    Lost(Option<String>),
}

/// A refresh token's server-side record. Rotated tokens stay stored (until their expiry) so that
/// their reuse is recognised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub(crate) client: String,
    pub(crate) auth: Authentication,
    /// The scope originally granted; a refresh may ask for less, never more.
    pub(crate) scope: Vec<String>,
    /// RFC 8707 resource URIs originally granted; a refresh may narrow them.
    pub(crate) resources: Vec<String>,
    /// The earlier of the refresh lifetime and the sign-in's end (`lifetimes.sign_in`).
    pub(crate) expires_at: u64,
    /// The `grant_id` of every token of its family.
    pub(crate) family: String,
    /// RFC 7638 thumbprint of the DPoP key the family is bound to (RFC 9449 §5): set when the
    /// code was redeemed with a proof, and then every refresh needs a proof of that key. The
    /// database keeps it in the family's own column, not in the JSON.
    #[serde(skip)]
    pub(crate) jkt: Option<String>,
}

impl RefreshGrant {
    /// Where the grant's tokens come from: its sign-in and family.
    pub(crate) fn lineage(&self) -> Lineage<'_> {
        self.auth.lineage(Some(&self.family))
    }
}

/// A refresh token's record and the hash of its family's only working token (`None` once the
/// family is revoked or gone).
#[derive(Debug, Clone)]
pub struct Refresh {
    pub(crate) grant: RefreshGrant,
    pub(crate) current: Option<[u8; 32]>,
}

/// The outcome of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; the new one is.
    Rotated,
    /// The presented token was rotated away while the family lived: the family is now revoked.
    Reused,
    /// The family is revoked or expired.
    Gone,
}

/// Where the IdP keeps what it remembers: one replica's memory or the shared database.
// One per IdP, never moved after start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    /// In the process.
    Memory(Memory),
    /// In PostgreSQL (shared with the login throttle's counters).
    Postgres(std::sync::Arc<Postgres>),
}

/// Dispatches one operation to the store kept: `$m.$op($args)`, awaited for the database.
macro_rules! each {
    ($self:ident, $s:ident => $mem:expr, $pg:expr) => {
        match $self {
            Store::Memory($s) => $mem,
            Store::Postgres($s) => $pg,
        }
    };
}

impl Store {
    /// The store `cfg` names, for records living as long as `l` lets them. The database is not
    /// contacted yet: [`Store::prepare`] does, before the IdP serves.
    /// A shared table keeps at most `bounds` login failure counters.
    pub fn new(config: &Config, bounds: counter::Bounds) -> Result<Self, postgres::SetupError> {
        let l = &config.lifetimes;
        Ok(match &config.store {
            StoreConfig::Memory => Store::Memory(Memory::new(l, config.dpop.proofs_per_key)),
            StoreConfig::Postgres(pg) => {
                let p = Postgres::new(pg, l, bounds)?.with_dpop_share(config.dpop.proofs_per_key);
                Store::Postgres(std::sync::Arc::new(p))
            }
        })
    }

    /// Readies the store before serving: for the database, migrations under a lock, the schema
    /// version check and the first copy of the revocations.
    pub async fn prepare(&self) -> Result<(), postgres::SetupError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Postgres(p) => p.prepare().await,
        }
    }

    /// The database store, when that is where records live.
    pub fn postgres(&self) -> Option<&std::sync::Arc<Postgres>> {
        match self {
            Store::Memory(_) => None,
            Store::Postgres(p) => Some(p),
        }
    }

    /// The memory store, when that is where records live.
    pub fn memory(&self) -> Option<&Memory> {
        match self {
            Store::Memory(m) => Some(m),
            Store::Postgres(_) => None,
        }
    }

    /// Whether requests needing the store can be answered now (`/readyz`).
    pub fn ready(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Postgres(p) => p.ready(),
        }
    }

    /// Background upkeep until the task is dropped: for the database, the health probe, the
    /// revocations copy and the sweep of expired rows. The memory store expires by itself.
    pub async fn maintain(&self) {
        match self {
            Store::Memory(_) => std::future::pending().await,
            Store::Postgres(p) => p.maintain().await,
        }
    }

    // === codes ===

    /// Keeps a code's grant under the hash of the code.
    pub async fn put_code(&self, key: [u8; 32], grant: CodeGrant) -> Result<(), StoreError> {
        each!(self, m => {
            m.put_code(key, grant);
            Ok(())
        }, m.put_code(key, grant).await)
    }

    /// The code under `key`, used or not.
    pub async fn code(&self, key: &[u8; 32]) -> Result<Option<Code>, StoreError> {
        each!(self, m => Ok(m.code(key)), m.code(key).await)
    }

    /// Marks the code used by a redemption starting `family`, unless another redemption did:
    /// exactly one caller wins, wherever it runs.
    pub async fn consume_code(&self, key: &[u8; 32], family: &str) -> Result<Consume, StoreError> {
        each!(self, m => Ok(m.consume_code(key, family)), m.consume_code(key, family).await)
    }

    // === refresh families ===

    /// Starts a family whose only working token is `key`.
    pub async fn start_family(&self, key: [u8; 32], grant: RefreshGrant) -> Result<(), StoreError> {
        each!(self, m => {
            m.start_family(key, grant);
            Ok(())
        }, m.start_family(key, grant).await)
    }

    /// The record of a refresh token, current or rotated away, and its family's current token.
    pub async fn refresh(&self, key: &[u8; 32]) -> Result<Option<Refresh>, StoreError> {
        each!(self, m => Ok(m.refresh(key)), m.refresh(key).await)
    }

    /// In one step: when `old` is its family's current token, `next` becomes it; when the family
    /// has another current token, `old` was reused and the family is revoked.
    pub async fn rotate(
        &self,
        old: &[u8; 32],
        next: [u8; 32],
        grant: RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        each!(self, m => Ok(m.rotate(old, next, grant, now)), m.rotate(old, next, grant, now).await)
    }

    /// Revokes a family: its current token stops working and every token naming it is revoked.
    /// Whether it still had a current token.
    pub async fn revoke_family(
        &self,
        family: &str,
        auth: &Authentication,
        now: u64,
    ) -> Result<bool, StoreError> {
        each!(self, m => Ok(m.revoke_family(family, auth, now)), m.revoke_family(family, auth, now).await)
    }

    // === login sessions ===

    /// Keeps (or replaces) the session under the hash of its cookie.
    pub async fn put_session(&self, key: [u8; 32], session: &Session) -> Result<(), StoreError> {
        each!(self, m => {
            m.put_session(key, session.clone());
            Ok(())
        }, m.put_session(key, session).await)
    }

    /// The session under the hash of a cookie.
    pub async fn session(&self, key: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        each!(self, m => Ok(m.session(key)), m.session(key).await)
    }

    /// Forgets a session and revokes its `sid`.
    pub async fn end_session(
        &self,
        key: &[u8; 32],
        session: &Session,
        now: u64,
    ) -> Result<(), StoreError> {
        each!(self, m => {
            m.end_session(key, session, now);
            Ok(())
        }, m.end_session(key, session, now).await)
    }

    // === replay sets ===

    /// Records a client assertion's `key` (client and `jti`) until its `exp`; whether this is
    /// its first use. Atomic: two concurrent uses cannot both be first.
    pub async fn first_assertion_use(&self, key: String, exp: u64) -> Result<bool, StoreError> {
        each!(self, m => Ok(m.first_assertion_use(key, exp)), m.first_assertion_use(key, exp).await)
    }

    /// Records a one-time code's `user:step`; whether this is its first use (atomic, as above).
    pub async fn first_otp_use(&self, key: String) -> Result<bool, StoreError> {
        each!(self, m => Ok(m.first_otp_use(key)), m.first_otp_use(key).await)
    }

    /// Records a DPoP proof (`jkt`, `jti`) until `until` (RFC 9449 §11.1), wherever it was
    /// seen first: `Ok(Err(Replayed))` for a proof seen before, `Ok(Err(Busy))` when the key's
    /// share (or the memory store) is full of live proofs. Atomic, as above.
    pub async fn first_dpop_use(
        &self,
        jkt: &str,
        jti: &str,
        until: u64,
        now: u64,
    ) -> Result<Result<(), crate::dpop::ProofError>, StoreError> {
        each!(self, m => Ok(m.first_dpop_use(jkt, jti, until, now)), m.first_dpop_use(jkt, jti, until, now).await)
    }

    // === revocations ===

    /// Revokes every token descending from `root` (of `user`, who signed in at `auth_time`).
    pub async fn revoke(
        &self,
        user: &str,
        root: Root<'_>,
        auth_time: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        each!(self, m => {
            m.revocations().revoke(user, root, auth_time, now);
            Ok(())
        }, m.revoke(user, root, auth_time, now).await)
    }

    /// Whether anything `lineage` names is revoked, asked of the store itself: what a code
    /// redemption, a refresh, introspection and sign-in decisions use.
    pub async fn is_revoked(&self, lineage: &Lineage<'_>, now: u64) -> Result<bool, StoreError> {
        each!(self, m => Ok(m.revocations().is_revoked(lineage, now)), m.is_revoked(lineage, now).await)
    }

    /// [`Store::is_revoked`] answered from this replica's copy: the hot path of token exchange
    /// and `/userinfo`. The database's copy is at most `revocation_staleness` old (else
    /// [`StoreError::Unavailable`]); revocations made by this replica are in it at once.
    pub fn revoked_cached(&self, lineage: &Lineage<'_>, now: u64) -> Result<bool, StoreError> {
        each!(self, m => Ok(m.revocations().is_revoked(lineage, now)), m.revoked_cached(lineage, now))
    }
}
