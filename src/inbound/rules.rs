//! The pure request phases: bearer extraction (RFC 6750 §2), route matching on the canonical
//! path, and route rules (scopes, claims, RFC 9470 `acr`/`max_age`). No I/O; time is an
//! argument.

use super::Reject;
use crate::config::{Access, ClaimRule, Requirements, Route};
use crate::http::path::under;
use crate::jwt::{Claims, scopes};
use crate::secret::Token;
use http::{HeaderMap, Method, header};
use serde_json::Value;

/// Refuses `access_token` in the query string (RFC 6750 §2.3 is not supported, on purpose).
pub fn refuse_query_token(query: Option<&str>) -> Result<(), Reject> {
    let found = query
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"));
    if found {
        Err(Reject::TokenInQuery)
    } else {
        Ok(())
    }
}

/// Whether `b` is a b64token character of RFC 6750 §2.1 (besides the trailing `=`). Written
/// without branches or a table so that the check over a whole token vectorizes: every inbound
/// request runs it on each byte of its token.
fn b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// The scheme and credential of a request's one `Authorization: Bearer|DPoP <credential>`
/// header (RFC 6750 §2.1, RFC 9449 §7.1), trimmed, its characters not yet checked: [`b64token`] checks them. A connection that
/// repeats a credential already verified skips that check
/// ([`crate::jwt::jwks::Verifier::remembered`]).
pub fn presented(headers: &HeaderMap) -> Result<(Scheme, &[u8]), Reject> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Reject::NoToken)?;
    if values.next().is_some() {
        return Err(Reject::BadHeader("more than one Authorization header"));
    }
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Reject::BadHeader("expected Bearer <token>"))?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        return Err(Reject::BadHeader("scheme must be Bearer or DPoP"));
    };
    Ok((scheme, token.trim_ascii()))
}

/// The authentication scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449 §7.1): the token must be bound and come with a proof.
    Dpop,
}

/// The presented credential as a token, if it is a b64token (RFC 6750 §2.1):
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn b64token(presented: &[u8]) -> Result<Token, Reject> {
    let body_end = presented
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |i| i + 1);
    let b64token = body_end > 0
        && presented[..body_end]
            .iter()
            .fold(true, |ok, &b| ok & b64token_char(b));
    // b64token characters are visible ASCII, so this only converts.
    let token = std::str::from_utf8(presented)
        .ok()
        .filter(|_| b64token)
        .ok_or(Reject::BadHeader("token is not a b64token"))?;
    Ok(Token::new(token))
}

/// The first route whose prefix (on whole segments) and methods cover the request, with its
/// position in the table. `path` is the canonical path ([`crate::http::path::canonical`]).
pub fn find_route<'a>(
    routes: &'a [Route],
    method: &Method,
    path: &str,
) -> Option<(usize, &'a Route)> {
    routes.iter().enumerate().find(|(_, r)| {
        under(path, &r.path, r.case_insensitive)
            && r.methods.as_ref().is_none_or(|ms| covers(ms, method))
    })
}

/// Whether a route's `methods` cover `method`: regardless of case (many frameworks upper-case
/// the method, so `post` would reach a `POST` handler), and `GET` covers `HEAD`, which
/// frameworks answer with the `GET` handler.
fn covers(methods: &[Method], method: &Method) -> bool {
    methods.iter().any(|m| {
        m == method
            || m.as_str().eq_ignore_ascii_case(method.as_str())
            || (*m == Method::GET && method.as_str().eq_ignore_ascii_case("HEAD"))
    })
}

/// Whether the route needs a token, and if so whether the verified claims satisfy it.
pub fn authorize(access: &Access, claims: &Claims, now: u64) -> Result<(), Reject> {
    match access {
        Access::Public => Ok(()),
        Access::Token(req) => check(req, claims, now),
    }
}

fn check(req: &Requirements, claims: &Claims, now: u64) -> Result<(), Reject> {
    if !req.acr.is_empty() {
        let acr = claims.get("acr").and_then(Value::as_str);
        if !acr.is_some_and(|a| req.acr.iter().any(|r| r == a)) {
            return Err(Reject::StepUp {
                acr_values: Some(req.acr.join(" ")),
                max_age: req.max_age,
            });
        }
    }
    if let Some(max_age) = req.max_age {
        let auth_time = claims.get("auth_time").and_then(Value::as_u64);
        if auth_time.is_none_or(|t| now.saturating_sub(t) > max_age) {
            let acr_values = (!req.acr.is_empty()).then(|| req.acr.join(" "));
            return Err(Reject::StepUp {
                acr_values,
                max_age: Some(max_age),
            });
        }
    }
    // No list is collected: a route without required scopes does no work here, and a route
    // with a few reads the token's short `scope` claim once per required scope.
    if !req.scopes.iter().all(|s| scopes(claims).any(|g| g == s)) {
        return Err(Reject::InsufficientScope(req.scopes.join(" ")));
    }
    for rule in &req.claims {
        if !claim_holds(rule, claims) {
            let name = match rule {
                ClaimRule::Contains { claim, .. } | ClaimRule::Equals { claim, .. } => claim,
            };
            return Err(Reject::Claim(name.clone()));
        }
    }
    Ok(())
}

fn claim_holds(rule: &ClaimRule, claims: &Claims) -> bool {
    match rule {
        ClaimRule::Contains { claim, value } => match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
            Some(Value::String(s)) => s.split_ascii_whitespace().any(|v| v == value),
            _ => false,
        },
        ClaimRule::Equals { claim, value } => claims.get(claim) == Some(value),
    }
}

#[cfg(test)]
mod tests;
