//! The `refresh_token` grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700
//! §4.14.2): only the newest token of a [`family`] works. A rotated-away
//! token presented again means one of two parties holds a stolen copy, so the whole family is
//! revoked and the caller gets `invalid_grant`. A family whose login session ended is refused
//! the same way. A narrower `scope` (RFC 6749 §6) or `resource` (RFC 8707 §2.2) narrows only
//! the access token issued now. A family started with a DPoP proof is bound to its key
//! (RFC 9449 §5): a refresh without a proof of that key is refused before it rotates anything.

use crate::http::Form;
use crate::idp::config::Client;
use crate::idp::errors::OAuthError;
use crate::idp::issue::{UserGrant, user_tokens};
use crate::idp::state::Idp;
use crate::idp::store::{Refresh, RefreshGrant, Rotation};
use crate::idp::{family, targets};
use crate::secret::Token;
use serde_json::Value;
use tracing::warn;

/// Uses a refresh token: the token response with the family's next refresh token.
pub async fn refresh(
    idp: &Idp,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let token = Token::new(
        form.one("refresh_token")?
            .ok_or_else(|| OAuthError::request("refresh_token required"))?,
    );
    let key = token.sha256();
    let Refresh { grant, current } = idp.store.refresh(&key).await?.ok_or_else(bad)?;
    if grant.client != client.id {
        return Err(bad());
    }
    // Before anything that rotates or revokes: without the key, the token does nothing.
    bound(&grant, jkt)?;
    if current != Some(key) {
        if current.is_some() && family::revoke(idp, &grant.family, &grant.auth, now).await? {
            reused(idp, client, &token);
        }
        return Err(bad());
    }
    if grant.expires_at <= now || idp.store.is_revoked(&grant.lineage(), now).await? {
        return Err(bad());
    }
    let scope = narrow_scope(&grant, form.one("scope")?)?;
    let resources = targets::narrow(&grant.resources, &form.all("resource"))?;
    let targets = targets::audiences(idp, client, &resources)?;
    let issued = user_tokens(
        idp,
        &UserGrant {
            client,
            auth: &grant.auth,
            grant_id: &grant.family,
            scope: &scope,
            targets: &targets,
            nonce: None,
            jkt,
        },
        now,
    )?;
    if !client.allows("refresh_token") {
        return Ok(issued);
    }
    // The rotated token keeps the original grant (RFC 6749 §6): a narrower request narrows only
    // this access token. Two concurrent uses of one token: one rotates, the other is a reuse.
    match family::rotate(idp, &key, issued, grant, now).await? {
        (Rotation::Rotated, body) => Ok(body),
        (Rotation::Reused, _) => {
            reused(idp, client, &token);
            Err(bad())
        }
        (Rotation::Gone, _) => Err(bad()),
    }
}

/// A family bound to a DPoP key (RFC 9449 §5) is refreshed only with a proof of that key.
fn bound(grant: &RefreshGrant, jkt: Option<&str>) -> Result<(), OAuthError> {
    match (&grant.jkt, jkt) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::InvalidDpopProof(
            "this refresh token is DPoP-bound: a proof of its key is required".into(),
        )),
        (Some(want), Some(got)) if want == got => Ok(()),
        (Some(_), Some(_)) => Err(crate::dpop::ProofError::Binding.into()),
    }
}

fn reused(idp: &Idp, client: &Client, token: &Token) {
    idp.metrics.refresh_reuse();
    warn!(client_id = %client.id, token = %token, "refresh token reused; grant family revoked");
}

fn bad() -> OAuthError {
    OAuthError::InvalidGrant("refresh token is invalid, expired or already used".into())
}

/// The scope asked (all of it granted before), or the whole granted scope when none is asked.
fn narrow_scope(grant: &RefreshGrant, asked: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(asked) = asked else {
        return Ok(grant.scope.clone());
    };
    let asked: Vec<String> = asked.split_ascii_whitespace().map(str::to_owned).collect();
    // Scope values are not echoed: client input, possibly a pasted token.
    if asked.iter().any(|a| !grant.scope.contains(a)) {
        return Err(OAuthError::InvalidScope(
            "a requested scope was not granted".into(),
        ));
    }
    Ok(asked)
}
