//! Issuing tokens: the claims every token carries, signing with the active key, and the user
//! token response of the code and refresh grants: the access token (RFC 9068 plus user claims,
//! `grants`, `acr`, `amr`, `auth_time`, and the lineage `sid` and `grant_id` that revocation
//! follows) and the ID token (OIDC Core §2). No user token outlives its sign-in
//! (`sign_in_ends`).

use super::authn::Authentication;
use super::config::Client;
use super::errors::OAuthError;
use super::revocation::{GRANT_ID, SID};
use super::state::Idp;
use super::{policy, targets};
use crate::jwt::Claims;
use serde_json::{Value, json};

/// iss, sub, client_id, iat, exp, fresh jti.
pub(crate) fn base_claims(idp: &Idp, sub: &str, client: &str, now: u64, lifetime: u64) -> Claims {
    let mut c = Claims::new();
    c.insert("iss".into(), json!(idp.config.issuer));
    c.insert("sub".into(), json!(sub));
    c.insert("client_id".into(), json!(client));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + lifetime));
    c.insert("jti".into(), json!(crate::secret::random_b64(16)));
    c
}

/// Signs with the active key; a failure is logged and answered `server_error`.
pub(crate) fn sign(idp: &Idp, typ: &str, claims: &Claims) -> Result<String, OAuthError> {
    idp.keys().signer.sign(typ, claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::Server
    })
}

/// When the sign-in `auth` records stops yielding tokens: `auth_time` + `lifetimes.sign_in`.
pub(crate) fn sign_in_ends(idp: &Idp, auth: &Authentication) -> u64 {
    auth.auth_time.saturating_add(idp.config.lifetimes.sign_in)
}

/// What a user token response is issued for.
pub(crate) struct UserGrant<'a> {
    pub(crate) client: &'a Client,
    pub(crate) auth: &'a Authentication,
    /// The `grant_id` of the refresh family the tokens belong to.
    pub(crate) grant_id: &'a str,
    pub(crate) scope: &'a [String],
    /// RFC 8707 targets the access token is for; none → the client itself.
    pub(crate) targets: &'a [String],
    /// The `nonce` of the authorization request, for the ID token.
    pub(crate) nonce: Option<&'a str>,
}

/// The token response (no refresh token yet): the access token, and the ID token when `openid`
/// was granted. Past the end of the sign-in the grant is refused and the user must sign in
/// again.
pub(crate) fn user_tokens(idp: &Idp, g: &UserGrant<'_>, now: u64) -> Result<Value, OAuthError> {
    let user = idp
        .config
        .users
        .get(&g.auth.user)
        .ok_or_else(|| OAuthError::InvalidGrant("user no longer exists".into()))?;
    let ends = sign_in_ends(idp, g.auth);
    if ends <= now {
        return Err(OAuthError::InvalidGrant(
            "the sign-in is too old: sign in again".into(),
        ));
    }
    let l = idp.config.lifetimes;
    let access_life = l.access.min(ends - now);
    let mut access = user.claims.clone();
    access.extend(base_claims(
        idp,
        &g.auth.user,
        &g.client.id,
        now,
        access_life,
    ));
    access_claims(idp, g, &mut access);
    let mut body = json!({
        "access_token": sign(idp, "at+jwt", &access)?,
        "token_type": "Bearer",
        "expires_in": access_life,
        "scope": g.scope.join(" "),
    });
    if g.scope.iter().any(|s| s == "openid") {
        let mut id = user.claims.clone();
        id.extend(base_claims(
            idp,
            &g.auth.user,
            &g.client.id,
            now,
            l.id.min(ends - now),
        ));
        id_claims(g, &mut id);
        body["id_token"] = json!(sign(idp, "JWT", &id)?);
    }
    Ok(body)
}

/// The access token's `aud` (the client, or the RFC 8707 targets: one → string, several →
/// array), `grants` (the client, then each target with its edge's claims, as an exchange along
/// that edge would add), `scope`, the sign-in's `acr`/`amr`/`auth_time` and its lineage.
fn access_claims(idp: &Idp, g: &UserGrant<'_>, access: &mut Claims) {
    let client = &g.client.id;
    let mut grants = vec![client.clone()];
    if g.targets.is_empty() {
        access.insert("aud".into(), json!(client));
    } else {
        access.insert("aud".into(), targets::aud_value(g.targets));
        for t in g.targets {
            if let Some(edge) = idp.config.edge(client, t) {
                policy::merge(access, &edge.claims);
            }
            if !grants.contains(t) {
                grants.push(t.clone());
            }
        }
    }
    if !g.scope.is_empty() {
        access.insert("scope".into(), json!(g.scope.join(" ")));
    }
    access.insert("grants".into(), json!(grants));
    g.auth.stamp(access);
    if let Some(sid) = &g.auth.sid {
        access.insert(SID.into(), json!(sid));
    }
    access.insert(GRANT_ID.into(), json!(g.grant_id));
}

/// The ID token's `aud` and `azp` (the client, no `client_id`), `nonce`, `sid` and the
/// sign-in's `acr`/`amr`/`auth_time` (OIDC Core §2).
fn id_claims(g: &UserGrant<'_>, id: &mut Claims) {
    id.remove("client_id");
    id.insert("aud".into(), json!(g.client.id));
    id.insert("azp".into(), json!(g.client.id));
    if let Some(n) = g.nonce {
        id.insert("nonce".into(), json!(n));
    }
    if let Some(sid) = &g.auth.sid {
        id.insert(SID.into(), json!(sid));
    }
    g.auth.stamp(id);
}
