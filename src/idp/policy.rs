//! The token-exchange policy, pure: no I/O, time is an
//! argument. Given a verified subject, the requesting client and the edges it uses, it computes
//! the new token's claims or says which rule refused.

pub use super::claims::merge;
use super::config::{Edge, RESERVED};
use crate::jwt::Claims;
use serde_json::{Value, json};

/// One exchange to decide.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// The IdP's issuer.
    pub issuer: &'a str,
    /// The authenticated requesting client.
    pub client: &'a str,
    /// The verified subject token's claims.
    pub subject: &'a Claims,
    /// The verified actor token's claims, when one was sent (RFC 8693 §2.1).
    pub actor: Option<&'a Claims>,
    /// One edge `client → target` per requested audience, in request order.
    pub edges: Vec<&'a Edge>,
    /// Requested scopes (`None`: whatever the edges allow, downscoped to the subject).
    pub scope: Option<Vec<String>>,
    /// Requested lifetime in seconds, bounded by policy.
    pub requested_lifetime: Option<u64>,
    /// Lifetime when none is requested.
    pub default_lifetime: u64,
    /// Longest `act` chain allowed.
    pub max_chain_depth: usize,
    /// How long after the user's sign-in (the subject's `auth_time`) any token derived from it
    /// may expire (`lifetimes.sign_in`): no edge, a self-edge included, renews past it.
    pub sign_in: u64,
    /// Seconds since the epoch.
    pub now: u64,
    /// Fresh `jti` for the new token.
    pub jti: String,
}

/// Why the policy refused; each maps to one RFC 8693 §2.2.2 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The requested scope is wider than the edge or the subject allows (`invalid_scope`). The
    /// message does not name it: it is client input and ends up in `error_description`.
    #[error("a requested scope is not allowed for this exchange")]
    Scope(String),
    /// The requested lifetime exceeds what policy allows (`invalid_request`).
    #[error("requested lifetime exceeds the subject token's expiry and no grant allows longer")]
    Lifetime,
    /// The delegation chain would be too deep (`invalid_request`).
    #[error("delegation chain longer than {0}")]
    ChainDepth(usize),
    /// The actor is not named by the subject's `may_act` (`invalid_request`).
    #[error("actor is not allowed to act for the subject (may_act)")]
    MayAct,
    /// The user's sign-in is older than `lifetimes.sign_in` (`invalid_request`): no token
    /// derived from it may be issued any more.
    #[error("the user's sign-in is too old for another token: sign in again")]
    SignInOver,
    /// The subject lacks a claim the policy needs (`invalid_request`).
    #[error("subject token lacks {0}")]
    Subject(&'static str),
    /// No target was given (`invalid_target`).
    #[error("no audience or resource requested")]
    NoTarget,
}

/// Computes the new token's claims (RFC 8693 §2.2, RFC 9068 §2.2).
pub fn decide(x: &Exchange<'_>) -> Result<Claims, Refusal> {
    if x.edges.is_empty() {
        return Err(Refusal::NoTarget);
    }
    let sub = x
        .subject
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(Refusal::Subject("sub"))?;
    let subject_exp = x
        .subject
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Refusal::Subject("exp"))?;
    let act = delegation(x)?;
    let scope = granted_scope(x)?;
    let exp = lifetime(x, subject_exp)?;

    // The subject's own claims and what the edges add; then the claims the IdP owns.
    let mut out = Claims::new();
    for (k, v) in x.subject {
        if !RESERVED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    for edge in &x.edges {
        merge(&mut out, &edge.claims);
    }
    out.insert("iss".into(), json!(x.issuer));
    out.insert("sub".into(), json!(sub));
    out.insert("aud".into(), audience(&x.edges));
    out.insert("client_id".into(), json!(x.client));
    out.insert("iat".into(), json!(x.now));
    out.insert("exp".into(), json!(exp));
    out.insert("jti".into(), json!(x.jti));
    if !scope.is_empty() {
        out.insert("scope".into(), json!(scope.join(" ")));
    }
    out.insert("grants".into(), grants(x));
    out.insert("act".into(), Value::Object(act));
    // The lineage revocation follows (`sid`, `grant_id`) passes through every exchange.
    for kept in ["acr", "amr", "auth_time", "sid", "grant_id"] {
        if let Some(v) = x.subject.get(kept) {
            out.insert(kept.into(), v.clone());
        }
    }
    Ok(out)
}

