//! Verifying keys by `kid`: a JWK set (RFC 7517 §5) parsed into the keys it may verify with, each
//! bound to one algorithm.

use super::{KeyError, MIN_RSA_BITS, SigningKey};
use crate::jwt::Algorithm;
use crate::jwt::sig::PublicKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// A verifying key bound to one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    /// The only algorithm this key verifies.
    pub alg: Algorithm,
    /// The key material.
    pub public: PublicKey,
}

/// Verifying keys by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_kid.keys()).finish()
    }
}

/// One member of a JWK set, as far as verification needs it.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<Value>,
}

impl KeySet {
    /// Parses a JWK set (RFC 7517 §5), keeping the signature keys whose algorithm is in `allowed`.
    ///
    /// Skipped, not fatal: `use: enc` keys, symmetric keys, unknown curves or types, EC points not
    /// on the curve, RSA moduli under 2048 bits, keys without a `kid` when there are several.
    /// A key without `alg` gets the one its type implies (EC P-256 → ES256, RSA → RS256).
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<Self, KeyError> {
        let raw: RawJwkSet =
            serde_json::from_slice(json).map_err(|e| KeyError::JwkSet(e.to_string()))?;
        let mut set = KeySet::default();
        let count = raw.keys.len();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            let Some((alg, public)) = verify_key_of(&jwk) else {
                continue;
            };
            if !allowed.contains(&alg) || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = match jwk.kid {
                Some(kid) => kid,
                None if count == 1 => String::new(),
                None => format!("#{i}"),
            };
            set.by_kid.insert(kid, VerifyKey { alg, public });
        }
        Ok(set)
    }

    /// A set holding the public halves of `keys`.
    pub fn from_signing_keys<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Self {
        Self {
            by_kid: keys
                .into_iter()
                .map(|k| (k.kid.clone(), k.verify_key()))
                .collect(),
        }
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyKey) {
        self.by_kid.insert(kid.into(), key);
    }

    /// Whether a key with this `kid` is present.
    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// The key for a token header: by `kid` (used only as a map key), or, when the token has no
    /// `kid`, the single key of that algorithm if there is exactly one.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<(&str, &VerifyKey)> {
        match kid {
            Some(kid) => self.by_kid.get_key_value(kid).map(|(k, v)| (k.as_str(), v)),
            None => {
                let mut candidates = self.by_kid.iter().filter(|(_, v)| v.alg == alg);
                let only = candidates.next()?;
                candidates
                    .next()
                    .is_none()
                    .then_some((only.0.as_str(), only.1))
            }
        }
    }
}

fn verify_key_of(jwk: &RawJwk) -> Option<(Algorithm, PublicKey)> {
    match jwk.kty.as_str() {
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256")
                || !matches!(jwk.alg.as_deref(), None | Some("ES256"))
            {
                return None;
            }
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            // RFC 8725 §3.4: the point must be on the curve.
            let mut sec1 = vec![4u8];
            sec1.extend(URL_SAFE_NO_PAD.decode(x).ok()?);
            sec1.extend(URL_SAFE_NO_PAD.decode(y).ok()?);
            p256::PublicKey::from_sec1_bytes(&sec1).ok()?;
            Some((Algorithm::ES256, PublicKey::P256(sec1)))
        }
        "RSA" => {
            let alg = match jwk.alg.as_deref() {
                None | Some("RS256") => Algorithm::RS256,
                Some("RS384") => Algorithm::RS384,
                Some("RS512") => Algorithm::RS512,
                Some("PS256") => Algorithm::PS256,
                _ => return None,
            };
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            // Leading zero octets are tolerated in JWKs but not by `ring`: strip them.
            let minimal = |b64: &str| -> Option<Vec<u8>> {
                let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
                let zeros = bytes.iter().take_while(|b| **b == 0).count();
                Some(bytes[zeros..].to_vec())
            };
            let (n, e) = (minimal(n)?, minimal(e)?);
            if n.len() * 8 < MIN_RSA_BITS || e.is_empty() {
                return None;
            }
            Some((alg, PublicKey::Rsa { n, e }))
        }
        _ => None,
    }
}
