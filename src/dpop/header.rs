//! A proof's protected header: decoded, checked (`typ`, no `crit`, key by value only, `alg`
//! allowed and the key's), its `jwk` made a verifying key with its RFC 7638 thumbprint.
//!
//! A sender puts the same header on every proof it makes (only the claims change), so
//! [`HeaderCache`] keeps the outcome by the header's exact base64url text: a header seen before
//! costs one lookup instead of a base64 decode, a JSON parse, a key decode with its point checks
//! and a hash. Every check is a function of those bytes alone, so a cached header is one that
//! would pass again; headers that fail are not kept.

use super::ProofError;
use super::key::ProofKey;
use serde_json::Value;
use std::sync::Arc;

/// Bytes of header text [`HeaderCache::default`] keeps at most (about 4,000 ES256 or Ed25519
/// headers).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 20;

/// A header that passed [`parse`].
#[derive(Debug)]
pub struct ProofHeader {
    /// The `jwk`, ready to verify with; its algorithm is the header's `alg`.
    pub key: ProofKey,
    /// The key's RFC 7638 thumbprint, base64url.
    pub jkt: String,
    /// The key's name in the replay store.
    pub key_id: super::replay::KeyId,
}

/// Decodes and checks the base64url header of a proof.
pub fn parse(header_b64: &str) -> Result<ProofHeader, ProofError> {
    let header = crate::jwt::decode_object(header_b64)
        .ok_or(ProofError::Malformed("header is not a JSON object"))?;
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if !typ.eq_ignore_ascii_case(super::TYP) {
        return Err(ProofError::Type);
    }
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(ProofError::Malformed("crit is not supported"));
    }
    for by_reference in ["jku", "x5u", "x5c", "kid"] {
        if header.contains_key(by_reference) {
            return Err(ProofError::Key(
                "the key must be given by value in jwk only",
            ));
        }
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(ProofError::Algorithm)?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(ProofError::Key("missing"))?;
    let key = ProofKey::from_jwk(jwk)?;
    if key.alg() != alg {
        return Err(ProofError::Algorithm);
    }
    let jkt = key.thumbprint();
    let key_id = super::replay::KeyId::of(&jkt);
    Ok(ProofHeader { key, jkt, key_id })
}

/// Checked headers by their exact text, bounded by bytes.
#[derive(Clone)]
pub struct HeaderCache {
    cache: moka::sync::Cache<String, Arc<ProofHeader>>,
}

impl std::fmt::Debug for HeaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl HeaderCache {
    /// A cache of at most `max_bytes` of header text (each entry also counts a fixed 512 bytes
    /// for the key it holds).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|text: &String, _| {
                    u32::try_from(text.len().saturating_add(512)).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The checked header for `header_b64`, if a proof with it passed before.
    pub fn get(&self, header_b64: &str) -> Option<Arc<ProofHeader>> {
        self.cache.get(header_b64)
    }

    /// Keeps `header` for its text `header_b64`: only once a proof with it has passed its
    /// signature check, so that a stranger's headers with made-up signatures take no room.
    pub fn keep(&self, header_b64: &str, header: Arc<ProofHeader>) {
        self.cache.insert(header_b64.to_owned(), header);
    }
}

impl Default for HeaderCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}
