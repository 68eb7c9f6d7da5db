//! JWS signatures (RFC 7515 §5.2, RFC 7518 §3) computed with `ring`: ES256 (P-256, fixed-size
//! `R || S`), RS256/RS384/RS512 (PKCS#1 v1.5) and PS256 (PSS) verification; ES256 and RS256
//! signing.
//!
//! `ring` is already in the tree through rustls and builds with a C compiler only (the static
//! musl image too); it verifies an ES256 token about 10× faster than the pure-Rust `p256` crate
//! that `jsonwebtoken`'s `rust_crypto` backend used (bench/RESULTS.md). Every verification rule
//! stays in [`crate::jwt`]: this module only answers "does this signature verify under this key".

use super::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// Why a signing key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SigError {
    /// The key material was refused by `ring` (wrong size, not on the curve, inconsistent).
    #[error("key rejected: {0}")]
    Rejected(String),
    /// The algorithm cannot sign with this kind of key.
    #[error("algorithm {0:?} cannot sign with this key")]
    Unsupported(Algorithm),
    /// `ring` failed to sign (no randomness).
    #[error("signing failed")]
    Sign,
}

/// The public half of a key, in the form `ring` verifies with.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// A P-256 point, SEC1 uncompressed (`04 || X || Y`), checked to be on the curve.
    P256(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
}

impl PublicKey {
    /// Whether `signature_b64` (base64url, unpadded) is a valid `alg` signature of `message`.
    /// A key never verifies for an algorithm of the other family.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return false;
        };
        match (self, alg) {
            (Self::P256(point), Algorithm::ES256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &sig)
                    .is_ok()
            }
            (Self::Rsa { n, e }, alg) => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => return false,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, &sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// A private key bound to one signing algorithm.
pub enum PrivateKey {
    /// ES256.
    P256(EcdsaKeyPair),
    /// RS256.
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::P256(_) => "PrivateKey(P-256)",
            Self::Rsa(_) => "PrivateKey(RSA)",
        })
    }
}

impl PrivateKey {
    /// An ES256 key from its scalar (32 bytes) and its SEC1 uncompressed public point; `ring`
    /// checks that they belong together.
    pub fn p256(scalar: &[u8], public_point: &[u8]) -> Result<Self, SigError> {
        EcdsaKeyPair::from_private_key_and_public_key(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            scalar,
            public_point,
            &SystemRandom::new(),
        )
        .map(Self::P256)
        .map_err(|e| SigError::Rejected(e.to_string()))
    }

    /// An RS256 key from its PKCS#8 DER encoding.
    pub fn rsa_pkcs8(der: &[u8]) -> Result<Self, SigError> {
        RsaKeyPair::from_pkcs8(der)
            .map(Self::Rsa)
            .map_err(|e| SigError::Rejected(e.to_string()))
    }

    /// The JWS signature of `message` with `alg` (raw bytes, not yet base64url).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, SigError> {
        let rng = SystemRandom::new();
        match (self, alg) {
            (Self::P256(k), Algorithm::ES256) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SigError::Sign),
            (Self::Rsa(k), Algorithm::RS256) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SigError::Sign)?;
                Ok(sig)
            }
            (_, other) => Err(SigError::Unsupported(other)),
        }
    }

    /// The ES256 public point, for tests that cross-check the two halves.
    pub fn p256_public(&self) -> Option<&[u8]> {
        match self {
            Self::P256(k) => Some(k.public_key().as_ref()),
            Self::Rsa(_) => None,
        }
    }
}
