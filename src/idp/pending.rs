//! The authorization request waiting at the login pages. It is not kept on the server: it is
//! sealed (see [`super::seal`]) into the page's `request` field, with an expiry and the hash of
//! the browser's pre-login cookie, and opened again when the form comes back. An anonymous
//! `/authorize` therefore costs the IdP no memory after its answer, and any replica that shares
//! the key directory can take the form.
//!
//! What it holds is bounded at `/authorize` (see `authorize::params`); the sealed value is at
//! most [`MAX_SEALED`] characters.

use super::config::Factor;
use crate::http::cookie::Sealer;
use serde::{Deserialize, Serialize};

/// Associated data of a sealed request: it opens as nothing else.
const PURPOSE: &str = "baton-idp-pending";
/// Longest sealed request: what the sealer opens at most.
pub const MAX_SEALED: usize = 4096;
/// Seconds the login pages accept a request after `/authorize`.
pub const TTL: u64 = 600;

/// An authorization request waiting for the user to sign in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(rename = "c")]
    pub(crate) client: String,
    #[serde(rename = "r")]
    pub(crate) redirect_uri: String,
    #[serde(rename = "s")]
    pub(crate) state: Option<String>,
    #[serde(rename = "n")]
    pub(crate) nonce: Option<String>,
    #[serde(rename = "p")]
    pub(crate) challenge: String,
    #[serde(rename = "o")]
    pub(crate) scope: Vec<String>,
    /// RFC 8707 resource URIs, already checked against the client's edges.
    #[serde(rename = "a")]
    pub(crate) resources: Vec<String>,
    /// Factors the requested `acr` needs.
    #[serde(rename = "f")]
    pub(crate) needed: Vec<Factor>,
    /// The user who proved the password (in this request or through the session): only they
    /// may complete the one-time-code step.
    #[serde(rename = "u")]
    pub(crate) user: Option<String>,
    /// SHA-256 of the browser's pre-login cookie: the form is taken only with that cookie.
    #[serde(rename = "b")]
    pub(crate) browser: String,
    /// Unix seconds after which the login pages refuse it.
    #[serde(rename = "e")]
    pub(crate) expires_at: u64,
    /// `dpop_jkt` (RFC 9449 §10): the code is redeemed only with a proof of this key.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpop_jkt: Option<String>,
}

impl Pending {
    /// The sealed form of the request; `None` when it would be longer than [`MAX_SEALED`].
    pub fn seal(&self, sealer: &Sealer) -> Option<String> {
        let plain = serde_json::to_vec(self).ok()?;
        let sealed = sealer.seal(PURPOSE, &plain);
        (sealed.len() <= MAX_SEALED).then_some(sealed)
    }

    /// The request sealed in `value`, if it is genuine and has not expired at `now`.
    pub fn open(sealer: &Sealer, value: &str, now: u64) -> Option<Pending> {
        if value.len() > MAX_SEALED {
            return None;
        }
        let plain = sealer.open(PURPOSE, value)?;
        let pending: Pending = serde_json::from_slice(&plain).ok()?;
        (pending.expires_at > now).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            client: "service-a".into(),
            redirect_uri: "http://127.0.0.1:8080/callback".into(),
            state: Some("st".into()),
            nonce: None,
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            scope: vec!["openid".into()],
            resources: vec![],
            needed: vec![Factor::Pwd, Factor::Otp],
            user: Some("alice".into()),
            browser: "b".into(),
            expires_at: 1_000,
            dpop_jkt: None,
        }
    }

    #[test]
    fn a_sealed_request_opens_only_unchanged_unexpired_and_for_its_purpose() {
        let s = Sealer::new(None);
        let sealed = pending().seal(&s).expect("small");
        assert_eq!(Pending::open(&s, &sealed, 999), Some(pending()));
        assert_eq!(Pending::open(&s, &sealed, 1_000), None, "expired");
        assert_eq!(Pending::open(&Sealer::new(None), &sealed, 999), None);
        assert_eq!(s.open("baton-idp-device", &sealed), None);
        let mut flipped = sealed.into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(Pending::open(&s, &flipped, 999), None);
    }

    #[test]
    fn an_oversized_request_is_not_sealed() {
        let s = Sealer::new(None);
        let mut p = pending();
        p.state = Some("x".repeat(MAX_SEALED));
        assert_eq!(p.seal(&s), None);
    }
}
