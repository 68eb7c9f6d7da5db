//! One fetch of the keys: the discovery document (its `issuer` checked, its `jwks_uri` kept to
//! https for an https issuer), then the JWK set, each with a timeout and a size cap.

use super::Jwks;
use crate::jwt::keys::KeySet;
use std::time::Duration;

/// Why a discovery or JWKS fetch failed. Never contains key material or tokens.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or timed out.
    #[error("fetch {url}: {source}")]
    Http {
        /// What was fetched.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("fetch {url}: status {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status received.
        status: reqwest::StatusCode,
    },
    /// The body was larger than the configured cap.
    #[error("fetch {url}: response larger than {limit} bytes")]
    TooLarge {
        /// What was fetched.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The discovery document was not valid or named another issuer (RFC 8414 §3.3).
    #[error("discovery at {url}: {reason}")]
    Discovery {
        /// The discovery URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The JWK set did not parse.
    #[error("JWKS at {url}: {source}")]
    Keys {
        /// The `jwks_uri`.
        url: String,
        /// The parse error.
        source: crate::jwt::keys::KeyError,
    },
}

impl Jwks {
    /// The keys from discovery (or the configured `jwks_uri`), and the `max-age` they came with.
    pub(super) async fn fetch(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
        if let Some(uri) = &self.jwks_uri {
            return self.keys_at(uri.clone()).await;
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| FetchError::Discovery {
                url: url.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(FetchError::Discovery {
                url,
                reason: "issuer does not equal the configured issuer (RFC 8414 §3.3)".into(),
            });
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            // No downgrade: an https issuer's keys come over https too.
            .filter(|u| {
                url::Url::parse(u)
                    .is_ok_and(|j| j.scheme() == "https" || !self.issuer.starts_with("https:"))
            })
            .ok_or_else(|| FetchError::Discovery {
                url: url.clone(),
                reason: "no valid jwks_uri (https required for an https issuer)".into(),
            })?
            .to_owned();
        self.keys_at(jwks_uri).await
    }

    /// The JWK set at `jwks_uri`, and the `max-age` it came with.
    async fn keys_at(&self, jwks_uri: String) -> Result<(KeySet, Option<Duration>), FetchError> {
        let (body, max_age) = self.get(&jwks_uri).await?;
        let keys =
            KeySet::from_jwks(&body, &self.algorithms).map_err(|source| FetchError::Keys {
                url: jwks_uri,
                source,
            })?;
        Ok((keys, max_age))
    }

    /// GET with the fetch timeout and the size cap; returns the body and `Cache-Control: max-age`.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let mut rsp = self
            .client
            .get(url)
            .timeout(self.settings.fetch_timeout)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http)?;
        if !rsp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: rsp.status(),
            });
        }
        let limit = self.settings.max_bytes;
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        if rsp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let max_age = rsp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = rsp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// `max-age=N` from a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

#[cfg(test)]
mod tests;
