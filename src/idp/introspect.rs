//! `POST /introspect` (RFC 7662): client authentication required; `{"active":false}` for
//! anything invalid, expired, unknown, not addressed to the caller, or revoked: a token whose
//! session or grant family was revoked, exchanged tokens included (see
//! [`revocation`](super::revocation)).

use super::errors::OAuthError;
use super::form::read_form;
use super::state::Idp;
use super::store::StoreError;
use super::{client_auth, family, verify};
use crate::http::{Body, BoxError, json};
use crate::jwt::{self, Rules};
use crate::secret::Token;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

/// The introspection endpoint.
pub async fn introspect<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match answer(idp, req, now).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.response(),
    }
}

async fn answer<B>(idp: &Idp, req: Request<B>, now: u64) -> Result<Value, OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, form) = read_form(req).await?;
    let client = client_auth::authenticate(idp, &parts.headers, &form, now).await?;
    let token = form
        .one("token")?
        .ok_or_else(|| OAuthError::request("token required"))?;
    let answer = inspect(idp, &client.id, token, now).await?;
    Ok(answer.unwrap_or_else(|| json!({"active": false})))
}

/// The RFC 7662 §2.2 answer for `token` as seen by `caller`, or `None` for inactive.
/// Revocations are asked of the store itself: a sign-out anywhere is seen at once.
pub async fn inspect(
    idp: &Idp,
    caller: &str,
    token: &str,
    now: u64,
) -> Result<Option<Value>, StoreError> {
    if !token.contains('.') {
        // An opaque refresh token: active only for the client it was issued to.
        let Some(grant) = family::active(idp, &Token::new(token), now).await? else {
            return Ok(None);
        };
        if grant.client != caller {
            return Ok(None);
        }
        let mut answer = json!({
            "active": true, "token_type": "refresh_token", "client_id": grant.client,
            "sub": grant.auth.user, "scope": grant.scope.join(" "), "exp": grant.expires_at,
        });
        if let Some(jkt) = &grant.jkt {
            answer["cnf"] = json!({ "jkt": jkt });
        }
        return Ok(Some(answer));
    }
    let rules = Rules::access(idp.config.issuer.clone(), caller.to_owned());
    let Ok(v) = jwt::verify(token, &idp.keys().verify, &rules, now) else {
        return Ok(None);
    };
    if verify::revoked_now(idp, &v.claims, now).await? {
        return Ok(None);
    }
    let mut out = v.claims;
    out.insert("active".into(), json!(true));
    // `cnf` (RFC 7800 §3.1, RFC 9449 §6.2) stays among the claims: the caller checks the proof.
    let bound = crate::dpop::bound_jkt(&out).is_some();
    out.insert(
        "token_type".into(),
        json!(if bound { "DPoP" } else { "Bearer" }),
    );
    Ok(Some(Value::Object(out)))
}
