//! RFC 8693 token exchange at `/token`: checks the request (§2.1), verifies subject and actor
//! tokens as this IdP's own access tokens, resolves targets (RFC 8707), applies
//! [`policy::decide`](super::policy::decide) and signs. Errors follow §2.2.2.

use super::config::Client;
use super::errors::OAuthError;
use super::policy::{self, Refusal};
use super::revocation;
use super::token::sign;
use super::{Idp, random};
use crate::http::{Body, Form, json};
use crate::jwt::{self, Claims, Rules};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tracing::info;

/// RFC 8693 §3 token type URNs.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A JWT (RFC 8693 §3).
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// A refresh token (RFC 8693 §3): never accepted nor issued by exchange.
pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// The parameters of one exchange, already parsed.
// No `Debug`: it holds tokens.
#[derive(Clone)]
pub struct Request<'a> {
    /// The subject token (never logged).
    pub subject_token: &'a str,
    /// The actor token, if any.
    pub actor_token: Option<&'a str>,
    /// Resolved audiences.
    pub targets: &'a [String],
    /// Requested scopes.
    pub scope: Option<Vec<String>>,
    /// Requested lifetime, seconds.
    pub requested_lifetime: Option<u64>,
}

/// The exchange work without HTTP: verify the subject (and actor), decide, sign. Returns the
/// signed token and its claims. Used by the endpoint and the benchmark.
pub fn exchange_token(
    idp: &Idp,
    client: &Client,
    req: Request<'_>,
    now: u64,
) -> Result<(String, Claims), OAuthError> {
    let Request {
        subject_token,
        actor_token,
        targets,
        scope,
        requested_lifetime,
    } = req;
    let ring = idp.keys();
    let rules = Rules::access(idp.config.issuer.clone(), client.id.clone());
    let subject = jwt::verify(subject_token, &ring.verify, &rules, now)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    if revocation::revoked(idp, &subject.claims, now) {
        return Err(OAuthError::request("subject_token: revoked"));
    }
    let actor = match actor_token {
        Some(t) => {
            let rules = Rules {
                audience: None,
                ..rules.clone()
            };
            let v = jwt::verify(t, &ring.verify, &rules, now)
                .map_err(|e| OAuthError::request(format!("actor_token: {e}")))?;
            if revocation::revoked(idp, &v.claims, now) {
                return Err(OAuthError::request("actor_token: revoked"));
            }
            // The actor must be the authenticated client: an observed token of another party
            // cannot make it appear as the actor.
            if v.claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str()) {
                return Err(OAuthError::request(
                    "actor_token must identify the requesting client",
                ));
            }
            Some(v.claims)
        }
        None => None,
    };
    let mut edges = Vec::new();
    for t in targets {
        let edge = idp.config.edge(&client.id, t).ok_or_else(|| {
            OAuthError::InvalidTarget(format!("no grant lets {} call {t}", client.id))
        })?;
        edges.push(edge);
    }
    let decision = policy::Exchange {
        issuer: &idp.config.issuer,
        client: &client.id,
        subject: &subject.claims,
        actor: actor.as_ref(),
        edges,
        scope,
        requested_lifetime,
        default_lifetime: idp.config.lifetimes.access,
        max_chain_depth: idp.config.max_chain_depth,
        sign_in: idp.config.lifetimes.sign_in,
        now,
        jti: random(16),
    };
    let claims = policy::decide(&decision).map_err(|r| match r {
        Refusal::Scope(_) => OAuthError::InvalidScope(r.to_string()),
        Refusal::NoTarget => OAuthError::InvalidTarget(r.to_string()),
        Refusal::Lifetime
        | Refusal::SignInOver
        | Refusal::ChainDepth(_)
        | Refusal::MayAct
        | Refusal::Subject(_) => OAuthError::request(r.to_string()),
    })?;
    let token = sign(idp, "at+jwt", &claims)?;
    Ok((token, claims))
}

