//! A DPoP key pair held in memory (ES256), generated when the holder is made and never written
//! anywhere: it signs one fresh proof per request (RFC 9449 §4.2).

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

/// An ES256 proof key: private half in memory only.
pub struct Holder {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The header, base64url-encoded once: `{"typ":"dpop+jwt","alg":"ES256","jwk":{…}}`.
    header_b64: String,
    jwk: Value,
    jkt: String,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder").field("jkt", &self.jkt).finish()
    }
}

impl Holder {
    /// A fresh P-256 key pair.
    pub fn generate() -> Result<Self, HolderError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| HolderError::Key)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| HolderError::Key)?;
        let point = key.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = crate::jwt::keys::thumbprint(&canonical);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        let header = json!({"typ": super::TYP, "alg": "ES256", "jwk": jwk});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self {
            key,
            rng,
            header_b64,
            jwk,
            jkt,
        })
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
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": htm,
            "htu": htu,
            "iat": now,
        });
        if let Some(a) = ath {
            claims["ath"] = json!(a);
        }
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let mut out = self.header_b64.clone();
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut out);
        let sig = self
            .key
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| HolderError::Key)?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        Ok(out)
    }
}
