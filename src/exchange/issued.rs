//! What a successful token request yields: the issued token as the `Authorization` value it
//! goes out in, and what the audit log and DPoP proofs need of it.

use crate::dpop::Holder;
use crate::secret::Token;
use http::HeaderValue;
use std::sync::Arc;

/// A token the IdP issued, with what the audit log needs (never the token itself).
#[derive(Debug, Clone)]
pub struct Issued {
    /// `Bearer <token>` as a header value, made once for every request the token goes out on
    /// (marked sensitive: HTTP/2 never indexes it, `Debug` never shows it). The only copy of the
    /// issued token.
    pub authorization: HeaderValue,
    /// Unix time the token stops being valid: `exp`, bounded by `expires_in`.
    pub expires_at: u64,
    /// `sha256:` prefix of the issued token's `sub`.
    pub sub_hash: String,
    /// The delegation chain from nested `act` (RFC 8693 §4.1), outermost first, `>`-joined.
    pub act_chain: String,
    /// For a DPoP-bound token (then `authorization` is `DPoP <token>`): base64url(SHA-256) of
    /// the token, the `ath` of every proof sent with it, hashed once.
    pub ath: Option<String>,
    /// The key a DPoP-bound token is bound to: its proofs are signed with it even after the
    /// sidecar's key has rotated, for as long as the token is cached.
    pub key: Option<Arc<Holder>>,
}

impl Issued {
    /// `token` with its `Authorization` value; `None` when the token cannot be a header value.
    pub fn new(token: Token, expires_at: u64, sub_hash: String, act_chain: String) -> Option<Self> {
        let mut authorization =
            HeaderValue::try_from(format!("{BEARER}{}", token.expose())).ok()?;
        authorization.set_sensitive(true);
        Some(Issued {
            authorization,
            expires_at,
            sub_hash,
            act_chain,
            ath: None,
            key: None,
        })
    }

    /// A DPoP-bound `token` (RFC 9449 §7.1): sent as `DPoP <token>`, with a proof per call.
    pub fn bound(
        token: Token,
        expires_at: u64,
        sub_hash: String,
        act_chain: String,
    ) -> Option<Self> {
        let ath = crate::dpop::ath(token.expose());
        let mut authorization = HeaderValue::try_from(format!("{DPOP}{}", token.expose())).ok()?;
        authorization.set_sensitive(true);
        Some(Issued {
            authorization,
            expires_at,
            sub_hash,
            act_chain,
            ath: Some(ath),
            key: None,
        })
    }

    /// The issued access token (tests read it back; requests send `authorization`).
    #[cfg(test)]
    pub fn token(&self) -> &str {
        // `new` made the value from "Bearer " (or "DPoP ") and a `String`: UTF-8 after it.
        let prefix = if self.ath.is_some() { DPOP } else { BEARER };
        let bytes = self
            .authorization
            .as_bytes()
            .get(prefix.len()..)
            .unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

/// The scheme prefix of [`Issued::authorization`].
const BEARER: &str = "Bearer ";
/// The scheme prefix of a DPoP-bound [`Issued::authorization`].
const DPOP: &str = "DPoP ";
