//! The rules on either side of the signature check: the JOSE header's before it (which
//! algorithm, which type, nothing that is not understood), the claims' after it (the time
//! window, the issuer, the audience).

use super::{Algorithm, Claims, Kind, MAX_LEEWAY, Rules, VerifyError, audiences};
use serde_json::Value;

/// Header rules: no `crit` (none are understood), no JWE, no nested JWT, allow-listed `alg`, `typ`.
pub(super) fn check_header(header: &Claims, rules: &Rules) -> Result<Algorithm, VerifyError> {
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(VerifyError::Crit);
    }
    if header.contains_key("enc") || header.contains_key("zip") {
        return Err(VerifyError::Malformed("JWE is not accepted"));
    }
    if header
        .get("cty")
        .and_then(Value::as_str)
        .is_some_and(|c| c.eq_ignore_ascii_case("jwt"))
    {
        return Err(VerifyError::Malformed("nested JWTs are not accepted"));
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("ES384") => Algorithm::ES384,
        Some("RS256") => Algorithm::RS256,
        Some("RS384") => Algorithm::RS384,
        Some("RS512") => Algorithm::RS512,
        Some("PS256") => Algorithm::PS256,
        Some("EdDSA") => Algorithm::EdDSA,
        _ => return Err(VerifyError::Algorithm),
    };
    if !rules.algorithms.contains(&alg) {
        return Err(VerifyError::Algorithm);
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(_) => return Err(VerifyError::Type),
    };
    let typ = typ
        .as_deref()
        .map(|t| t.strip_prefix("application/").unwrap_or(t));
    let ok = match rules.kind {
        Kind::Access => typ == Some("at+jwt"),
        Kind::Txn => typ == Some("txntoken+jwt"),
        Kind::Id | Kind::ClientAssertion => matches!(typ, None | Some("jwt")),
        Kind::UntypedAccess => matches!(typ, None | Some("jwt") | Some("at+jwt")),
        Kind::Svid => matches!(typ, None | Some("jwt") | Some("jose")),
    };
    if ok { Ok(alg) } else { Err(VerifyError::Type) }
}

/// Claim rules: `exp` required and in the future, `nbf` and `iat` not in the future, exact `iss`,
/// `aud` containing the expected audience. Returns `exp`.
pub(super) fn check_claims(claims: &Claims, rules: &Rules, now: u64) -> Result<u64, VerifyError> {
    let leeway = rules.leeway.min(MAX_LEEWAY);
    let exp = numeric_date(claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
    if exp.saturating_add(leeway) <= now {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid);
    }
    match numeric_date(claims, "iat")? {
        Some(iat) if iat > now.saturating_add(leeway) => return Err(VerifyError::IssuedInFuture),
        None if matches!(rules.kind, Kind::Access | Kind::Txn | Kind::UntypedAccess) => {
            return Err(VerifyError::MissingClaim("iat"));
        }
        _ => {}
    }
    // `auth_time` bounds a step-up's `max_age` and the life of every token exchanged from this
    // one, which read it as an integer: anything else, or a sign-in in the future, is refused.
    if let Some(t) = claims.get("auth_time") {
        match t.as_u64() {
            Some(t) if t <= now.saturating_add(leeway) => {}
            Some(_) => return Err(VerifyError::IssuedInFuture),
            None => return Err(VerifyError::MissingClaim("auth_time")),
        }
    }
    if rules.kind == Kind::UntypedAccess {
        // Keycloak marks its ID tokens `"typ": "ID"` in the payload and its access tokens
        // `"typ": "Bearer"`; an ID token of the code flow carries the client's `nonce`.
        let id_typed = claims
            .get("typ")
            .is_some_and(|t| !t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
        if id_typed || claims.contains_key("nonce") {
            return Err(VerifyError::Type);
        }
    }
    if rules.kind != Kind::Svid
        && claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str())
    {
        return Err(VerifyError::Issuer);
    }
    if let Some(aud) = &rules.audience
        && !audiences(claims).any(|a| a == aud)
    {
        return Err(VerifyError::Audience);
    }
    Ok(exp)
}

/// A NumericDate claim (RFC 7519 §2): a non-negative number; fractions are truncated.
fn numeric_date(claims: &Claims, name: &'static str) -> Result<Option<u64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
            _ => Err(VerifyError::MissingClaim(name)),
        },
        Some(_) => Err(VerifyError::MissingClaim(name)),
    }
}
