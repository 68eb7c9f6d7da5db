//! baton-idp as the trust domain's Txn-Token Service (draft-ietf-oauth-transaction-tokens): an
//! RFC 8693 request with `requested_token_type` [`txn::TOKEN_TYPE`] → a signed `txntoken+jwt`.
//!
//! Phases: the section is configured and names the client → the request's parameters (`audience`
//! is the trust domain and nothing else; `request_context` → `rctx`, `request_details` → `tctx`,
//! each a bounded JSON object) → the subject ([`Subject`]: one of this IdP's access or ID tokens
//! addressed to the client, a Txn-Token to replace, or, for clients the config allows, an
//! unsigned statement of the subject) → the claims → sign. A replacement keeps `txn`, `sub` and
//! `aud`, may narrow `scope` or add context but never widen or change them, appends the client
//! to `req_wl` and never outlives the token it replaces. No subject token is accepted at or
//! past its `exp`, leeway or not.

use super::exchange::{ACCESS_TOKEN, JWT, REFRESH_TOKEN};
use crate::http::Form;
use crate::idp::config::{Client, ClientAuth, TxnTokens};
use crate::idp::errors::OAuthError;
use crate::idp::issue::sign;
use crate::idp::state::Idp;
use crate::idp::verify;
use crate::jwt::{self, Algorithm, Claims, Kind, Rules};
use crate::txn::{self, ContextError};
use serde_json::{Value, json};
use tracing::info;

/// RFC 8693 token type URN of an ID token.
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Whether `form` asks for a Txn-Token (a repeated parameter is the exchange grant's to refuse).
pub fn requested(form: &Form) -> bool {
    matches!(form.one("requested_token_type"), Ok(Some(txn::TOKEN_TYPE)))
}

/// What the new Txn-Token starts from.
struct Subject {
    sub: String,
    /// The most the new token's `scope` may hold.
    scope: Vec<String>,
    /// A replacement's `txn`, `tctx`, `rctx` and `req_wl`; empty for a first issuance.
    txn: Option<String>,
    tctx: Claims,
    rctx: Claims,
    req_wl: Vec<String>,
    /// The subject token's `exp`: the new token never outlives it.
    exp: Option<u64>,
}

/// The token request for a Txn-Token: checks, issues, answers (RFC 8693 §2.2.1, `token_type`
/// `N_A`: a Txn-Token is not an access token; no refresh token).
pub fn issue(
    idp: &Idp,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let cfg = idp
        .config
        .txn_tokens
        .as_ref()
        .ok_or_else(|| OAuthError::request("this identity provider issues no Txn-Tokens"))?;
    if !cfg.allows(&client.id) {
        return Err(OAuthError::UnauthorizedClient(
            "client may not request Txn-Tokens".into(),
        ));
    }
    match form.all("audience").as_slice() {
        [a] if *a == cfg.audience => {}
        [] => {
            return Err(OAuthError::request(
                "audience required: the trust domain's identifier",
            ));
        }
        _ => {
            return Err(OAuthError::InvalidTarget(
                "audience must be the trust domain's identifier, once".into(),
            ));
        }
    }
    if !form.all("resource").is_empty() {
        return Err(OAuthError::InvalidTarget(
            "a Txn-Token names no resource: its audience is the trust domain".into(),
        ));
    }
    if form.one("actor_token")?.is_some() || form.one("actor_token_type")?.is_some() {
        return Err(OAuthError::request(
            "actor_token is not used for Txn-Tokens: req_wl names the requesting workload",
        ));
    }
    let token = form
        .one("subject_token")?
        .ok_or_else(|| OAuthError::request("subject_token required"))?;
    let token_type = form
        .one("subject_token_type")?
        .ok_or_else(|| OAuthError::request("subject_token_type required"))?;
    let scope: Vec<String> = form
        .one("scope")?
        .ok_or_else(|| OAuthError::request("scope required: the purpose of the transaction"))?
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let rctx = param_context(form, "request_context")?;
    let tctx = param_context(form, "request_details")?;
    let subject = subject(idp, cfg, client, token, token_type, jkt, now)?;
    let claims = claims(idp, cfg, client, subject, scope, rctx, tctx, now)?;
    let signed = sign(idp, txn::TYP, &claims)?;
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
    let txn_id = claims.get("txn").and_then(Value::as_str).unwrap_or("");
    info!(txn = txn_id, client_id = %client.id, "Txn-Token issued");
    Ok(json!({
        "access_token": signed,
        "issued_token_type": txn::TOKEN_TYPE,
        "token_type": "N_A",
        "expires_in": exp.saturating_sub(now),
    }))
}

/// A context parameter as a bounded JSON object; absent → empty.
fn param_context(form: &Form, name: &str) -> Result<Claims, OAuthError> {
    match form.one(name)? {
        None => Ok(Claims::new()),
        Some(text) => txn::context(text)
            .map_err(|e: ContextError| OAuthError::request(format!("{name}: {e}"))),
    }
}

/// The subject the new token is for, by `subject_token_type`.
fn subject(
    idp: &Idp,
    cfg: &TxnTokens,
    client: &Client,
    token: &str,
    token_type: &str,
    jkt: Option<&str>,
    now: u64,
) -> Result<Subject, OAuthError> {
    match token_type {
        ACCESS_TOKEN => own(idp, client, token, Kind::Access, jkt, now),
        ID_TOKEN => own(idp, client, token, Kind::Id, jkt, now),
        // A JWT of this issuer: the access token's `typ` tells it from an ID token.
        JWT if typed_access(token) => own(idp, client, token, Kind::Access, jkt, now),
        JWT => own(idp, client, token, Kind::Id, jkt, now),
        txn::TOKEN_TYPE => replaced(idp, cfg, token, now),
        txn::UNSIGNED_JSON if cfg.allows_unsigned(&client.id) => unsigned(client, token),
        txn::SELF_SIGNED if cfg.allows_unsigned(&client.id) => self_signed(idp, client, token, now),
        txn::UNSIGNED_JSON | txn::SELF_SIGNED => Err(OAuthError::request(
            "subject_token: this client may not state the subject itself",
        )),
        REFRESH_TOKEN => Err(OAuthError::request(
            "a refresh token is never a Txn-Token's subject",
        )),
        _ => Err(OAuthError::request("unsupported subject_token_type")),
    }
}

/// Whether a JWT's header says `at+jwt`: only picks the rules it is then verified under.
fn typed_access(token: &str) -> bool {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<Claims>(&b).ok())
        .and_then(|h| h.get("typ")?.as_str().map(str::to_ascii_lowercase))
        .is_some_and(|t| t.trim_start_matches("application/") == "at+jwt")
}

