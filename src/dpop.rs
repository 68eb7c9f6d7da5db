//! DPoP (RFC 9449): proof-of-possession of a key by the party presenting a token, shared by
//! `baton-idp` (the token endpoint) and the sidecar (inbound check, outbound proofs).
//!
//! - [`check`]: one proof JWT against the request it came with: `typ`, the public `jwk` and its
//!   algorithm, the signature, `htm`, `htu`, `iat` window, `ath`; answers the key's RFC 7638
//!   thumbprint ([`Proof::jkt`]).
//! - [`Verifier`]: [`check`] plus the bounded replay store ([`replay`]).
//! - [`header`]: a proof's header checked and its key prepared, cached by the header's bytes.
//! - [`key`]: public proof keys from a JWK (ES256, RS256, EdDSA) and their thumbprints.
//! - [`holder`]: a key pair held in memory that signs proofs (the outbound sidecar, tests), EdDSA
//!   (Ed25519) or ES256.
//!
//! Error texts never carry the proof, the token or any key material.

pub mod header;
pub mod holder;
pub mod key;
mod payload;
pub mod replay;

pub use header::{HeaderCache, ProofHeader};
pub use holder::{Holder, ProofAlg};
pub use replay::Replay;

use crate::jwt::Claims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const TYP: &str = "dpop+jwt";

/// The `DPoP` request header.
pub const HEADER: &str = "dpop";

/// The header a server sends the nonce the next proof must carry in (RFC 9449 §8.1).
pub const NONCE_HEADER: &str = "dpop-nonce";

/// The algorithms a proof may be signed with, as advertised
/// (`dpop_signing_alg_values_supported`, `WWW-Authenticate: DPoP algs=…`).
pub const ALGORITHMS: [&str; 3] = ["ES256", "RS256", "EdDSA"];

/// The challenge's `algs` parameter value.
pub const ALGS_PARAM: &str = "ES256 RS256 EdDSA";

/// Largest proof accepted, checked before any decoding (an RSA-8192 `jwk` and signature fit).
pub const MAX_PROOF_LEN: usize = 8192;

/// Longest signature decoded: RS256 with the largest modulus accepted (8192 bits).
const MAX_SIGNATURE_LEN: usize = 1024;

/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// Longest `nonce` claim accepted (RFC 9449 §8); longer ones are refused as malformed.
pub const MAX_NONCE_LEN: usize = 512;

/// How old a proof's `iat` may be, in seconds, by default.
pub const DEFAULT_WINDOW: u64 = 60;

/// How far in the future a proof's `iat` may be (clock skew), in seconds.
pub const FUTURE_SKEW: u64 = 5;

/// Proofs remembered for replay detection at most, by default.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Why a proof was refused. `Display` names the rule, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// More than one `DPoP` header, or one that is not visible ASCII.
    #[error("exactly one DPoP header is allowed")]
    Header,
    /// Larger than [`MAX_PROOF_LEN`].
    #[error("proof too large")]
    TooLarge,
    /// Not a compact JWS with JSON header and payload.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("typ must be dpop+jwt")]
    Type,
    /// `alg` not allowed, or not the algorithm of the key.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The `jwk` header is missing, private, or not a usable public key.
    #[error("jwk: {0}")]
    Key(&'static str),
    /// The signature does not verify under `jwk`.
    #[error("signature does not verify")]
    Signature,
    /// A required claim is missing or of the wrong type.
    #[error("missing or invalid claim {0}")]
    Claim(&'static str),
    /// `htm` is not the request's method.
    #[error("htm does not match the request method")]
    Method,
    /// `htu` is not the request's URI.
    #[error("htu does not match the request URI")]
    Uri,
    /// `iat` outside the accepted window.
    #[error("iat outside the accepted window")]
    Time,
    /// `ath` missing or not the hash of the presented token.
    #[error("ath does not match the access token")]
    Ath,
    /// The same proof was seen before.
    #[error("proof replayed")]
    Replayed,
    /// The replay store is full of live proofs; refused rather than forgotten.
    #[error("too many proofs in flight; retry")]
    Busy,
    /// The key is not the one the token is bound to.
    #[error("proof key does not match the token binding")]
    Binding,
    /// A DPoP-bound token came without a proof.
    #[error("a DPoP proof is required")]
    Missing,
}

/// What a proof must match: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request method, exactly (`POST`).
    pub htm: &'a str,
    /// The request URI without query and fragment, as this server's external URL spells it:
    /// an absolute http(s) URI that [`normalize_htu`] takes (a configured base URL checked with
    /// it, and a path). A proof's `htu` of the same text matches it without being parsed.
    pub htu: &'a str,
    /// The access token presented with the proof: `ath` must be its hash.
    pub token: Option<&'a str>,
}

