//! Refresh-token families (RFC 9700 §4.14.2). Every refresh token belongs to a grant
//! [`Family`]: the chain of tokens rotated from one authorization code, named by the `grant_id`
//! its access tokens carry. Only the family's newest token works; minting the next one retires
//! the previous. Revoking a family drops its refresh token and, through
//! [`revocation`](super::revocation), every access token descending from it, exchanged ones
//! included.

use super::authn::Authentication;
use super::revocation::Root;
use super::state::Idp;
use super::store::{self, Family, FamilyRef, RefreshGrant};
use crate::secret::Token;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing::info;

/// Starts a family for the tokens issued from one authorization code.
pub fn new() -> FamilyRef {
    Arc::new(Mutex::new(Family {
        id: crate::secret::random_b64(16),
        current: None,
    }))
}

/// Mints the family's next refresh token into the token response `body` when `grant` is given
/// (rotation: the previous one stops working). Runs under the family's lock, so two uses of one
/// refresh token cannot both rotate it.
pub(crate) fn settle(
    idp: &Idp,
    f: &mut Family,
    mut body: serde_json::Value,
    grant: Option<RefreshGrant>,
) -> serde_json::Value {
    if let Some(grant) = grant {
        let token = Token::new(crate::secret::random_b64(32));
        let key = token.sha256();
        idp.store.put_refresh(key, grant);
        f.current = Some(key);
        body["refresh_token"] = json!(token.expose());
    }
    body
}

/// Revokes a family: its current refresh token and every token descending from it, for
/// `auth`'s user.
pub fn revoke(idp: &Idp, family: &Mutex<Family>, auth: &Authentication, now: u64) {
    revoke_locked(idp, &mut store::lock(family), auth, now);
}

/// [`revoke`] with the family's lock already held.
pub(crate) fn revoke_locked(idp: &Idp, f: &mut Family, auth: &Authentication, now: u64) {
    if let Some(k) = f.current.take() {
        idp.store.drop_refresh(&k);
    }
    idp.store
        .revocations()
        .revoke(&auth.user, Root::Grant(&f.id), auth.auth_time, now);
    info!(grant_id = %f.id, "grant family revoked");
}

/// Whether the grant's session or family was revoked.
pub(crate) fn revoked(idp: &Idp, grant: &RefreshGrant, f: &Family, now: u64) -> bool {
    idp.store.revocations().is_revoked(&grant.lineage(f), now)
}

/// The grant of a refresh token that still works (RFC 7662 introspection).
pub fn active(idp: &Idp, token: &Token, now: u64) -> Option<Arc<RefreshGrant>> {
    let key = token.sha256();
    let grant = idp.store.refresh(&key)?;
    let family = store::lock(&grant.family);
    let live = family.current == Some(key)
        && grant.expires_at > now
        && !revoked(idp, &grant, &family, now);
    drop(family);
    live.then_some(grant)
}
