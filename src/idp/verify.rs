//! The IdP's own tokens presented back to it: ID tokens as hints (`id_token_hint` at
//! `/authorize` and `/end_session`), and whether a token descends from a revoked sign-in or
//! grant (introspection, `/userinfo`, token exchange).

use super::revocation::Lineage;
use super::state::Idp;
use super::store::StoreError;
use crate::jwt::{self, Claims, Kind, Rules, VerifyError};

/// The claims of an ID token this IdP signed (our key, our `iss`, `typ` of an ID token), for
/// any audience and even expired: what `id_token_hint` needs at /authorize and end-session
/// (OIDC Core §3.1.2.1, RP-Initiated Logout 1.0 §2).
pub fn hint(idp: &Idp, token: &str, now: u64) -> Option<Claims> {
    let rules = Rules {
        audience: None,
        kind: Kind::Id,
        ..Rules::access(idp.config.issuer.clone(), String::new())
    };
    let keys = idp.keys();
    let verified = match jwt::verify(token, &keys.verify, &rules, now) {
        Err(VerifyError::Expired) => {
            let exp = jwt::peek_claims(token)?.get("exp")?.as_u64()?;
            jwt::verify(token, &keys.verify, &rules, exp).ok()?
        }
        other => other.ok()?,
    };
    Some(verified.claims)
}

/// The `sub` of an ID token this IdP issued ([`hint`]).
pub fn hint_subject(idp: &Idp, token: &str, now: u64) -> Option<String> {
    let claims = hint(idp, token, now)?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// Whether the token with these claims descends from a revoked root, from this replica's copy
/// of the revocations (token exchange, `/userinfo`: see [`Store::revoked_cached`]). A token
/// of no sign-in (`client_credentials`) needs no store.
///
/// [`Store::revoked_cached`]: super::store::Store::revoked_cached
pub fn revoked(idp: &Idp, claims: &Claims, now: u64) -> Result<bool, StoreError> {
    match Lineage::of(claims) {
        Some(l) => idp.store.revoked_cached(&l, now),
        None => Ok(false),
    }
}

/// [`revoked`] asked of the store itself (introspection).
pub async fn revoked_now(idp: &Idp, claims: &Claims, now: u64) -> Result<bool, StoreError> {
    match Lineage::of(claims) {
        Some(l) => idp.store.is_revoked(&l, now).await,
        None => Ok(false),
    }
}