/// The new `act` claim: the acting party (the actor token's `sub`, else the client), allowed by
/// the subject's `may_act`, over the subject's chain, within the depth (RFC 8693 §4.1, §4.4).
fn delegation(x: &Exchange<'_>) -> Result<Claims, Refusal> {
    let actor = match x.actor {
        Some(a) => a
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(Refusal::MayAct)?,
        None => x.client,
    };
    if let Some(may_act) = x.subject.get("may_act") {
        let allowed = may_act.get("sub").and_then(Value::as_str) == Some(actor);
        if !allowed {
            return Err(Refusal::MayAct);
        }
    }
    let previous = x.subject.get("act").cloned();
    let depth = 1 + chain_depth(previous.as_ref());
    if depth > x.max_chain_depth {
        return Err(Refusal::ChainDepth(x.max_chain_depth));
    }
    let mut act = Claims::new();
    act.insert("sub".into(), json!(actor));
    if let Some(prev) = previous {
        act.insert("act".into(), prev);
    }
    Ok(act)
}

/// `aud`: the one target, or every distinct target in request order.
fn audience(edges: &[&Edge]) -> Value {
    let mut targets: Vec<&str> = Vec::new();
    for e in edges {
        if !targets.contains(&e.target.as_str()) {
            targets.push(&e.target);
        }
    }
    match targets.as_slice() {
        [one] => json!(one),
        many => json!(many),
    }
}

/// `grants`: the subject's, with each target of this exchange appended once.
fn grants(x: &Exchange<'_>) -> Value {
    let mut grants: Vec<Value> = match x.subject.get("grants") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for edge in &x.edges {
        let t = json!(edge.target);
        if !grants.contains(&t) {
            grants.push(t);
        }
    }
    Value::Array(grants)
}

/// How many actors a token's `act` chain holds.
pub fn chain_depth(act: Option<&Value>) -> usize {
    let mut depth = 0;
    let mut cur = act;
    while let Some(a) = cur {
        depth += 1;
        cur = a.get("act");
    }
    depth
}

/// Scope: ⊆ every edge's scopes and, unless all edges allow more, ⊆ the subject's scope.
fn granted_scope(x: &Exchange<'_>) -> Result<Vec<String>, Refusal> {
    let subject: Vec<&str> = crate::jwt::scopes(x.subject).collect();
    let allowed = |s: &str| {
        x.edges.iter().all(|e| {
            e.scopes.iter().any(|a| a == s) && (e.scope_beyond_subject || subject.contains(&s))
        })
    };
    match &x.scope {
        Some(requested) => {
            let mut out: Vec<String> = Vec::new();
            for s in requested {
                if !allowed(s) {
                    return Err(Refusal::Scope(s.clone()));
                }
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            Ok(out)
        }
        None => Ok(x.edges[0]
            .scopes
            .iter()
            .filter(|s| allowed(s))
            .cloned()
            .collect()),
    }
}

/// `exp` ≤ the subject's `exp` unless every edge's `max_lifetime` allows longer (a requested
/// lifetime past that is refused), and for a user's token never past `auth_time` + `sign_in`,
/// however often it is exchanged (a requested lifetime is cut to it: the client cannot know
/// when the user signed in).
fn lifetime(x: &Exchange<'_>, subject_exp: u64) -> Result<u64, Refusal> {
    let edge_max = x.edges.iter().map(|e| e.max_lifetime).min().flatten();
    let bound = match edge_max {
        Some(m) => subject_exp.max(x.now.saturating_add(m)),
        None => subject_exp,
    };
    let ends = match x.subject.get("auth_time").and_then(Value::as_u64) {
        Some(auth_time) => auth_time.saturating_add(x.sign_in),
        None => u64::MAX,
    };
    if ends <= x.now {
        return Err(Refusal::SignInOver);
    }
    let exp = match x.requested_lifetime {
        Some(l) if x.now.saturating_add(l) > bound => return Err(Refusal::Lifetime),
        Some(l) => x.now.saturating_add(l),
        None => x.now.saturating_add(x.default_lifetime).min(bound),
    };
    if exp <= x.now {
        // A subject within the verification leeway of its `exp`: nothing left to give.
        return Err(Refusal::Lifetime);
    }
    Ok(exp.min(ends))
}

#[cfg(test)]
mod tests;
