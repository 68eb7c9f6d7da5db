//! `/userinfo` (OIDC Core §5.3): the signed-in user's claims for a bearer access token this IdP
//! issued with the `openid` scope. Errors are RFC 6750 §3 challenges.

use super::Idp;
use crate::http::{Body, json};
use crate::jwt::{self, Kind, Rules};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

/// Answers a userinfo request from its headers (the token is read only from `Authorization`).
pub fn userinfo(idp: &Idp, headers: &HeaderMap, now: u64) -> Response<Body> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return challenge(StatusCode::UNAUTHORIZED, None);
    };
    let rules = Rules {
        audience: None,
        kind: Kind::Access,
        ..Rules::access(idp.config.issuer.clone(), String::new())
    };
    let Ok(v) = jwt::verify(token.trim(), &idp.keys().verify, &rules, now) else {
        return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"));
    };
    if super::revocation::revoked(idp, &v.claims, now) {
        return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"));
    }
    if !jwt::scopes(&v.claims).any(|s| s == "openid") {
        return challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
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
    json(StatusCode::OK, &Value::Object(out))
}

fn challenge(status: StatusCode, error: Option<&str>) -> Response<Body> {
    let value = match error {
        Some(e) => format!("Bearer realm=\"baton-idp\", error=\"{e}\""),
        None => "Bearer realm=\"baton-idp\"".to_owned(),
    };
    let mut rsp = json(
        status,
        &json!({"error": error.unwrap_or("invalid_request")}),
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        rsp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    rsp
}
