//! Proof keys: the public `jwk` of a DPoP proof header (RFC 9449 §4.2) as a verifying key, and
//! its RFC 7638 thumbprint. Only public keys: a `jwk` with a private member is refused.

use super::ProofError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Members only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Smallest and largest RSA modulus accepted, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A proof's public key, bound to its one algorithm.
#[derive(Debug, Clone)]
pub enum ProofKey {
    /// ES256: P-256, with its `x` and `y` as sent.
    Ec {
        /// SEC1 uncompressed point, checked to be on the curve.
        point: Vec<u8>,
        /// base64url `x`.
        x: String,
        /// base64url `y`.
        y: String,
    },
    /// RS256.
    Rsa {
        /// Modulus, big-endian, leading zeros removed.
        n: Vec<u8>,
        /// Exponent, big-endian.
        e: Vec<u8>,
        /// base64url `n` as sent.
        n_b64: String,
        /// base64url `e` as sent.
        e_b64: String,
    },
    /// EdDSA with Ed25519 (RFC 8037).
    Ed25519 {
        /// The public key, decompressed once; never of small order.
        public: ed25519_dalek::VerifyingKey,
        /// base64url `x`.
        x: String,
    },
}

impl ProofKey {
    /// The verifying key of a `jwk` header; private, symmetric, unknown or off-curve keys are
    /// refused.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, ProofError> {
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(ProofError::Key("private key members are not allowed"));
        }
        let member = |name: &'static str| -> Result<(String, Vec<u8>), ProofError> {
            let s = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or(ProofError::Key("missing key member"))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| ProofError::Key("key member is not base64url"))?;
            Ok((s.to_owned(), bytes))
        };
        let crv = jwk.get("crv").and_then(Value::as_str);
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") if crv == Some("P-256") => {
                let (x, xb) = member("x")?;
                let (y, yb) = member("y")?;
                if xb.len() != 32 || yb.len() != 32 {
                    return Err(ProofError::Key("P-256 coordinates are 32 bytes"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend(xb);
                point.extend(yb);
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| ProofError::Key("point not on the curve"))?;
                Ok(Self::Ec { point, x, y })
            }
            Some("RSA") => {
                let (n_b64, n) = member("n")?;
                let (e_b64, e) = member("e")?;
                let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
                let e: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                if !RSA_BITS.contains(&(n.len() * 8)) || e.is_empty() || e.len() > 8 {
                    return Err(ProofError::Key("RSA modulus must be 2048 to 8192 bits"));
                }
                Ok(Self::Rsa { n, e, n_b64, e_b64 })
            }
            Some("OKP") if crv == Some("Ed25519") => {
                let (x, bytes) = member("x")?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| ProofError::Key("Ed25519 keys are 32 bytes"))?;
                let public = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| ProofError::Key("not an Ed25519 point"))?;
                // A small-order key verifies signatures nobody made (RFC 8032 §5.1.7 leaves the
                // check to the verifier).
                if public.is_weak() {
                    return Err(ProofError::Key("Ed25519 key of small order"));
                }
                Ok(Self::Ed25519 { public, x })
            }
            _ => Err(ProofError::Key("unsupported key type or curve")),
        }
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "ES256",
            Self::Rsa { .. } => "RS256",
            Self::Ed25519 { .. } => "EdDSA",
        }
    }

    /// Whether `sig` (raw JWS signature bytes) signs `message` under this key.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Ec { point, .. } => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            Self::Rsa { n, e, .. } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            Self::Ed25519 { public, .. } => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|sig| ed25519_dalek::Verifier::verify(public, message, &sig).is_ok()),
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexical order, base64url.
    pub fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { x, y, .. } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Rsa { n_b64, e_b64, .. } => {
                format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#)
            }
            Self::Ed25519 { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        crate::jwt::keys::thumbprint(&canonical)
    }
}