/// The `grant_type=…token-exchange` branch of `/token`.
pub fn exchange(
    idp: &Idp,
    client: &Client,
    form: &Form,
    now: u64,
) -> Result<Response<Body>, OAuthError> {
    let subject = form
        .one("subject_token")?
        .ok_or_else(|| OAuthError::request("subject_token required"))?;
    match form.one("subject_token_type")? {
        Some(ACCESS_TOKEN | JWT) => {}
        Some(REFRESH_TOKEN) => {
            return Err(OAuthError::request("a refresh token cannot be exchanged"));
        }
        Some(_) => return Err(OAuthError::request("unsupported subject_token_type")),
        None => return Err(OAuthError::request("subject_token_type required")),
    }
    let issued_type = match form.one("requested_token_type")? {
        None | Some(ACCESS_TOKEN) => ACCESS_TOKEN,
        Some(JWT) => JWT,
        Some(REFRESH_TOKEN) => {
            return Err(OAuthError::request(
                "refresh tokens are never issued by exchange",
            ));
        }
        Some(_) => return Err(OAuthError::request("unsupported requested_token_type")),
    };
    let actor = match (form.one("actor_token")?, form.one("actor_token_type")?) {
        (Some(t), Some(ACCESS_TOKEN | JWT)) => Some(t),
        (Some(_), Some(_)) => return Err(OAuthError::request("unsupported actor_token_type")),
        (None, None) => None,
        _ => {
            return Err(OAuthError::request(
                "actor_token and actor_token_type go together",
            ));
        }
    };
    let targets = targets(idp, form)?;
    let scope = form
        .one("scope")?
        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect());
    let lifetime = match form.one("requested_lifetime")? {
        Some(l) => Some(
            l.parse::<u64>()
                .map_err(|_| OAuthError::request("requested_lifetime must be seconds"))?,
        ),
        None => None,
    };
    let req = Request {
        subject_token: subject,
        actor_token: actor,
        targets: &targets,
        scope,
        requested_lifetime: lifetime,
    };
    let (token, claims) = exchange_token(idp, client, req, now)?;
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    info!(jti, client_id = %client.id, "token exchanged");
    Ok(json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "issued_token_type": issued_type,
            "token_type": "Bearer",
            "expires_in": exp.saturating_sub(now),
            "scope": claims.get("scope").and_then(Value::as_str).unwrap_or(""),
        }),
    ))
}

/// The requested audiences: `audience` values (client ids) plus `resource` URIs mapped through
/// `resources` (RFC 8707 §2: absolute, no fragment). Unknown → `invalid_target`.
pub fn targets(idp: &Idp, form: &Form) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for a in form.all("audience") {
        if !idp.config.clients.contains_key(a) {
            // The value is not echoed: it is client input and may be anything, even a token.
            return Err(OAuthError::InvalidTarget(
                "unknown audience (not a registered client)".into(),
            ));
        }
        if !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    }
    for r in form.all("resource") {
        let aud = resource_audience(idp, r)?;
        if !out.contains(aud) {
            out.push(aud.clone());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::InvalidTarget(
            "audience or resource required".into(),
        ));
    }
    Ok(out)
}

/// One audience → a string, several → an array (RFC 7519 §4.1.3).
pub fn aud_value(targets: &[String]) -> Value {
    match targets {
        [one] => json!(one),
        many => json!(many),
    }
}

/// The audience a `resource` stands for (RFC 8707 §2): an absolute URI without a fragment,
/// configured under `resources`; otherwise `invalid_target` (the value is not echoed).
pub fn resource_audience<'a>(idp: &'a Idp, resource: &str) -> Result<&'a String, OAuthError> {
    if !super::config::absolute_without_fragment(resource) {
        return Err(OAuthError::InvalidTarget(
            "resource must be an absolute URI without a fragment".into(),
        ));
    }
    idp.config
        .resources
        .get(resource)
        .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))
}
