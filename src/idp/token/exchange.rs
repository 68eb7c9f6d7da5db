//! RFC 8693 token exchange at `/token`: checks the request (§2.1), verifies subject and actor
//! tokens as this IdP's own unrevoked access tokens, resolves targets (RFC 8707), applies
//! [`policy::decide`] and signs. Errors follow §2.2.2.

use crate::http::Form;
use crate::idp::config::Client;
use crate::idp::errors::OAuthError;
use crate::idp::issue::{bind, sign, token_type};
use crate::idp::policy::{self, Refusal};
use crate::idp::state::Idp;
use crate::idp::{targets, verify};
use crate::jwt::{self, Claims, Rules};
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
    /// The thumbprint of the key of the request's DPoP proof, if it carried one: the new token
    /// is bound to it.
    pub jkt: Option<&'a str>,
}

/// The `grant_type=…token-exchange` grant: parse, exchange, answer (RFC 8693 §2.2.1).
pub fn exchange(
    idp: &Idp,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let subject = form
        .one("subject_token")?
        .ok_or_else(|| OAuthError::request("subject_token required"))?;
    subject_type(form.one("subject_token_type")?)?;
    let issued_type = requested_type(form.one("requested_token_type")?)?;
    let actor = actor(form.one("actor_token")?, form.one("actor_token_type")?)?;
    let targets = targets::requested(idp, form)?;
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
        jkt,
    };
    let (token, claims) = exchange_token(idp, client, req, now)?;
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    info!(jti, client_id = %client.id, "token exchanged");
    Ok(json!({
        "access_token": token,
        "issued_token_type": issued_type,
        "token_type": token_type(jkt),
        "expires_in": exp.saturating_sub(now),
        "scope": claims.get("scope").and_then(Value::as_str).unwrap_or(""),
    }))
}

/// `subject_token_type`: an access token or a JWT, never a refresh token.
fn subject_type(t: Option<&str>) -> Result<(), OAuthError> {
    match t {
        Some(ACCESS_TOKEN | JWT) => Ok(()),
        Some(REFRESH_TOKEN) => Err(OAuthError::request("a refresh token cannot be exchanged")),
        Some(_) => Err(OAuthError::request("unsupported subject_token_type")),
        None => Err(OAuthError::request("subject_token_type required")),
    }
}

/// `requested_token_type`: an access token (the default) or a JWT, never a refresh token.
fn requested_type(t: Option<&str>) -> Result<&'static str, OAuthError> {
    match t {
        None | Some(ACCESS_TOKEN) => Ok(ACCESS_TOKEN),
        Some(JWT) => Ok(JWT),
        Some(REFRESH_TOKEN) => Err(OAuthError::request(
            "refresh tokens are never issued by exchange",
        )),
        Some(_) => Err(OAuthError::request("unsupported requested_token_type")),
    }
}

/// `actor_token` and `actor_token_type`, both or neither.
fn actor<'a>(token: Option<&'a str>, t: Option<&str>) -> Result<Option<&'a str>, OAuthError> {
    match (token, t) {
        (Some(token), Some(ACCESS_TOKEN | JWT)) => Ok(Some(token)),
        (Some(_), Some(_)) => Err(OAuthError::request("unsupported actor_token_type")),
        (None, None) => Ok(None),
        _ => Err(OAuthError::request(
            "actor_token and actor_token_type go together",
        )),
    }
}

