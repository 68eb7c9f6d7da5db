//! The token endpoint's success answer, checked before its token is cached or sent anywhere.
//!
//! A 2xx body that is not JSON at all is the IdP being unavailable (an error page in front of
//! it). A JSON answer is used only when it is what was asked for:
//! - `access_token` is present and is a JWT whose payload reads as a JSON object (baton's next
//!   hop verifies JWT access tokens, RFC 9068; an opaque token could not pass there either);
//! - `token_type` is `Bearer`, compared case-insensitively (RFC 6749 §5.1, §7.1), or, only when
//!   the sidecar sent a DPoP proof, `DPoP` with `cnf.jkt` the thumbprint of the sidecar's own
//!   key (RFC 9449 §5): such a token goes out as `DPoP` with a proof per call; a bound token the
//!   sidecar did not ask for, or bound to another key, is never used;
//! - `issued_token_type` is the type requested (RFC 8693 §2.2.1 makes it REQUIRED in an exchange
//!   answer); a `client_credentials` answer (RFC 6749 §4.4.3) need not carry it, but when it does
//!   it must be that type;
//! - in an exchange, the token's `sub` is the subject token's `sub` (RFC 8693 §1.1: the issued
//!   token speaks for the same subject); a `client_credentials` token's `sub` is left to the IdP,
//!   which names service accounts its own way;
//! - the token's `aud` contains the route's `audience` when the route names one; a route that
//!   names only `resources` gets whatever audience the IdP maps them to (RFC 8707 §2), which
//!   must be present.
//!
//! The payload is decoded without checking its signature. The token comes straight from the
//! IdP the sidecar authenticated to, and every next hop verifies it; the check here is that the
//! IdP's answer matches the question, so that a confused or misconfigured IdP (or one answering
//! for another client) cannot make the sidecar forward someone else's token.

use super::{ACCESS_TOKEN_TYPE, ExchangeError, Issued, Target};
use crate::jwt::{self, Claims};
use crate::secret::{Token, fingerprint};
use serde::Deserialize;
use serde_json::Value;

/// Which grant an answer is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asked<'a> {
    /// RFC 8693 token exchange, for the subject whose `sub` is given (when readable).
    Exchange(Option<&'a str>),
    /// RFC 8693 token exchange of a subject token another issuer signed (a trusted foreign
    /// issuer of the IdP): the IdP names that user within its own domain, its issuer's
    /// prefix (which ends with `:`) followed by the subject's `sub`, which is given.
    Crossing(&'a str),
    /// RFC 6749 §4.4 `client_credentials`: the service's own identity.
    ClientCredentials,
}

/// Why a success answer from the token endpoint was not used. Each is a fixed word: it labels
/// the `baton_exchange_answers_refused_total` metric and never carries what the IdP sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAnswer {
    /// JSON, but not an object of the token response's shape (a member of the wrong type, a
    /// member twice).
    Shape,
    /// No `access_token`, or one that is not a JWT with a JSON payload.
    AccessToken,
    /// `token_type` missing or other than `Bearer` (or `DPoP` bound to the sidecar's key, when
    /// asked).
    TokenType,
    /// `issued_token_type` missing from an exchange answer, or other than the type requested.
    IssuedTokenType,
    /// The token's `sub` is missing or is not the subject's.
    Subject,
    /// The token's `aud` is missing or does not contain the requested audience.
    Audience,
}

impl BadAnswer {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shape => "shape",
            Self::AccessToken => "access_token",
            Self::TokenType => "token_type",
            Self::IssuedTokenType => "issued_token_type",
            Self::Subject => "sub",
            Self::Audience => "aud",
        }
    }

    /// What the app is told, without anything the IdP sent.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Shape => "the answer is not a token response",
            Self::AccessToken => "access_token is missing or not a JWT",
            Self::TokenType => "token_type is missing or not Bearer",
            Self::IssuedTokenType => "issued_token_type is missing or not the type requested",
            Self::Subject => "the issued token's sub is not the subject token's",
            Self::Audience => "the issued token's aud is not the audience requested",
        }
    }
}

/// RFC 6749 §5.1 / RFC 8693 §2.2.1 success response; other members are ignored.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    issued_token_type: Option<String>,
    expires_in: Option<u64>,
}

/// The token of a 2xx answer `body` to a request for `target` sent without a DPoP proof.
#[cfg(test)]
pub(super) fn check(
    body: &[u8],
    asked: Asked<'_>,
    target: &Target,
    now: u64,
) -> Result<Issued, ExchangeError> {
    check_for(body, asked, target, None, now)
}

