//! JWT verification rules (RFC 8725, RFC 9068 §4): size cap, strict JOSE header, allow-listed
//! algorithms bound to keys, explicit typing, exact `iss`, `aud`, `exp`/`nbf`/`iat` with bounded leeway.
//!
//! [`sig`] checks signatures (with `ring`), and `decode` reads header and payload as JSON objects
//! with unique member names; every other rule (`crit`, `typ`, `nbf`, JWE and nested JWTs, key
//! binding) is enforced here before or after it.

mod decode;
pub mod foreign;
pub mod jwks;
pub mod keys;
pub mod sig;

pub(crate) use decode::decode_object;
pub use decode::{peek_claims, peek_issuer};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use keys::KeySet;

/// JWS algorithms (RFC 7518 §3.1) a header may name and a configuration may allow. Only
/// asymmetric ones exist: `none` and HMAC never verify (RFC 8725 §3.1, §3.2).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384 (named in headers; no key of this kind is ever loaded).
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// EdDSA (named in headers; no key of this kind is ever loaded).
    EdDSA,
}

impl Algorithm {
    /// The `alg` header value (RFC 7518 §3.1).
    pub fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// A token's claims, as a JSON object.
pub type Claims = serde_json::Map<String, Value>;

/// Largest leeway any caller may configure, in seconds: skew beyond a minute is a broken clock.
pub const MAX_LEEWAY: u64 = 60;

/// Default token size cap, checked before any decoding.
pub const DEFAULT_MAX_LEN: usize = 8192;

/// Seconds since the Unix epoch. On Linux from the kernel's coarse wall clock
/// (`CLOCK_REALTIME_COARSE`, as recent as the last scheduler tick, 1–4 ms): token times are
/// whole seconds, and the sidecar reads the time on every request, where the precise clock and
/// the conversion of its nanoseconds cost about 70 instructions more (callgrind).
#[allow(unsafe_code)]
pub fn unix_now() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable `timespec`, the only memory the call writes.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return u64::try_from(ts.tv_sec).unwrap_or(0);
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Which kind of JWT the caller expects: explicit typing keeps kinds apart (RFC 8725 §3.11, §3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An access token: `typ` must be `at+jwt` or `application/at+jwt` (RFC 9068 §4).
    Access,
    /// An ID token: `typ` absent or `JWT`; an `at+jwt` is refused.
    Id,
    /// A client assertion (RFC 7523): `typ` absent or `JWT`; an `at+jwt` is refused.
    ClientAssertion,
    /// A Transaction Token: `typ` must be `txntoken+jwt` ([`crate::txn`]); `iat` is required.
    Txn,
    /// An access token from an issuer that does not type them (Keycloak, Entra ID and most IdPs
    /// predate RFC 9068): `typ` `at+jwt`, `JWT` or absent; `iat` is required. Only for a
    /// foreign issuer that is configured so ([`crate::config::Config::issuers`]); a token whose
    /// payload says it is an ID token (`typ` other than `Bearer`, or a `nonce`) is refused.
    UntypedAccess,
    /// A JWT-SVID (SPIFFE JWT-SVID §3): `typ` absent, `JWT` or `JOSE`; `iss` is not defined for
    /// SVIDs and so not checked (the trust domain's bundle vouches for the signer).
    Svid,
}

/// What a token must satisfy to verify.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Exact `iss` (RFC 8725 §3.8): no trailing-slash or case folding.
    pub issuer: String,
    /// `aud` must contain this value (RFC 8725 §3.9); `None` skips the check (`id_token_hint`).
    pub audience: Option<String>,
    /// The expected kind, checked through `typ`.
    pub kind: Kind,
    /// Allowed algorithms. Only asymmetric algorithms ever verify; `none` and HMAC never do.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`, in seconds; clamped to [`MAX_LEEWAY`].
    pub leeway: u64,
    /// Size cap in bytes, checked before decoding.
    pub max_len: usize,
}

