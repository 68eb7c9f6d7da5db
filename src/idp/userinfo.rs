//! `/userinfo` (OIDC Core §5.3): the signed-in user's claims for a bearer access token this IdP
//! issued with the `openid` scope. Errors are RFC 6750 §3 challenges.

use super::errors::BearerError;
use super::state::Idp;
use super::verify;
use crate::http::{Body, json};
use crate::jwt::{self, Kind, Rules};
use http::{HeaderMap, Response, StatusCode, header};
use serde_json::{Value, json};

/// Answers a userinfo request from its headers (the token is read only from `Authorization`).
pub fn userinfo(idp: &Idp, headers: &HeaderMap, now: u64) -> Response<Body> {
    match claims(idp, headers, now) {
        Ok(claims) => json(StatusCode::OK, &Value::Object(claims)),
        Err(e) => e.response(),
    }
}

/// The user's claims and `sub`, for a valid, unrevoked access token with the `openid` scope.
fn claims(idp: &Idp, headers: &HeaderMap, now: u64) -> Result<jwt::Claims, BearerError> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return Err(BearerError::Missing);
    };
    let rules = Rules {
        audience: None,
        kind: Kind::Access,
        ..Rules::access(idp.config.issuer.clone(), String::new())
    };
    let v = jwt::verify(token.trim(), &idp.keys().verify, &rules, now)
        .map_err(|_| BearerError::InvalidToken)?;
    if verify::revoked(idp, &v.claims, now).map_err(|_| BearerError::Unavailable)? {
        return Err(BearerError::InvalidToken);
    }
    if !jwt::scopes(&v.claims).any(|s| s == "openid") {
        return Err(BearerError::InsufficientScope);
    }
    let sub = v
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = idp
        .config
        .users
        .get(sub)
        .map(|u| u.claims.clone())
        .unwrap_or_default();
    out.insert("sub".into(), json!(sub));
    Ok(out)
}
