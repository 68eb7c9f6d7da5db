//! Provider metadata (RFC 8414 §2, OpenID Connect Discovery 1.0 §3) and the JWK set endpoint.

use super::config::TOKEN_EXCHANGE;
use super::state::Idp;
use crate::http::{Body, full};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

/// The scopes the IdP knows: `openid` and every scope a user, client or edge is configured
/// with. `/authorize` refuses any other (`invalid_scope`).
pub fn scopes(idp: &Idp) -> Vec<&str> {
    let mut scopes: Vec<&str> = vec!["openid"];
    let configured = idp
        .config
        .users
        .values()
        .flat_map(|u| u.scope.iter())
        .chain(idp.config.clients.values().flat_map(|c| c.scopes.iter()))
        .chain(idp.config.grants.iter().flat_map(|e| e.scopes.iter()));
    for s in configured {
        if !scopes.contains(&s.as_str()) {
            scopes.push(s);
        }
    }
    scopes
}

/// The token endpoint's URL: what discovery publishes and what a DPoP proof's `htu` must name.
pub fn token_endpoint(idp: &Idp) -> String {
    format!("{}/token", idp.config.issuer)
}

/// The metadata document served at both well-known paths.
pub fn metadata(idp: &Idp) -> Value {
    let iss = &idp.config.issuer;
    let scopes = scopes(idp);
    let mut claims: Vec<&str> = vec![
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "act",
        "grants",
        "acr",
        "amr",
        "auth_time",
        "nonce",
        "sid",
    ];
    for k in idp
        .config
        .users
        .values()
        .flat_map(|u| u.claims.keys())
        .chain(idp.config.grants.iter().flat_map(|e| e.claims.keys()))
    {
        if !claims.contains(&k.as_str()) {
            claims.push(k);
        }
    }
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": token_endpoint(idp),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "end_session_endpoint": format!("{iss}/end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": crate::dpop::ALGORITHMS,
        "scopes_supported": scopes,
        "claims_supported": claims,
        "acr_values_supported": idp.config.acr.keys().collect::<Vec<_>>(),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": false,
        // OIDC Core §6: request objects are refused at /authorize (`request_not_supported`).
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

/// The discovery response.
pub fn discovery(idp: &Idp) -> Response<Body> {
    cached(&metadata(idp), "max-age=300")
}

/// `/jwks`: active, next and still-published retired keys (RFC 7517 §5).
pub fn jwks(idp: &Idp) -> Response<Body> {
    cached(&idp.keys().jwks, "max-age=300")
}

fn cached(v: &Value, cache: &'static str) -> Response<Body> {
    let mut rsp = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *rsp.status_mut() = StatusCode::OK;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    rsp
}