/// The exchange work without HTTP: verify the subject (and actor), decide, sign. Returns the
/// signed token and its claims. Used by the endpoint and the benchmark.
pub fn exchange_token(
    idp: &Idp,
    client: &Client,
    req: Request<'_>,
    now: u64,
) -> Result<(String, Claims), OAuthError> {
    let rules = Rules::access(idp.config.issuer.clone(), client.id.clone());
    let subject = match foreign_issuer(idp, req.subject_token)? {
        Some(t) => {
            let max_life = idp.config.lifetimes.access;
            crate::idp::foreign::subject(t, &client.id, req.subject_token, max_life, now)?
        }
        None => own_token(idp, req.subject_token, &rules, "subject_token", now)?,
    };
    holder_of(client, &subject, req.jkt)?;
    let actor = match req.actor_token {
        Some(t) => Some(actor_claims(idp, client, t, &rules, now)?),
        None => None,
    };
    let mut edges = Vec::new();
    for t in req.targets {
        let edge = idp.config.edge(&client.id, t).ok_or_else(|| {
            OAuthError::InvalidTarget(format!("no grant lets {} call {t}", client.id))
        })?;
        edges.push(edge);
    }
    let decision = policy::Exchange {
        issuer: &idp.config.issuer,
        client: &client.id,
        subject: &subject,
        actor: actor.as_ref(),
        edges,
        scope: req.scope,
        requested_lifetime: req.requested_lifetime,
        default_lifetime: idp.config.lifetimes.access,
        max_chain_depth: idp.config.max_chain_depth,
        sign_in: idp.config.lifetimes.sign_in,
        now,
        jti: crate::secret::random_b64(16),
    };
    let mut claims = policy::decide(&decision).map_err(refusal)?;
    bind(&mut claims, req.jkt);
    let token = sign(idp, "at+jwt", &claims)?;
    Ok((token, claims))
}

/// The trusted foreign issuer a subject token names in `iss` (read unverified, only to pick the
/// keys; compared exactly), `None` for this IdP's own tokens. An `iss` that is neither is
/// refused before any key is looked at.
fn foreign_issuer<'a>(
    idp: &'a Idp,
    token: &str,
) -> Result<Option<&'a crate::idp::foreign::Trusted>, OAuthError> {
    if idp.trusted.is_empty() {
        return Ok(None);
    }
    let iss = jwt::peek_issuer(token, jwt::DEFAULT_MAX_LEN)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    if iss == idp.config.issuer {
        return Ok(None);
    }
    idp.trusted
        .iter()
        .find(|t| t.config.issuer == iss)
        .map(Some)
        .ok_or_else(|| OAuthError::request("subject_token: issuer not trusted"))
}

/// A DPoP-bound subject token is exchanged only with a proof: of its own key (RFC 9449 §7:
/// only its holder may use it), or of the client's key when the client may re-bind
/// (`dpop_rebind`).
fn holder_of(client: &Client, subject: &Claims, jkt: Option<&str>) -> Result<(), OAuthError> {
    let Some(bound) = crate::dpop::bound_jkt(subject) else {
        return Ok(());
    };
    match jkt {
        Some(j) if j == bound || client.dpop_rebind => Ok(()),
        Some(_) => Err(crate::dpop::ProofError::Binding.into()),
        None => Err(OAuthError::InvalidDpopProof(
            "the subject token is DPoP-bound: send a DPoP proof".into(),
        )),
    }
}

/// The claims of `token`, an access token this IdP issued under `rules`, not revoked; a
/// refusal names the parameter (`what`) and why.
fn own_token(
    idp: &Idp,
    token: &str,
    rules: &Rules,
    what: &str,
    now: u64,
) -> Result<Claims, OAuthError> {
    let v = jwt::verify(token, &idp.keys().verify, rules, now)
        .map_err(|e| OAuthError::request(format!("{what}: {e}")))?;
    if verify::revoked(idp, &v.claims, now)? {
        return Err(OAuthError::request(format!("{what}: revoked")));
    }
    Ok(v.claims)
}

/// The actor token's claims: one of our access tokens, for any audience, whose `sub` is the
/// authenticated client, so an observed token of another party cannot make it the actor.
fn actor_claims(
    idp: &Idp,
    client: &Client,
    token: &str,
    rules: &Rules,
    now: u64,
) -> Result<Claims, OAuthError> {
    let any_audience = Rules {
        audience: None,
        ..rules.clone()
    };
    let claims = own_token(idp, token, &any_audience, "actor_token", now)?;
    if claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(OAuthError::request(
            "actor_token must identify the requesting client",
        ));
    }
    Ok(claims)
}

/// The policy's refusal as an RFC 8693 §2.2.2 error.
fn refusal(r: Refusal) -> OAuthError {
    match r {
        Refusal::Scope(_) => OAuthError::InvalidScope(r.to_string()),
        Refusal::NoTarget => OAuthError::InvalidTarget(r.to_string()),
        Refusal::Lifetime
        | Refusal::SignInOver
        | Refusal::ChainDepth(_)
        | Refusal::MayAct
        | Refusal::Subject(_) => OAuthError::request(r.to_string()),
    }
}
