//! `/token` (RFC 6749 §3.2): form parsing with limits, client authentication, dispatch per grant
//! (`authorization_code` + PKCE, `refresh_token`, `client_credentials`, token exchange), and the
//! issuing of user tokens (RFC 9068 access token, OIDC ID token, opaque refresh token).

use super::config::{Client, TOKEN_EXCHANGE};
use super::errors::OAuthError;
use super::login::Authentication;
use super::refresh::{self, FamilyRef, RefreshGrant};
use super::revocation::{GRANT_ID, Lineage, SID};
use super::{Idp, MAX_FORM_BYTES, client_auth, exchange, random};
use crate::http::{Body, BoxError, Form, json, read_limited};
use crate::secret::Token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{info, instrument};

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

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`].
pub async fn read_form<B>(req: Request<B>) -> Result<(http::request::Parts, Form), OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_limited(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| OAuthError::request(e.to_string()))?;
    Ok((parts, Form::parse(&bytes)))
}

/// The token endpoint.
#[instrument(skip_all, fields(grant_type, client_id))]
pub async fn token<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut label = "unknown";
    let result = async {
        let (parts, form) = read_form(req).await?;
        let grant = form
            .one("grant_type")?
            .ok_or_else(|| OAuthError::request("grant_type required"))?;
        label = match grant {
            "authorization_code" => "authorization_code",
            "refresh_token" => "refresh_token",
            "client_credentials" => "client_credentials",
            TOKEN_EXCHANGE => "token_exchange",
            _ => return Err(OAuthError::UnsupportedGrantType),
        };
        tracing::Span::current().record("grant_type", label);
        let client = client_auth::authenticate(idp, &parts.headers, &form, now)?;
        tracing::Span::current().record("client_id", client.id.as_str());
        if !client.allows(grant) {
            return Err(OAuthError::UnauthorizedClient(format!(
                "client may not use {grant}"
            )));
        }
        match label {
            "authorization_code" => authorization_code(idp, client, &form, now),
            "refresh_token" => refresh::refresh(idp, client, &form, now),
            "client_credentials" => client_credentials(idp, client, &form, now),
            _ => exchange::exchange(idp, client, &form, now),
        }
    }
    .await;
    match result {
        Ok(rsp) => {
            idp.metrics.token(label, "ok");
            rsp
        }
        Err(e) => {
            idp.metrics.token(label, e.code());
            info!(error = %e.code(), "token request refused");
            e.response()
        }
    }
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.6: the code is single-use and bound to the client, the
/// redirect URI and the S256 challenge. A replayed code revokes what it issued.
fn authorization_code(
    idp: &Idp,
    client: &Client,
    form: &Form,
    now: u64,
) -> Result<Response<Body>, OAuthError> {
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
    let bad = || OAuthError::InvalidGrant("code is invalid, expired or already used".into());
    let entry = idp.state.codes.get(&code.sha256()).ok_or_else(bad)?;
    let mut grant = entry.lock().map_err(|_| OAuthError::Server)?;
    if grant.used {
        if let Some(family) = grant.family.take() {
            refresh::revoke(idp, &family, &grant.auth, now);
        }
        info!(code = %code, "authorization code replayed; derived tokens revoked");
        return Err(bad());
    }
    // A code whose login session ended before it was redeemed is dead with the session.
    let lineage = Lineage {
        user: &grant.auth.user,
        auth_time: grant.auth.auth_time,
        sid: grant.auth.sid.as_deref(),
        grant: None,
    };
    if grant.expires_at <= now
        || grant.client != client.id
        || idp.state.revocations.is_revoked(&lineage, now)
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
    let resources = refresh::narrow(&grant.resources, &form.all("resource"))?;
    let targets = audiences(idp, client, &resources)?;
    grant.used = true;
    let family = refresh::new_family();
    // The family is the code's from here on: a replay revokes it even if issuing fails.
    grant.family = Some(family.clone());
    let mut f = refresh::lock(&family);
    let issued = issue_user_tokens(
        idp,
        client,
        &grant.auth,
        f.id(),
        &grant.scope,
        &targets,
        grant.nonce.as_deref(),
        now,
    )?;
    let next = client.allows("refresh_token").then(|| RefreshGrant {
        client: client.id.clone(),
        auth: grant.auth.clone(),
        scope: grant.scope.clone(),
        resources: grant.resources.clone(),
        expires_at: (now + idp.config.lifetimes.refresh).min(sign_in_ends(idp, &grant.auth)),
        family: family.clone(),
    });
    let body = refresh::settle(idp, &mut f, issued, next);
    Ok(json(StatusCode::OK, &body))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge; the verifier is 43–128 unreserved chars.
pub fn verifier_ok(verifier: &str, challenge: &str) -> bool {
    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    shape
        && crate::secret::constant_time_eq(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
                .as_bytes(),
            challenge.as_bytes(),
        )
}

/// RFC 6749 §4.4: a token for the client itself (`sub` = client id) addressed to the requested
/// audience or RFC 8707 resources (or, when the request names neither, the client's
/// `default_audience`), along a configured edge; scope ⊆ the client's scopes.
fn client_credentials(
    idp: &Idp,
    client: &Client,
    form: &Form,
    now: u64,
) -> Result<Response<Body>, OAuthError> {
    let named = !form.all("audience").is_empty() || !form.all("resource").is_empty();
    let targets = match &client.default_audience {
        _ if named => exchange::targets(idp, form)?,
        Some(aud) => vec![aud.clone()],
        None => {
            return Err(OAuthError::InvalidTarget(
                "audience or resource required: send audience (the client id of the service \
                 to call) or resource (an RFC 8707 resource URI), or give the client a \
                 default_audience"
                    .into(),
            ));
        }
    };
    for t in &targets {
        if idp.config.edge(&client.id, t).is_none() {
            return Err(OAuthError::InvalidTarget(format!(
                "client may not call {t}"
            )));
        }
    }
    let scope: Vec<String> = match form.one("scope")? {
        Some(s) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        None => client.scopes.clone(),
    };
    if scope.iter().any(|s| !client.scopes.contains(s)) {
        return Err(OAuthError::InvalidScope(
            "a requested scope is not allowed for this client".into(),
        ));
    }
    let lifetime = idp.config.lifetimes.access;
    let mut claims = base_claims(idp, &client.id, &client.id, now, lifetime);
    claims.insert("aud".into(), exchange::aud_value(&targets));
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope.join(" ")));
    }
    let access = sign(idp, "at+jwt", &claims)?;
    Ok(json(
        StatusCode::OK,
        &json!({"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope.join(" ")}),
    ))
}

/// iss, sub, client_id, iat, exp, fresh jti.
pub(crate) fn base_claims(
    idp: &Idp,
    sub: &str,
    client: &str,
    now: u64,
    lifetime: u64,
) -> crate::jwt::Claims {
    let mut c = crate::jwt::Claims::new();
    c.insert("iss".into(), json!(idp.config.issuer));
    c.insert("sub".into(), json!(sub));
    c.insert("client_id".into(), json!(client));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + lifetime));
    c.insert("jti".into(), json!(random(16)));
    c
}

/// Signs with the active key.
pub(crate) fn sign(
    idp: &Idp,
    typ: &str,
    claims: &crate::jwt::Claims,
) -> Result<String, OAuthError> {
    idp.keys().signer.sign(typ, claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::Server
    })
}

/// When the sign-in `auth` records stops yielding tokens: `auth_time` + `lifetimes.sign_in`.
pub(crate) fn sign_in_ends(idp: &Idp, auth: &Authentication) -> u64 {
    auth.auth_time.saturating_add(idp.config.lifetimes.sign_in)
}

/// RFC 8707 resource URIs → audiences (client ids) the client may address: each URI must be
/// configured under `resources` and an edge `client → audience` must exist, the policy
/// `client_credentials` and token exchange apply. Unknown or refused → `invalid_target`.
pub fn audiences(
    idp: &Idp,
    client: &Client,
    resources: &[String],
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let aud = exchange::resource_audience(idp, r)?;
        if idp.config.edge(&client.id, aud).is_none() {
            return Err(OAuthError::InvalidTarget(format!(
                "client may not request tokens for {aud}"
            )));
        }
        if !out.contains(aud) {
            out.push(aud.clone());
        }
    }
    Ok(out)
}

/// The token response (no refresh token yet): the access token (RFC 9068 plus user claims,
/// `grants`, `acr`, `amr`, `auth_time`, and the lineage `sid` and `grant_id` that revocation
/// follows) and the ID token (OIDC Core §2, `aud` = client, `nonce`, `sid`). The access token's
/// `aud` is the client, or the RFC 8707 `targets` when resources were asked (one → string,
/// several → array); each target is appended to `grants` with its edge's claims, as an
/// exchange along that edge would. No token outlives the sign-in ([`sign_in_ends`]); past it
/// the grant is refused and the user must sign in again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_user_tokens(
    idp: &Idp,
    client: &Client,
    auth: &Authentication,
    grant_id: &str,
    scope: &[String],
    targets: &[String],
    nonce: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let user = idp
        .config
        .users
        .get(&auth.user)
        .ok_or_else(|| OAuthError::InvalidGrant("user no longer exists".into()))?;
    let l = idp.config.lifetimes;
    let ends = sign_in_ends(idp, auth);
    if ends <= now {
        return Err(OAuthError::InvalidGrant(
            "the sign-in is too old: sign in again".into(),
        ));
    }
    let access_life = l.access.min(ends - now);
    let mut access = user.claims.clone();
    access.extend(base_claims(idp, &auth.user, &client.id, now, access_life));
    let mut grants = vec![client.id.clone()];
    if targets.is_empty() {
        access.insert("aud".into(), json!(client.id));
    } else {
        access.insert("aud".into(), exchange::aud_value(targets));
        for t in targets {
            if let Some(edge) = idp.config.edge(&client.id, t) {
                super::policy::merge(&mut access, &edge.claims);
            }
            if !grants.contains(t) {
                grants.push(t.clone());
            }
        }
    }
    if !scope.is_empty() {
        access.insert("scope".into(), json!(scope.join(" ")));
    }
    access.insert("grants".into(), json!(grants));
    auth.stamp(&mut access);
    if let Some(sid) = &auth.sid {
        access.insert(SID.into(), json!(sid));
    }
    access.insert(GRANT_ID.into(), json!(grant_id));

    let mut id = user.claims.clone();
    id.extend(base_claims(
        idp,
        &auth.user,
        &client.id,
        now,
        l.id.min(ends - now),
    ));
    id.remove("client_id");
    id.insert("aud".into(), json!(client.id));
    id.insert("azp".into(), json!(client.id));
    if let Some(n) = nonce {
        id.insert("nonce".into(), json!(n));
    }
    if let Some(sid) = &auth.sid {
        id.insert(SID.into(), json!(sid));
    }
    auth.stamp(&mut id);

    let mut body = json!({
        "access_token": sign(idp, "at+jwt", &access)?,
        "token_type": "Bearer",
        "expires_in": access_life,
        "scope": scope.join(" "),
    });
    if scope.iter().any(|s| s == "openid") {
        body["id_token"] = json!(sign(idp, "JWT", &id)?);
    }
    Ok(body)
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