/// The token of a 2xx answer `body` to a request for `target`, once every check above passes;
/// `proof_key` is the thumbprint of the key of the DPoP proof the request carried, if any.
pub(super) fn check_for(
    body: &[u8],
    asked: Asked<'_>,
    target: &Target,
    proof_key: Option<&str>,
    now: u64,
) -> Result<Issued, ExchangeError> {
    let bad = ExchangeError::BadAnswer;
    let rsp: TokenResponse = match serde_json::from_slice(body) {
        Ok(rsp) => rsp,
        // Not JSON at all: an error page in front of the IdP, as when it is down.
        Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() => {
            return Err(ExchangeError::unavailable(
                "token endpoint answered malformed JSON",
            ));
        }
        Err(_) => return Err(bad(BadAnswer::Shape)),
    };
    let token = rsp
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or(bad(BadAnswer::AccessToken))?;
    let claims = jwt::peek_claims(&token).ok_or(bad(BadAnswer::AccessToken))?;
    let token_type = rsp.token_type.as_deref().unwrap_or("");
    let bound = crate::dpop::bound_jkt(&claims);
    let dpop = match (proof_key, bound) {
        (_, None) if token_type.eq_ignore_ascii_case("bearer") => false,
        (Some(mine), Some(jkt)) if token_type.eq_ignore_ascii_case("dpop") && jkt == mine => true,
        _ => return Err(bad(BadAnswer::TokenType)),
    };
    let requested = target
        .requested_token_type
        .as_deref()
        .unwrap_or(ACCESS_TOKEN_TYPE);
    let type_ok = match (asked, rsp.issued_token_type.as_deref()) {
        (_, Some(t)) => t == requested,
        (Asked::ClientCredentials, None) => true,
        (Asked::Exchange(_) | Asked::Crossing(_), None) => false,
    };
    if !type_ok {
        return Err(bad(BadAnswer::IssuedTokenType));
    }
    let sub = claims.get("sub").and_then(Value::as_str);
    let same = match (asked, sub) {
        (Asked::ClientCredentials, _) => true,
        (_, None) => false,
        (Asked::Exchange(Some(want)), Some(got)) => want == got,
        (Asked::Exchange(None), Some(_)) => true,
        (Asked::Crossing(want), Some(got)) => got
            .strip_suffix(want)
            .is_some_and(|prefix| !want.is_empty() && prefix.len() > 1 && prefix.ends_with(':')),
    };
    if !same {
        return Err(bad(BadAnswer::Subject));
    }
    if !audience_ok(&claims, target.audience.as_deref()) {
        return Err(bad(BadAnswer::Audience));
    }
    issued(Token::new(token), &claims, rsp.expires_in, now, dpop)
}

/// `aud` (a string or an array of strings, RFC 7519 §4.1.3) is present and, when `want` is
/// given, contains it.
fn audience_ok(claims: &Claims, want: Option<&str>) -> bool {
    let listed: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(all)) => {
            let strings: Option<Vec<&str>> = all.iter().map(Value::as_str).collect();
            match strings {
                Some(s) => s,
                None => return false,
            }
        }
        _ => return false,
    };
    match want {
        Some(a) => listed.contains(&a),
        None => !listed.is_empty(),
    }
}

/// The issued token with its expiry (the earlier of `exp` and `expires_in`) and audit fields.
pub(super) fn issued(
    token: Token,
    claims: &Claims,
    expires_in: Option<u64>,
    now: u64,
    dpop: bool,
) -> Result<Issued, ExchangeError> {
    let exp = claims.get("exp").and_then(Value::as_u64);
    let by_expires_in = expires_in.map(|s| now.saturating_add(s));
    let expires_at = match (exp, by_expires_in) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => now,
    };
    let sub_hash = claims
        .get("sub")
        .and_then(Value::as_str)
        .map(|s| fingerprint(s.as_bytes()))
        .unwrap_or_default();
    let mut chain = Vec::new();
    let mut act = claims.get("act");
    while let Some(a) = act {
        if let Some(sub) = a.get("sub").and_then(Value::as_str) {
            chain.push(sub.to_owned());
        }
        act = a.get("act");
    }
    let made = if dpop {
        Issued::bound(token, expires_at, sub_hash, chain.join(">"))
    } else {
        Issued::new(token, expires_at, sub_hash, chain.join(">"))
    };
    made.ok_or_else(|| {
        ExchangeError::unavailable("the IdP issued a token that is not a header value")
    })
}

#[cfg(test)]
mod tests;
