//! Transaction Tokens (draft-ietf-oauth-transaction-tokens): the token format both sides share.
//!
//! A Txn-Token is a short-lived JWS signed by the trust domain's Txn-Token Service (baton-idp),
//! typed `txntoken+jwt`, addressed (`aud`) to the trust domain, and carrying the transaction id
//! (`txn`), the subject (`sub`), the authorised `scope`, the requesting workloads (`req_wl`), and
//! the immutable transaction and request context (`tctx`, `rctx`). It travels unmodified in the
//! `Txn-Token` header. [`verify`] is the one check every verifier runs: the JWT rules of
//! [`crate::jwt`] with [`Kind::Txn`] (so an access token is never a Txn-Token and a Txn-Token never
//! an access token), then the claims this format requires. [`context`] reads and bounds the JSON
//! objects a request may put into `tctx` and `rctx`.

use crate::jwt::{self, Algorithm, Claims, Kind, Rules, Verified, VerifyError, keys::KeySet};
use serde_json::Value;

/// RFC 8693 token type URN of a Txn-Token.
pub const TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// The JWS `typ` header of a Txn-Token.
pub const TYP: &str = "txntoken+jwt";
/// The HTTP header a Txn-Token travels in (lower case, as `http` spells header names).
pub const HEADER: &str = "txn-token";
/// Subject token type of a workload's own unsigned JSON statement of the subject: accepted only
/// from clients the IdP configuration names.
pub const UNSIGNED_JSON: &str = "urn:ietf:params:oauth:token-type:unsigned_json";
/// Subject token type of a JWT the requesting workload signed with its registered keys
/// (`iss` the workload, `aud` the Txn-Token Service, `sub` the subject): accepted only from
/// clients the IdP configuration names.
pub const SELF_SIGNED: &str = "urn:ietf:params:oauth:token-type:self_signed";
/// Largest `tctx` or `rctx` object, serialised, in bytes: both travel in every request of the
/// transaction, inside a token whose verification caps its size ([`jwt::DEFAULT_MAX_LEN`]).
pub const MAX_CONTEXT_BYTES: usize = 1024;
/// Separates the requesting workloads in `req_wl`, oldest first: the claim is a string, and a
/// replacement keeps the call chain by appending its requester.
pub const REQ_WL_SEPARATOR: char = ',';
/// Most requesting workloads a chain of replacements may name in `req_wl`.
pub const MAX_REQ_WL: usize = 8;
/// Longest `txn`, `sub` or workload identifier accepted.
const MAX_ID_LEN: usize = 256;

/// The rules a Txn-Token of `issuer` for the trust domain `audience` is verified under.
pub fn rules(
    issuer: impl Into<String>,
    audience: impl Into<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
) -> Rules {
    Rules {
        issuer: issuer.into(),
        audience: Some(audience.into()),
        kind: Kind::Txn,
        algorithms,
        leeway,
        max_len: jwt::DEFAULT_MAX_LEN,
    }
}

/// Verifies `token` as a Txn-Token: signature and JWT rules (`typ` `txntoken+jwt`, exact `iss`,
/// `aud` the trust domain, `exp`, `iat` not in the future), then [`check_claims`].
pub fn verify(
    token: &str,
    keys: &KeySet,
    rules: &Rules,
    now: u64,
) -> Result<Verified, VerifyError> {
    if rules.kind != Kind::Txn {
        return Err(VerifyError::Type);
    }
    let verified = jwt::verify(token, keys, rules, now)?;
    check_claims(&verified.claims)?;
    Ok(verified)
}

/// The claims a Txn-Token must carry besides `iss`, `aud`, `iat`, `exp`: a `txn`, a `sub` and a
/// `req_wl` (non-empty strings), a `scope` string, and `tctx`/`rctx` objects when present. Other
/// claims are ignored.
pub fn check_claims(claims: &Claims) -> Result<(), VerifyError> {
    let id = |name: &'static str| match claims.get(name).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(()),
        _ => Err(VerifyError::MissingClaim(name)),
    };
    id("txn")?;
    id("sub")?;
    match claims.get("req_wl").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= MAX_ID_LEN * MAX_REQ_WL => {}
        _ => return Err(VerifyError::MissingClaim("req_wl")),
    }
    if !matches!(claims.get("scope"), Some(Value::String(_))) {
        return Err(VerifyError::MissingClaim("scope"));
    }
    for name in ["tctx", "rctx"] {
        if !matches!(claims.get(name), None | Some(Value::Object(_))) {
            return Err(VerifyError::MissingClaim(name));
        }
    }
    Ok(())
}

/// The requesting workloads `req_wl` names, oldest first.
pub fn requesting_workloads(claims: &Claims) -> Vec<String> {
    claims
        .get("req_wl")
        .and_then(Value::as_str)
        .map(|s| s.split(REQ_WL_SEPARATOR).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Why a context parameter was refused. `Display` is safe to send as an `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Larger than [`MAX_CONTEXT_BYTES`].
    #[error("larger than {MAX_CONTEXT_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with unique member names.
    #[error("must be a JSON object")]
    NotObject,
}

/// A `request_context` or `request_details` parameter: a JSON object (unique member names) of at
/// most [`MAX_CONTEXT_BYTES`], checked before it is parsed.
pub fn context(text: &str) -> Result<Claims, ContextError> {
    if text.len() > MAX_CONTEXT_BYTES {
        return Err(ContextError::TooLarge);
    }
    let value: Value = serde_json::from_str(text).map_err(|_| ContextError::NotObject)?;
    match value {
        Value::Object(map) if unique_members(text, map.len()) => Ok(map),
        _ => Err(ContextError::NotObject),
    }
}

/// Whether the object `text` holds has `len` top-level members, i.e. none repeated: parsing
/// keeps the last of duplicates, so count the members as written.
fn unique_members(text: &str, len: usize) -> bool {
    struct Count(usize);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while a
                        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                        .is_some()
                    {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Count>(text).is_ok_and(|Count(n)| n == len)
}

/// The serialised size of a context object, for the bound on merged contexts.
pub fn context_len(map: &Claims) -> usize {
    serde_json::to_vec(map).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests;