/// A proof that passed [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: u64,
    /// The proof's `nonce` (RFC 9449 §8), for a server that issues them to check.
    pub nonce: Option<String>,
}

/// base64url(SHA-256(token)): a proof's `ath` (RFC 9449 §4.2).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[token.as_bytes()]))
}

/// `uri` as `htu` compares it (RFC 9449 §4.3): parsed and normalised (scheme and host case,
/// default port, dot segments), query and fragment removed. `None` if it is not an absolute
/// http(s) URI.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let mut u = url::Url::parse(uri).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    Some(u.into())
}

/// Checks one proof against `expect` at `now`: every rule except replay (see [`Verifier`]).
/// `window` is how old `iat` may be, in seconds.
pub fn check(proof: &str, expect: &Expect<'_>, now: u64, window: u64) -> Result<Proof, ProofError> {
    check_with(proof, expect, now, window, None).map(|(p, _)| p)
}

/// [`check`] with the header taken from `headers` when it was seen before.
pub fn check_cached(
    headers: &HeaderCache,
    proof: &str,
    expect: &Expect<'_>,
    now: u64,
    window: u64,
) -> Result<Proof, ProofError> {
    check_with(proof, expect, now, window, Some(headers)).map(|(p, _)| p)
}

fn check_with(
    proof: &str,
    expect: &Expect<'_>,
    now: u64,
    window: u64,
    headers: Option<&HeaderCache>,
) -> Result<(Proof, std::sync::Arc<ProofHeader>), ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::TooLarge);
    }
    let (message, signature) = proof
        .rsplit_once('.')
        .ok_or(ProofError::Malformed("expected three parts"))?;
    let (header_b64, payload_b64) = message
        .split_once('.')
        .ok_or(ProofError::Malformed("expected three parts"))?;
    for part in [header_b64, payload_b64, signature] {
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ProofError::Malformed("parts must be unpadded base64url"));
        }
    }
    let (header, seen) = match headers.and_then(|c| c.get(header_b64)) {
        Some(hit) => (hit, true),
        None => (std::sync::Arc::new(header::parse(header_b64)?), false),
    };
    let mut sig = [0; MAX_SIGNATURE_LEN];
    let sig_len = URL_SAFE_NO_PAD
        .decode_slice(signature, &mut sig)
        .map_err(|_| ProofError::Signature)?;
    if !header.key.verify(message.as_bytes(), &sig[..sig_len]) {
        return Err(ProofError::Signature);
    }
    if let Some(cache) = headers.filter(|_| !seen) {
        cache.keep(header_b64, header.clone());
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| ProofError::Malformed("payload is not a JSON object"))?;
    let claims = payload::Payload::parse(&payload)
        .ok_or(ProofError::Malformed("payload is not a JSON object"))?;
    let jti = string(&claims.jti, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(ProofError::Claim("jti"));
    }
    if string(&claims.htm, "htm")? != expect.htm {
        return Err(ProofError::Method);
    }
    let htu = string(&claims.htu, "htu")?;
    // `expect.htu` is a URI `normalize_htu` takes (see `Expect::htu`): the same text is the same
    // URI, and only another spelling is parsed and compared normalised.
    if htu != expect.htu
        && (normalize_htu(htu).ok_or(ProofError::Uri)?
            != normalize_htu(expect.htu).ok_or(ProofError::Uri)?)
    {
        return Err(ProofError::Uri);
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(payload::Member::as_u64)
        .ok_or(ProofError::Claim("iat"))?;
    if iat > now.saturating_add(FUTURE_SKEW) || iat.saturating_add(window) < now {
        return Err(ProofError::Time);
    }
    if let Some(token) = expect.token {
        let sent = claims
            .ath
            .as_ref()
            .and_then(payload::Member::as_str)
            .ok_or(ProofError::Ath)?;
        let want = ath(token);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            want.as_bytes(),
        )) {
            return Err(ProofError::Ath);
        }
    }
    let nonce = match &claims.nonce {
        None => None,
        Some(payload::Member::Str(n)) if !n.is_empty() && n.len() <= MAX_NONCE_LEN => {
            Some(n.clone().into_owned())
        }
        Some(_) => return Err(ProofError::Claim("nonce")),
    };
    let proof = Proof {
        jkt: header.jkt.clone(),
        jti: jti.to_owned(),
        iat,
        nonce,
    };
    Ok((proof, header))
}