/// One of this IdP's access or ID tokens, addressed to the requesting client, unexpired (no
/// leeway), unrevoked, and, when DPoP-bound, presented with a proof of its key (`jkt`, the
/// thumbprint of the request's proof), as for any exchange.
fn own(
    idp: &Idp,
    client: &Client,
    token: &str,
    kind: Kind,
    jkt: Option<&str>,
    now: u64,
) -> Result<Subject, OAuthError> {
    let mut rules = Rules::access(idp.config.issuer.clone(), client.id.clone());
    rules.kind = kind;
    rules.leeway = 0;
    let v = jwt::verify(token, &idp.keys().verify, &rules, now)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    if v.exp <= now {
        return Err(OAuthError::request("subject_token: token expired"));
    }
    if verify::revoked(idp, &v.claims, now)? {
        return Err(OAuthError::request("subject_token: revoked"));
    }
    if let Some(bound) = crate::dpop::bound_jkt(&v.claims)
        && jkt != Some(bound)
    {
        return Err(OAuthError::InvalidDpopProof(
            "subject_token is DPoP-bound: send a proof of its key".into(),
        ));
    }
    let sub = string(&v.claims, "sub")?;
    let scope = match kind {
        // An ID token says who signed in, not what they granted: it evidences `openid` alone.
        Kind::Id => vec!["openid".to_owned()],
        _ => jwt::scopes(&v.claims).map(str::to_owned).collect(),
    };
    Ok(Subject {
        sub,
        scope,
        txn: None,
        tctx: Claims::new(),
        rctx: Claims::new(),
        req_wl: Vec::new(),
        exp: Some(v.exp),
    })
}

/// A Txn-Token of this trust domain to replace: its `txn`, `sub`, `scope`, contexts and chain.
fn replaced(idp: &Idp, cfg: &TxnTokens, token: &str, now: u64) -> Result<Subject, OAuthError> {
    let rules = txn::rules(
        idp.config.issuer.clone(),
        cfg.audience.clone(),
        vec![Algorithm::ES256, Algorithm::RS256],
        0,
    );
    let v = txn::verify(token, &idp.keys().verify, &rules, now)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    if v.exp <= now {
        return Err(OAuthError::request("subject_token: token expired"));
    }
    let object = |name: &str| match v.claims.get(name) {
        Some(Value::Object(m)) => m.clone(),
        _ => Claims::new(),
    };
    Ok(Subject {
        sub: string(&v.claims, "sub")?,
        scope: jwt::scopes(&v.claims).map(str::to_owned).collect(),
        txn: Some(string(&v.claims, "txn")?),
        tctx: object("tctx"),
        rctx: object("rctx"),
        req_wl: txn::requesting_workloads(&v.claims),
        exp: Some(v.exp),
    })
}

