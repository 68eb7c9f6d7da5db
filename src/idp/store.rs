//! What baton-idp remembers between requests: authorization codes, refresh-token families,
//! login sessions, sign-out confirmations waiting for a click, revocations, and the replay sets
//! of client-assertion `jti`s and one-time codes. The records are defined here; [`Memory`] keeps
//! them in the process, each kind bounded, and its methods are every operation the IdP performs
//! on them. The login failure counters ([`super::throttle::Store`]) and the signing keys
//! ([`super::keys::Store`]) have stores of their own.
//!
//! Codes, refresh tokens and session cookies are stored under the SHA-256 of their value, so
//! the store holds nothing a client could present.

mod memory;

pub use memory::{CODES_BUDGET, LOGOUTS_BUDGET, Memory};

use super::authn::Authentication;
use super::revocation::Lineage;
use std::sync::{Arc, Mutex, MutexGuard};

/// A code issued at `/login`, bound to client, redirect URI and PKCE challenge (RFC 7636 §4.4).
#[derive(Debug)]
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
    pub(crate) used: bool,
    /// The grant family of the tokens issued from this code, revoked if it is replayed
    /// (RFC 6749 §4.1.2).
    pub(crate) family: Option<FamilyRef>,
}

/// The shared state of one chain of rotated refresh tokens.
#[derive(Debug)]
pub struct Family {
    /// The `grant_id` of every token issued in this family.
    pub(crate) id: String,
    /// The hash of the only refresh token that works; `None` once the family is revoked.
    pub(crate) current: Option<[u8; 32]>,
}

impl Family {
    /// The `grant_id` its tokens carry.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A family shared by its tokens and its code.
pub type FamilyRef = Arc<Mutex<Family>>;

/// Locks a family; a panic elsewhere while it was held leaves its data usable.
pub(crate) fn lock(f: &Mutex<Family>) -> MutexGuard<'_, Family> {
    f.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A refresh token's server-side record. Rotated tokens stay stored (until their expiry) so that
/// their reuse is recognised.
#[derive(Debug)]
pub struct RefreshGrant {
    pub(crate) client: String,
    pub(crate) auth: Authentication,
    /// The scope originally granted; a refresh may ask for less, never more.
    pub(crate) scope: Vec<String>,
    /// RFC 8707 resource URIs originally granted; a refresh may narrow them.
    pub(crate) resources: Vec<String>,
    /// The earlier of the refresh lifetime and the sign-in's end (`lifetimes.sign_in`).
    pub(crate) expires_at: u64,
    pub(crate) family: FamilyRef,
}

impl RefreshGrant {
    /// Where the grant's tokens come from: its sign-in and `family`.
    pub(crate) fn lineage<'a>(&'a self, family: &'a Family) -> Lineage<'a> {
        self.auth.lineage(Some(&family.id))
    }
}

/// How long a sign-out confirmation page stays valid, in seconds.
pub const LOGOUT_SECS: u64 = 600;

/// Where the browser goes once signed out: a validated redirect with `state`, or a page.
#[derive(Debug, Clone)]
pub struct After {
    /// The registered `post_logout_redirect_uri` and the `state` to send it.
    pub(crate) redirect: Option<(String, Option<String>)>,
    /// Why a `post_logout_redirect_uri` that was sent is not used.
    pub(crate) note: Option<&'static str>,
}

/// A sign-out waiting for the user's confirmation.
#[derive(Debug)]
pub struct PendingLogout {
    /// SHA-256 of the confirmation cookie (and the form's `csrf`) the page was shown with.
    pub(crate) browser: [u8; 32],
    /// The session (its store key) the page was shown to, when the cookie came.
    pub(crate) session: Option<[u8; 32]>,
    pub(crate) after: After,
}

impl PendingLogout {
    /// Its weight in the store's budget: the struct, its key and what it holds on the heap.
    pub(crate) fn weight(&self, id: &str) -> u32 {
        let heap = self.after.redirect.as_ref().map_or(0, |(uri, state)| {
            uri.len() + state.as_ref().map_or(0, String::len)
        });
        let bytes = std::mem::size_of::<Self>() + id.len() + heap + 64;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}
