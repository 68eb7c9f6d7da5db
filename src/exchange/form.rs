//! The token request's form: the target's parameters (RFC 8693 §2.1, RFC 8707) and the
//! client's authentication (`client_secret_basic`, `private_key_jwt`, a SPIFFE JWT-SVID).

use super::{ExchangeError, Exchanger, JWT_BEARER_ASSERTION, JWT_SPIFFE_ASSERTION, Target};
use crate::config::outbound::ClientAuth;
use crate::jwt::keys::SigningKey;
use crate::secret::fingerprint;
use serde_json::json;
use url::Url;

impl Exchanger {
    /// Authenticates the client to `endpoint`: Basic on `req`, or an assertion added to `form`.
    pub(super) fn authenticate(
        &self,
        mut req: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
        endpoint: &Url,
        now: u64,
    ) -> Result<reqwest::RequestBuilder, ExchangeError> {
        match &self.auth {
            ClientAuth::Secret(secret) => {
                // RFC 6749 §2.3.1: form-urlencode both parts before Basic.
                let id: String =
                    form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
                let pw: String =
                    form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
                req = req.basic_auth(id, Some(pw));
            }
            ClientAuth::PrivateKey(key) => {
                let aud = self.issuer.clone().unwrap_or_else(|| endpoint.to_string());
                let assertion = assertion(key, &self.client_id, &aud, now)?;
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION.to_owned()));
                form.push(("client_assertion", assertion));
            }
            ClientAuth::Svid(file) => {
                // The SVID's audience is whatever the SPIFFE helper asked for: the IdP checks
                // it. The token goes in the form only, never in a log or error.
                let svid = file
                    .read()
                    .map_err(|e| ExchangeError::Assertion(e.to_string()))?;
                if !form.iter().any(|(k, _)| *k == "client_id") {
                    form.push(("client_id", self.client_id.clone()));
                }
                form.push(("client_assertion_type", JWT_SPIFFE_ASSERTION.to_owned()));
                form.push(("client_assertion", svid.expose().to_owned()));
            }
        }
        Ok(req)
    }
}

/// Adds `target`'s parameters to `form`.
pub(super) fn target_params(target: &Target, form: &mut Vec<(&'static str, String)>) {
    if let Some(a) = &target.audience {
        form.push(("audience", a.clone()));
    }
    for r in &target.resources {
        form.push(("resource", r.clone()));
    }
    if let Some(s) = &target.scope {
        form.push(("scope", s.clone()));
    }
    if let Some(t) = &target.requested_token_type {
        form.push(("requested_token_type", t.clone()));
    }
    if let Some(l) = target.requested_lifetime {
        form.push(("requested_lifetime", l.to_string()));
    }
}

/// RFC 7523 §3 client assertion: `iss` = `sub` = client, `aud` = the issuer alone, fresh `jti`.
pub(super) fn assertion(
    key: &SigningKey,
    client_id: &str,
    aud: &str,
    now: u64,
) -> Result<String, ExchangeError> {
    let jti: [u8; 16] = crate::secret::random();
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "iat": now, "exp": now + 60, "jti": fingerprint(&jti),
    });
    key.sign("JWT", &claims)
        .map_err(|e| ExchangeError::Assertion(e.to_string()))
}