/// An unsigned JSON statement of the subject (`{"sub": "..."}`), from a client the config allows
/// to make one: work that starts inside the trust domain. Its scope is the client's own.
fn unsigned(client: &Client, token: &str) -> Result<Subject, OAuthError> {
    let claims =
        txn::context(token).map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    let sub = string(&claims, "sub")?;
    Ok(Subject {
        sub,
        scope: client.scopes.clone(),
        txn: None,
        tctx: Claims::new(),
        rctx: Claims::new(),
        req_wl: Vec::new(),
        exp: None,
    })
}

/// A JWT the client signed with its registered keys (`private_key_jwt` clients only): `iss` the
/// client, `aud` this IdP's issuer, `iat` and an unexpired `exp` (no leeway), `sub` the subject.
/// Its scope is the client's own.
fn self_signed(idp: &Idp, client: &Client, token: &str, now: u64) -> Result<Subject, OAuthError> {
    let ClientAuth::Jwks(keys) = &client.auth else {
        return Err(OAuthError::request(
            "subject_token: a self-signed subject needs the client's registered keys",
        ));
    };
    let rules = Rules {
        issuer: client.id.clone(),
        audience: Some(idp.config.issuer.clone()),
        kind: Kind::ClientAssertion,
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: 0,
        max_len: jwt::DEFAULT_MAX_LEN,
    };
    let v = jwt::verify(token, keys, &rules, now)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    if v.exp <= now {
        return Err(OAuthError::request("subject_token: token expired"));
    }
    if !v.claims.contains_key("iat") {
        return Err(OAuthError::request("subject_token: missing or invalid iat"));
    }
    Ok(Subject {
        sub: string(&v.claims, "sub")?,
        scope: client.scopes.clone(),
        txn: None,
        tctx: Claims::new(),
        rctx: Claims::new(),
        req_wl: Vec::new(),
        exp: Some(v.exp),
    })
}

/// A non-empty string claim of a subject token.
fn string(claims: &Claims, name: &str) -> Result<String, OAuthError> {
    match claims.get(name).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
        _ => Err(OAuthError::request(format!(
            "subject_token: missing or invalid {name}"
        ))),
    }
}

/// `add` merged into `base`: new members are added, a member already there must keep its
/// value. The result stays within [`txn::MAX_CONTEXT_BYTES`].
fn merge(mut base: Claims, add: Claims, name: &str) -> Result<Claims, OAuthError> {
    for (k, v) in add {
        match base.get(&k) {
            Some(old) if *old != v => {
                return Err(OAuthError::request(format!(
                    "{name} may add to the Txn-Token's context, never change it"
                )));
            }
            Some(_) => {}
            None => {
                base.insert(k, v);
            }
        }
    }
    if txn::context_len(&base) > txn::MAX_CONTEXT_BYTES {
        return Err(OAuthError::request(format!(
            "{name}: the context would exceed {} bytes",
            txn::MAX_CONTEXT_BYTES
        )));
    }
    Ok(base)
}

/// The new token's claims. The requested scope may only narrow the subject's; `req_wl` is the
/// chain of requesting workloads, the client appended.
#[allow(clippy::too_many_arguments)]
fn claims(
    idp: &Idp,
    cfg: &TxnTokens,
    client: &Client,
    subject: Subject,
    scope: Vec<String>,
    rctx: Claims,
    tctx: Claims,
    now: u64,
) -> Result<Claims, OAuthError> {
    if let Some(extra) = scope.iter().find(|s| !subject.scope.contains(s)) {
        return Err(OAuthError::InvalidScope(format!(
            "scope {extra} exceeds the subject's: a Txn-Token may only narrow it"
        )));
    }
    let mut req_wl = subject.req_wl;
    if req_wl.last() != Some(&client.id) {
        req_wl.push(client.id.clone());
    }
    if req_wl.len() > txn::MAX_REQ_WL {
        return Err(OAuthError::request(format!(
            "req_wl would name more than {} workloads",
            txn::MAX_REQ_WL
        )));
    }
    let tctx = merge(subject.tctx, tctx, "request_details")?;
    let rctx = merge(subject.rctx, rctx, "request_context")?;
    let exp = (now + cfg.lifetime).min(subject.exp.unwrap_or(u64::MAX));
    let mut c = Claims::new();
    c.insert("iss".into(), json!(idp.config.issuer));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(exp));
    c.insert("aud".into(), json!(cfg.audience));
    let txn_id = subject.txn.unwrap_or_else(|| crate::secret::random_b64(16));
    c.insert("txn".into(), json!(txn_id));
    c.insert("sub".into(), json!(subject.sub));
    c.insert("scope".into(), json!(scope.join(" ")));
    let chain = req_wl.join(&txn::REQ_WL_SEPARATOR.to_string());
    c.insert("req_wl".into(), json!(chain));
    if !tctx.is_empty() {
        c.insert("tctx".into(), Value::Object(tctx));
    }
    if !rctx.is_empty() {
        c.insert("rctx".into(), Value::Object(rctx));
    }
    Ok(c)
}
