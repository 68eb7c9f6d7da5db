//! JWT verification rules (RFC 8725, RFC 9068 §4): size cap, strict JOSE header, allow-listed
//! algorithms bound to keys, explicit typing, exact `iss`, `aud`, `exp`/`nbf`/`iat` with bounded leeway.
//!
//! [`sig`] checks signatures (with `ring`), and `decode` reads header and payload as JSON objects
//! with unique member names; every other rule is enforced before or after it: the header's
//! (`crit`, JWE and nested JWTs, `alg`, `typ`) and the claims' (`exp`, `nbf`, `iat`, `iss`, `aud`)
//! in `check`, key binding here.

mod check;
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

use check::{check_claims, check_header};
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
