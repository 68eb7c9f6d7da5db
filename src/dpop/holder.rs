//! A DPoP key pair held in memory (EdDSA with Ed25519, or ES256), generated when the holder is
//! made and never written anywhere: it signs one fresh proof per request (RFC 9449 §4.2).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// Why a key could not be made or a proof signed.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    /// The system random source failed.
    #[error("no randomness")]
    Random,
    /// `ring` refused to make or use the key.
    #[error("key or signature failed")]
    Key,
}

/// The algorithm a [`Holder`] signs proofs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProofAlg {
    /// Ed25519 (RFC 8037): the cheaper one to sign and, above all, to verify.
    #[default]
    EdDSA,
    /// ECDSA with P-256 and SHA-256, for a peer that does not take EdDSA proofs.
    ES256,
}

impl ProofAlg {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }
}

enum Signer {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(EcdsaKeyPair),
}

/// A proof key: private half in memory only.
pub struct Holder {
    key: Signer,
    rng: SystemRandom,
    /// The header, base64url-encoded once: `{"typ":"dpop+jwt","alg":…,"jwk":{…}}`.
    header_b64: String,
    jwk: Value,
    jkt: String,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder").field("jkt", &self.jkt).finish()
    }
}

/// The bytes of a proof's claims besides the values of `htm`, `htu`, `ath` and `nonce`: names,
/// quotes, separators, the `jti` and the `iat`.
const CLAIMS_LEN: usize = 128;

/// base64url length of a 64-byte signature.
const SIGNATURE_B64_LEN: usize = 86;

/// A proof's claims, serialised in this order.
#[derive(serde::Serialize)]
struct ProofClaims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl Holder {
    /// A fresh P-256 key pair (ES256).
    pub fn generate() -> Result<Self, HolderError> {
        Self::generate_alg(ProofAlg::ES256)
    }

    /// A fresh key pair for `alg`.
    pub fn generate_alg(alg: ProofAlg) -> Result<Self, HolderError> {
        let rng = SystemRandom::new();
        let (key, jwk, canonical) = match alg {
            ProofAlg::EdDSA => {
                // The same OS generator as `rng`; the key zeroes its secret when dropped.
                let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
                let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
                (Signer::Ed25519(key), jwk, canonical)
            }
            ProofAlg::ES256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| HolderError::Key)?;
                let key = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .map_err(|_| HolderError::Key)?;
                let point = key.public_key().as_ref();
                let (x, y) = (
                    URL_SAFE_NO_PAD.encode(&point[1..33]),
                    URL_SAFE_NO_PAD.encode(&point[33..65]),
                );
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
                (Signer::Es256(key), jwk, canonical)
            }
        };
        let jkt = crate::jwt::keys::thumbprint(&canonical);
        let header = json!({"typ": super::TYP, "alg": alg.name(), "jwk": jwk});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self {
            key,
            rng,
            header_b64,
            jwk,
            jkt,
        })
    }

    /// The algorithm of the proofs this key signs.
    pub fn alg(&self) -> ProofAlg {
        match self.key {
            Signer::Ed25519(_) => ProofAlg::EdDSA,
            Signer::Es256(_) => ProofAlg::ES256,
        }
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens bound to it.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A proof for `htm` `htu` at `now`, with `ath` when `token` is given and `nonce` when the
    /// server asked for one.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, HolderError> {
        let ath = token.map(super::ath);
        self.proof_ath(htm, htu, ath.as_deref(), nonce, now)
    }

    /// [`Holder::proof`] with the token's `ath` already computed ([`super::ath`]).
    pub fn proof_ath(
        &self,
        htm: &str,
        htu: &str,
        ath: Option<&str>,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, HolderError> {
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| HolderError::Random)?;
        let mut jti_b64 = [0u8; 22];
        URL_SAFE_NO_PAD
            .encode_slice(jti, &mut jti_b64)
            .map_err(|_| HolderError::Random)?;
        let claims = ProofClaims {
            jti: std::str::from_utf8(&jti_b64).map_err(|_| HolderError::Random)?,
            htm,
            htu,
            iat: now,
            ath,
            nonce,
        };
        let mut json = Vec::with_capacity(
            CLAIMS_LEN
                + htm.len()
                + htu.len()
                + ath.map_or(0, str::len)
                + nonce.map_or(0, str::len),
        );
        serde_json::to_writer(&mut json, &claims).map_err(|_| HolderError::Key)?;
        // The header, the claims and a 64-byte signature (Ed25519, or ES256's fixed r ‖ s),
        // base64url, in one allocation.
        let mut out = String::with_capacity(
            self.header_b64.len() + 1 + json.len().div_ceil(3) * 4 + 1 + SIGNATURE_B64_LEN,
        );
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut out);
        match &self.key {
            Signer::Ed25519(key) => {
                let sig = ed25519_dalek::Signer::sign(key, out.as_bytes());
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut out);
            }
            Signer::Es256(key) => {
                let sig = key
                    .sign(&self.rng, out.as_bytes())
                    .map_err(|_| HolderError::Key)?;
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
            }
        }
        Ok(out)
    }
}
