//! The `authorization_code` grant (RFC 6749 §4.1.3 with RFC 7636 §4.6): the code is single-use
//! and bound to the client, the redirect URI and the S256 challenge; a replayed code revokes
//! what it issued (RFC 6749 §4.1.2), and a code whose login session ended is dead with it.
//! A code asked with `dpop_jkt` (RFC 9449 §10) needs a proof of that key.

use crate::http::Form;
use crate::idp::config::Client;
use crate::idp::errors::OAuthError;
use crate::idp::issue::{UserGrant, sign_in_ends, user_tokens};
use crate::idp::state::Idp;
use crate::idp::store::{CodeGrant, Consume, RefreshGrant};
use crate::idp::{family, targets};
use crate::secret::Token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tracing::info;

/// Redeems a code: the token response, with a refresh token when the client may refresh.
pub async fn authorization_code(
    idp: &Idp,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let code = Token::new(
        form.one("code")?
            .ok_or_else(|| OAuthError::request("code required"))?,
    );
    let redirect_uri = form
        .one("redirect_uri")?
        .ok_or_else(|| OAuthError::request("redirect_uri required"))?;
    let verifier = form
        .one("code_verifier")?
        .ok_or_else(|| OAuthError::InvalidGrant("code_verifier required (PKCE)".into()))?;
    let key = code.sha256();
    let stored = idp.store.code(&key).await?.ok_or_else(bad)?;
    if stored.used {
        return replayed(idp, &code, stored.family, &stored.grant, now).await;
    }
    let grant = stored.grant;
    check(idp, &grant, client, redirect_uri, verifier, now).await?;
    // Before the code is consumed: a request without the key burns nothing.
    bound(&grant, jkt)?;
    let resources = targets::narrow(&grant.resources, &form.all("resource"))?;
    let targets = targets::audiences(idp, client, &resources)?;
    // The family is the code's from the moment it is consumed: a replay revokes it even if
    // issuing fails. Exactly one redemption wins, wherever it runs.
    let family = family::new_id();
    match idp.store.consume_code(&key, &family).await? {
        Consume::Won => redeem(idp, client, &grant, &family, &targets, jkt, now).await,
        Consume::Lost(other) => replayed(idp, &code, other, &grant, now).await,
    }
}

/// A code used twice: the family its first redemption started is revoked (RFC 6749 §4.1.2).
async fn replayed(
    idp: &Idp,
    code: &Token,
    family: Option<String>,
    grant: &CodeGrant,
    now: u64,
) -> Result<Value, OAuthError> {
    if let Some(family) = family {
        family::revoke(idp, &family, &grant.auth, now).await?;
    }
    info!(code = %code, "authorization code replayed; derived tokens revoked");
    Err(bad())
}

fn bad() -> OAuthError {
    OAuthError::InvalidGrant("code is invalid, expired or already used".into())
}

/// The code is live, the client's, not revoked with its session, and the request repeats the
/// redirect URI and proves the PKCE challenge.
async fn check(
    idp: &Idp,
    grant: &CodeGrant,
    client: &Client,
    redirect_uri: &str,
    verifier: &str,
    now: u64,
) -> Result<(), OAuthError> {
    if grant.expires_at <= now
        || grant.client != client.id
        || idp.store.is_revoked(&grant.auth.lineage(None), now).await?
    {
        return Err(bad());
    }
    if grant.redirect_uri != redirect_uri {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri does not match the authorization request".into(),
        ));
    }
    if !verifier_ok(verifier, &grant.challenge) {
        return Err(OAuthError::InvalidGrant(
            "code_verifier does not match the code_challenge".into(),
        ));
    }
    Ok(())
}

/// A code asked with `dpop_jkt` (RFC 9449 §10) is redeemed only with a proof of that key.
fn bound(grant: &CodeGrant, jkt: Option<&str>) -> Result<(), OAuthError> {
    match (&grant.dpop_jkt, jkt) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::InvalidDpopProof(
            "the authorization request named a DPoP key: a proof of it is required".into(),
        )),
        (Some(want), Some(got)) if want == got => Ok(()),
        (Some(_), Some(_)) => Err(crate::dpop::ProofError::Binding.into()),
    }
}

/// Issues the tokens of a consumed code and starts its refresh family.
async fn redeem(
    idp: &Idp,
    client: &Client,
    grant: &CodeGrant,
    family: &str,
    targets: &[String],
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let issued = user_tokens(
        idp,
        &UserGrant {
            client,
            auth: &grant.auth,
            grant_id: family,
            scope: &grant.scope,
            targets,
            nonce: grant.nonce.as_deref(),
            jkt,
        },
        now,
    )?;
    if !client.allows("refresh_token") {
        return Ok(issued);
    }
    let next = RefreshGrant {
        client: client.id.clone(),
        auth: grant.auth.clone(),
        scope: grant.scope.clone(),
        resources: grant.resources.clone(),
        expires_at: (now + idp.config.lifetimes.refresh).min(sign_in_ends(idp, &grant.auth)),
        family: family.to_owned(),
        // Bound to the key that redeemed the code, whatever the client: a stolen refresh
        // token is then worthless without that key too (RFC 9449 §5).
        jkt: jkt.map(str::to_owned),
    };
    Ok(family::start(idp, issued, next).await?)
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge; the verifier is 43–128 unreserved
/// characters. The comparison takes the same time wherever the two differ.
pub fn verifier_ok(verifier: &str, challenge: &str) -> bool {
    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[verifier.as_bytes()]));
    shape && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_verifier_must_match_and_be_well_formed() {
        // challenge = BASE64URL(SHA256(verifier)), computed independently.
        let verifier = "dBjftJeZ4CVP-mJ92K0Q3ZzJmbFk0gHEGVz5HERYdho";
        let challenge = "eeZD3Eqp887Wwb2DQ0mDOksxNlplHtCSrlOgiQr26Fw";
        assert!(verifier_ok(verifier, challenge));
        assert!(!verifier_ok(
            "dBjftJeZ4CVP-mJ92K0Q3ZzJmbFk0gHEGVz5HERYdhO",
            challenge
        ));
        assert!(!verifier_ok(challenge, challenge), "plain is not accepted");
        assert!(!verifier_ok("short", challenge));
    }
}