fn string<'a>(
    member: &'a Option<payload::Member<'_>>,
    name: &'static str,
) -> Result<&'a str, ProofError> {
    member
        .as_ref()
        .and_then(payload::Member::as_str)
        .ok_or(ProofError::Claim(name))
}

/// The one `DPoP` header of a request: `Ok(None)` when there is none, an error when there are
/// several (RFC 9449 §4.3 check 1) or it is not visible ASCII.
pub fn header(headers: &http::HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProofError::Header);
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| ProofError::Header)
}

/// The `cnf.jkt` of a token's claims, if it is DPoP-bound (RFC 9449 §6.1).
pub fn bound_jkt(claims: &Claims) -> Option<&str> {
    claims.get("cnf")?.get("jkt")?.as_str()
}

/// Checks proofs and refuses replays within the window.
#[derive(Debug)]
pub struct Verifier {
    replay: Replay,
    headers: HeaderCache,
    window: u64,
}

impl Verifier {
    /// A verifier accepting proofs up to `window` seconds old, remembering at most `capacity`
    /// (of one key as of all: the caller of a sidecar is mostly one other sidecar's key).
    pub fn new(window: u64, capacity: usize) -> Self {
        Self {
            replay: Replay::new(capacity, capacity),
            headers: HeaderCache::default(),
            window,
        }
    }

    /// The time until which a proof issued at `iat` must be remembered: past it, its `iat`
    /// is out of the window anyway.
    pub fn remember_until(iat: u64, window: u64) -> u64 {
        iat.saturating_add(window).saturating_add(FUTURE_SKEW)
    }

    /// [`check`], then the binding (the proof key must be `bound`, the token's `cnf.jkt`, when
    /// given), then the replay store: a proof is accepted once.
    pub fn verify(
        &self,
        proof: &str,
        expect: &Expect<'_>,
        bound: Option<&str>,
        now: u64,
    ) -> Result<Proof, ProofError> {
        let (p, header) = check_with(proof, expect, now, self.window, Some(&self.headers))?;
        if bound.is_some_and(|jkt| jkt != p.jkt) {
            return Err(ProofError::Binding);
        }
        let until = Self::remember_until(p.iat, self.window);
        self.replay
            .first_use_of(header.key_id, &p.jkt, &p.jti, until, now)?;
        Ok(p)
    }

    /// Proofs currently remembered.
    pub fn remembered(&self) -> usize {
        self.replay.len()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, DEFAULT_REPLAY_CAPACITY)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_okp;
