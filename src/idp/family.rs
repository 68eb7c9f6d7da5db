//! Refresh-token families (RFC 9700 §4.14.2). Every refresh token belongs to a grant family:
//! the chain of tokens rotated from one authorization code, named by the `grant_id` its access
//! tokens carry. Only the family's newest token works; minting the next one retires the
//! previous, in one store step that also recognises a reuse ([`Store::rotate`]). Revoking a
//! family drops its refresh token and, through [`revocation`](super::revocation), every access
//! token descending from it, exchanged ones included.
//!
//! [`Store::rotate`]: super::store::Store::rotate

use super::authn::Authentication;
use super::state::Idp;
use super::store::{RefreshGrant, Rotation, StoreError};
use crate::secret::Token;
use serde_json::json;
use tracing::info;

/// A new family id, for the tokens issued from one authorization code.
pub fn new_id() -> String {
    crate::secret::random_b64(16)
}

/// Starts the family of `grant` with a first refresh token, written into the token response.
pub(crate) async fn start(
    idp: &Idp,
    mut body: serde_json::Value,
    grant: RefreshGrant,
) -> Result<serde_json::Value, StoreError> {
    let token = Token::new(crate::secret::random_b64(32));
    idp.store.start_family(token.sha256(), grant).await?;
    body["refresh_token"] = json!(token.expose());
    Ok(body)
}

/// Rotates the family from `old` to a new token written into the token response.
pub(crate) async fn rotate(
    idp: &Idp,
    old: &[u8; 32],
    mut body: serde_json::Value,
    grant: RefreshGrant,
    now: u64,
) -> Result<(Rotation, serde_json::Value), StoreError> {
    let token = Token::new(crate::secret::random_b64(32));
    let rotation = idp.store.rotate(old, token.sha256(), grant, now).await?;
    body["refresh_token"] = json!(token.expose());
    Ok((rotation, body))
}

/// Revokes a family: its current refresh token and every token descending from it, for
/// `auth`'s user. Whether it still had a working token.
pub async fn revoke(
    idp: &Idp,
    family: &str,
    auth: &Authentication,
    now: u64,
) -> Result<bool, StoreError> {
    let had = idp.store.revoke_family(family, auth, now).await?;
    info!(grant_id = %family, "grant family revoked");
    Ok(had)
}

/// The grant of a refresh token that still works (RFC 7662 introspection).
pub async fn active(
    idp: &Idp,
    token: &Token,
    now: u64,
) -> Result<Option<RefreshGrant>, StoreError> {
    let key = token.sha256();
    let Some(r) = idp.store.refresh(&key).await? else {
        return Ok(None);
    };
    let live = r.current == Some(key)
        && r.grant.expires_at > now
        && !idp.store.is_revoked(&r.grant.lineage(), now).await?;
    Ok(live.then_some(r.grant))
}
