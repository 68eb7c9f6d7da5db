//! Where the token endpoint is: configured, or discovered from the issuer (RFC 8414 / OIDC
//! Discovery) once and kept across a reload; and whether a destination is the IdP itself.

use super::call::limited;
use super::error::unavailable;
use super::{ExchangeError, Exchanger};
use serde_json::Value;
use url::Url;

impl Exchanger {
    /// Takes the token endpoint `other` has discovered, if any and none is known yet (a
    /// reloaded client with the same issuer and no configured endpoint need not ask again).
    pub fn endpoint_from(&self, other: &Exchanger) {
        if let Some(url) = other.endpoint.get() {
            let _ = self.endpoint.set(url.clone());
        }
    }

    /// The token endpoint, configured or discovered (RFC 8414 / OIDC Discovery), cached once found.
    pub async fn token_endpoint(&self) -> Result<&Url, ExchangeError> {
        self.endpoint.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Url, ExchangeError> {
        let issuer = self.issuer.as_deref().unwrap_or_default();
        let url = format!("{issuer}/.well-known/openid-configuration");
        let rsp = self.http.get(&url).send().await.map_err(unavailable)?;
        if !rsp.status().is_success() {
            return Err(ExchangeError::unavailable(format!(
                "discovery at {url} answered {}",
                rsp.status()
            )));
        }
        let body = limited(rsp).await?;
        let meta: Value = serde_json::from_slice(&body)
            .map_err(|_| ExchangeError::unavailable("discovery document is not JSON"))?;
        let url = meta
            .get("token_endpoint")
            .and_then(Value::as_str)
            .and_then(|s| Url::parse(s).ok())
            .ok_or_else(|| ExchangeError::unavailable("discovery has no token_endpoint"))?;
        if self.https_only && url.scheme() != "https" {
            return Err(ExchangeError::unavailable(
                "discovery names an http token_endpoint for an https issuer",
            ));
        }
        Ok(url)
    }

    /// True when `host:port` is the IdP (issuer or token endpoint): calls to it are never exchanged.
    pub fn is_idp(&self, host: &str, port: u16) -> bool {
        let is = |u: &Url| {
            u.port_or_known_default() == Some(port)
                && u.host_str().is_some_and(|h| {
                    h.trim_start_matches('[')
                        .trim_end_matches(']')
                        .eq_ignore_ascii_case(host)
                })
        };
        self.issuer_url.as_ref().is_some_and(is) || self.endpoint.get().is_some_and(is)
    }
}
