//! Signing keys (ES256, RS256), PEM persistence and JWK export; JWK-set parsing into verifying
//! keys is `set`.
//!
//! Every key is bound to exactly one algorithm (RFC 8725 §3.1): a verifier never lets a token's
//! `alg` choose how a key is used. Only asymmetric keys exist here; `oct` JWKs are skipped.

mod set;

pub use set::{KeySet, VerifyKey};

use super::Algorithm;
use super::sig::{PrivateKey, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};

/// Smallest RSA modulus accepted or generated, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Only ES256 and RS256 are supported for signing.
    #[error("unsupported signing algorithm {0:?}: use ES256 or RS256")]
    Unsupported(Algorithm),
    /// The PEM could not be parsed as a PKCS#8 private key of the named algorithm.
    #[error("read {alg:?} private key: {reason}")]
    Pem {
        /// The algorithm the key was meant for.
        alg: Algorithm,
        /// What the parser said (never key material).
        reason: String,
    },
    /// Key generation failed.
    #[error("generate {0:?} key")]
    Generate(Algorithm),
    /// A JWK set was not valid JSON of the expected shape.
    #[error("parse JWK set: {0}")]
    JwkSet(String),
    /// Signing failed.
    #[error("sign token: {0}")]
    Sign(String),
}

/// A private key with its `kid` and its one algorithm.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pem: String,
    private: PrivateKey,
    public: PublicJwk,
    verify: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    /// Generates a fresh ES256 (P-256) or RS256 (2048-bit) key; its `kid` is the RFC 7638 thumbprint.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        // The key crates take a `rand_core` generator: `OsRng` is the same OS generator as
        // [`crate::secret::fill`].
        let mut rng = rand::rngs::OsRng;
        let pem = match alg {
            Algorithm::ES256 => p256::SecretKey::random(&mut rng)
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| KeyError::Generate(alg))?
                .to_string(),
            Algorithm::RS256 => rsa::RsaPrivateKey::new(&mut rng, MIN_RSA_BITS)
                .map_err(|_| KeyError::Generate(alg))?
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| KeyError::Generate(alg))?
                .to_string(),
            other => return Err(KeyError::Unsupported(other)),
        };
        let public = public_of(alg, &pem)?;
        let kid = public.0.thumbprint();
        Self::build(kid, alg, pem, public)
    }

    /// Reads a PKCS#8 PEM private key persisted earlier.
    pub fn from_pem(kid: &str, alg: Algorithm, pkcs8_pem: &str) -> Result<Self, KeyError> {
        let public = public_of(alg, pkcs8_pem)?;
        Self::build(kid.to_owned(), alg, pkcs8_pem.to_owned(), public)
    }

    fn build(
        kid: String,
        alg: Algorithm,
        pem: String,
        (public, verify): (PublicJwk, PublicKey),
    ) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::Pem { alg, reason };
        let private = match (alg, &verify) {
            (Algorithm::ES256, PublicKey::P256(point)) => {
                let secret =
                    p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| bad(e.to_string()))?;
                PrivateKey::p256(&secret.to_bytes(), point)
            }
            (Algorithm::RS256, _) => {
                let key =
                    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| bad(e.to_string()))?;
                let der = key.to_pkcs8_der().map_err(|e| bad(e.to_string()))?;
                PrivateKey::rsa_pkcs8(der.as_bytes())
            }
            (other, _) => return Err(KeyError::Unsupported(other)),
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            kid,
            alg,
            pem,
            private,
            public,
            verify,
        })
    }

    /// The PKCS#8 PEM, for persisting to a file readable by the owner only.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The key id published in the JWKS and set in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK: `kty`, `crv`/`x`/`y` or `n`/`e`, `kid`, `alg`, `use: sig`.
    pub fn public_jwk(&self) -> Value {
        self.public.to_json(&self.kid, self.alg)
    }

    /// The key's verifying half, for a [`KeySet`].
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey {
            alg: self.alg,
            public: self.verify.clone(),
        }
    }

    /// Signs `claims` with header `{alg, kid, typ}` (e.g. `typ` = `at+jwt` for RFC 9068 tokens):
    /// RFC 7515 §7.1 compact serialization.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            kid: &'a str,
            typ: &'a str,
        }
        let header = Header {
            alg: self.alg.name(),
            kid: &self.kid,
            typ,
        };
        let header = serde_json::to_vec(&header).map_err(|e| KeyError::Sign(e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let sig = self
            .private
            .sign(self.alg, token.as_bytes())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        Ok(token)
    }
}

/// The public parameters of a key, base64url-encoded as in a JWK.
#[derive(Debug, Clone)]
enum PublicJwk {
    Ec { x: String, y: String },
    Rsa { n: String, e: String },
}

impl PublicJwk {
    fn to_json(&self, kid: &str, alg: Algorithm) -> Value {
        let alg = alg.name();
        match self {
            Self::Ec { x, y } => {
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": alg, "use": "sig"})
            }
            Self::Rsa { n, e } => {
                json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": alg, "use": "sig"})
            }
        }
    }

    /// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexical order.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        thumbprint(&canonical)
    }
}

/// The RFC 7638 thumbprint of a key whose required members, in lexical order and without
/// white space, are `canonical`: base64url(SHA-256). Signing keys' `kid`s and DPoP's `jkt`s.
pub fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[canonical.as_bytes()]))
}

/// The public half of a PKCS#8 private key: as a JWK and as a verifying key.
fn public_of(alg: Algorithm, pem: &str) -> Result<(PublicJwk, PublicKey), KeyError> {
    let bad = |reason: String| KeyError::Pem { alg, reason };
    match alg {
        Algorithm::ES256 => {
            let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| bad(e.to_string()))?;
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &secret.public_key(),
                false,
            );
            let (x, y) = point
                .x()
                .zip(point.y())
                .ok_or_else(|| bad("point at infinity".into()))?;
            let jwk = PublicJwk::Ec {
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            };
            Ok((jwk, PublicKey::P256(point.as_bytes().to_vec())))
        }
        Algorithm::RS256 => {
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| bad(e.to_string()))?;
            if key.size() * 8 < MIN_RSA_BITS {
                return Err(bad(format!("modulus shorter than {MIN_RSA_BITS} bits")));
            }
            let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
            let jwk = PublicJwk::Rsa {
                n: URL_SAFE_NO_PAD.encode(&n),
                e: URL_SAFE_NO_PAD.encode(&e),
            };
            Ok((jwk, PublicKey::Rsa { n, e }))
        }
        other => Err(KeyError::Unsupported(other)),
    }
}
