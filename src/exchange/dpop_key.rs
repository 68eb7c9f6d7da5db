//! The sidecar's DPoP key (RFC 9449): made in memory, rotated on a schedule, kept across a
//! reload; and the IdP's latest `DPoP-Nonce` (RFC 9449 §8) for the next proof to it.

use super::{ExchangeError, Exchanger};
use crate::dpop::Holder;
use std::sync::Arc;
use url::Url;

/// A DPoP key and when it was made.
#[derive(Clone)]
pub(super) struct DpopKey {
    holder: Arc<Holder>,
    made: std::time::Instant,
}

impl DpopKey {
    /// A fresh key of `alg`, made now.
    pub(super) fn generate(alg: crate::dpop::ProofAlg) -> Result<Self, ExchangeError> {
        Ok(Self {
            holder: Arc::new(
                Holder::generate_alg(alg).map_err(|e| ExchangeError::Assertion(e.to_string()))?,
            ),
            made: std::time::Instant::now(),
        })
    }
}

impl Exchanger {
    /// The DPoP key new tokens are bound to: a fresh one once the current one is
    /// `dpop_key_rotation` old. Tokens bound to an older key keep it ([`Issued::key`](super::Issued::key)) until
    /// they leave the cache; the old private key is dropped with the last of them.
    pub fn holder(&self) -> Arc<Holder> {
        {
            let key = self.key.read().unwrap_or_else(|e| e.into_inner());
            if key.made.elapsed() < self.rotation {
                return key.holder.clone();
            }
        }
        let mut key = self.key.write().unwrap_or_else(|e| e.into_inner());
        if key.made.elapsed() >= self.rotation {
            match DpopKey::generate(self.alg) {
                Ok(fresh) => {
                    *key = fresh;
                    tracing::info!(jkt = %key.holder.jkt(), "DPoP key rotated");
                }
                Err(e) => tracing::warn!(error = %e, "DPoP key rotation failed; the old key stays"),
            }
        }
        key.holder.clone()
    }

    /// Keeps `other`'s DPoP key (and its age), so tokens cached under it stay usable across a
    /// reload and the rotation keeps its schedule; not when the reload changed `dpop_alg`:
    /// new tokens then get this client's fresh key (cached ones keep theirs).
    pub fn holder_from(&mut self, other: &Exchanger) {
        let theirs = other.key.read().unwrap_or_else(|e| e.into_inner()).clone();
        if theirs.holder.alg() == self.alg {
            *self.key.get_mut().unwrap_or_else(|e| e.into_inner()) = theirs;
        }
    }

    /// A proof of a POST to `endpoint`, signed by `holder`, with the IdP's latest nonce.
    pub(super) fn token_proof(
        &self,
        holder: &Holder,
        endpoint: &Url,
        now: u64,
    ) -> Result<String, ExchangeError> {
        let nonce = self.nonce.lock().unwrap_or_else(|e| e.into_inner()).clone();
        holder
            .proof("POST", endpoint.as_str(), None, nonce.as_deref(), now)
            .map_err(|e| ExchangeError::Assertion(e.to_string()))
    }

    /// Keeps the `DPoP-Nonce` of an answer from the token endpoint, if it is one worth sending
    /// back; true when there was one.
    pub(super) fn keep_nonce(&self, headers: &reqwest::header::HeaderMap) -> bool {
        let fresh = headers
            .get(crate::dpop::NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| nonce_ok(n))
            .map(str::to_owned);
        let renewed = fresh.is_some();
        if let Some(n) = fresh {
            *self.nonce.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
        }
        renewed
    }
}

/// A `DPoP-Nonce` worth sending back: RFC 9449 §8.1 `NQCHAR`s (visible ASCII but `"` and
/// `\`), not longer than a proof's nonce may be.
fn nonce_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= crate::dpop::MAX_NONCE_LEN
        && n.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}
