//! The `refresh_token` grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700
//! §4.14.2): only the newest token of a [`family`] works. A rotated-away
//! token presented again means one of two parties holds a stolen copy, so the whole family is
//! revoked and the caller gets `invalid_grant`. A family whose login session ended is refused
//! the same way. A narrower `scope` (RFC 6749 §6) or `resource` (RFC 8707 §2.2) narrows only
//! the access token issued now.

use crate::http::Form;
use crate::idp::config::Client;
use crate::idp::errors::OAuthError;
use crate::idp::issue::{UserGrant, user_tokens};
use crate::idp::state::Idp;
use crate::idp::store::{self, RefreshGrant};
use crate::idp::{family, targets};
use crate::secret::Token;
use serde_json::Value;
use tracing::warn;

/// Uses a refresh token: the token response with the family's next refresh token.
pub fn refresh(
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
    let grant = idp.store.refresh(&key).ok_or_else(bad)?;
    if grant.client != client.id {
        return Err(bad());
    }
    let mut family = store::lock(&grant.family);
    if family.current != Some(key) {
        if family.current.is_some() {
            family::revoke_locked(idp, &mut family, &grant.auth, now);
            idp.metrics.refresh_reuse();
            warn!(client_id = %client.id, token = %token, "refresh token reused; grant family revoked");
        }
        return Err(bad());
    }
    if grant.expires_at <= now || family::revoked(idp, &grant, &family, now) {
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
            grant_id: family.id(),
            scope: &scope,
            targets: &targets,
            nonce: None,
            jkt,
        },
        now,
    )?;
    // The rotated token keeps the original grant (RFC 6749 §6): a narrower request narrows only
    // this access token.
    let next = client.allows("refresh_token").then(|| RefreshGrant {
        client: grant.client.clone(),
        auth: grant.auth.clone(),
        scope: grant.scope.clone(),
        resources: grant.resources.clone(),
        expires_at: grant.expires_at,
        family: grant.family.clone(),
    });
    Ok(family::settle(idp, &mut family, issued, next))
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