impl Rules {
    /// Rules for an RFC 9068 access token addressed to `audience`: ES256 and RS256, 30 s leeway.
    pub fn access(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: Some(audience.into()),
            kind: Kind::Access,
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
            leeway: 30,
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// A token that passed every rule.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The payload.
    pub claims: Claims,
    /// The key that signed it.
    pub kid: String,
    /// The algorithm it was signed with.
    pub alg: Algorithm,
    /// Its `exp`, in seconds since the epoch.
    pub exp: u64,
    /// It is bound to a key (`cnf`, RFC 7800), so only its holder may present it. Read once
    /// here: a cached verification answers without searching the claims again.
    pub bound: bool,
    /// The claims as base64url JSON, made on first use and kept with a cached verification so a
    /// repeated token does not re-serialise its claims (the inbound claims header).
    claims_b64: std::sync::OnceLock<Option<http::HeaderValue>>,
}

impl Verified {
    /// The claims as base64url(JSON), ready to send as a header value; `None` only if they
    /// cannot be serialised (never for claims that were parsed from JSON).
    pub fn claims_header(&self) -> Option<&http::HeaderValue> {
        self.claims_b64
            .get_or_init(|| {
                let json = serde_json::to_vec(&self.claims).ok()?;
                http::HeaderValue::try_from(URL_SAFE_NO_PAD.encode(json)).ok()
            })
            .as_ref()
    }
}

/// Why a token did not verify. `Display` never contains token content, so it may be sent as an
/// RFC 6750 `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Larger than the cap.
    #[error("token larger than {0} bytes")]
    TooLarge(usize),
    /// Not a well-formed JWS compact serialization with JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// No key with this `kid` (or no `kid` and no single candidate key) at the issuer.
    #[error("no key at the issuer matches the token's kid")]
    UnknownKid,
    /// The algorithm is not allowed, or is not the algorithm bound to the key.
    #[error("algorithm not allowed")]
    Algorithm,
    /// `crit` names a parameter this verifier does not understand (RFC 7515 §4.1.11).
    #[error("unsupported critical header parameter")]
    Crit,
    /// `typ` does not match the expected kind of token (RFC 8725 §3.11).
    #[error("wrong token type")]
    Type,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    #[error("issuer mismatch")]
    Issuer,
    /// `aud` does not contain the expected audience.
    #[error("audience mismatch")]
    Audience,
    /// A required claim is absent or of the wrong type.
    #[error("missing or invalid claim {0}")]
    MissingClaim(&'static str),
}

/// Verifies `token` against `keys` and `rules` at time `now` (seconds since the epoch).
///
/// Order of checks: size, structure, header (`crit`, JWE, nested JWT, `alg`, `typ`), key lookup by
/// `kid` (never `jku`, `x5u`, inline `jwk`/`x5c`: those are ignored), signature, then claims.
pub fn verify(
    token: &str,
    keys: &KeySet,
    rules: &Rules,
    now: u64,
) -> Result<Verified, VerifyError> {
    if token.len() > rules.max_len {
        return Err(VerifyError::TooLarge(rules.max_len));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or(VerifyError::Malformed("expected three dot-separated parts"))?;
    let (header_b64, payload_b64) = message
        .split_once('.')
        .ok_or(VerifyError::Malformed("expected three dot-separated parts"))?;
    if payload_b64.contains('.') {
        return Err(VerifyError::Malformed(
            "JWE and other serializations are not accepted",
        ));
    }
    if signature.is_empty() {
        return Err(VerifyError::Signature);
    }
    for part in [header_b64, payload_b64, signature] {
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(VerifyError::Malformed("parts must be unpadded base64url"));
        }
    }

    let header =
        decode_object(header_b64).ok_or(VerifyError::Malformed("header is not a JSON object"))?;
    let alg = check_header(&header, rules)?;
    let kid = header.get("kid").and_then(Value::as_str);
    let (kid, key) = keys.find(kid, alg).ok_or(VerifyError::UnknownKid)?;
    if key.alg != alg {
        return Err(VerifyError::Algorithm);
    }
    if !key.public.verify(alg, message.as_bytes(), signature) {
        return Err(VerifyError::Signature);
    }

    let claims =
        decode_object(payload_b64).ok_or(VerifyError::Malformed("payload is not a JSON object"))?;
    let exp = check_claims(&claims, rules, now)?;
    Ok(Verified {
        bound: claims.contains_key("cnf"),
        claims,
        kid: kid.to_owned(),
        alg,
        exp,
        claims_b64: std::sync::OnceLock::new(),
    })
}

/// Header rules: no `crit` (none are understood), no JWE, no nested JWT, allow-listed `alg`, `typ`.
fn check_header(header: &Claims, rules: &Rules) -> Result<Algorithm, VerifyError> {
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
fn check_claims(claims: &Claims, rules: &Rules, now: u64) -> Result<u64, VerifyError> {
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

/// The values of `aud`, whether it is a string or an array of strings (RFC 7519 §4.1.3).
pub fn audiences(claims: &Claims) -> impl Iterator<Item = &str> {
    let (one, many) = match claims.get("aud") {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(items)) => (None, Some(items.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

/// The space-separated `scope` claim as a list (RFC 8693 §4.2).
pub fn scopes(claims: &Claims) -> impl Iterator<Item = &str> {
    claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_ascii_whitespace()
}

#[cfg(test)]
mod tests;
