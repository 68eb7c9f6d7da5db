//! RFC 8693 token-exchange client: discovers the token endpoint, authenticates the sidecar
//! (`client_secret_basic`, `private_key_jwt` or a SPIFFE JWT-SVID), builds the form, calls the IdP, maps errors.
//!
//! The POST is never retried: an IdP that is unreachable, slow or answers 5xx is `Unavailable`
//! (→ 503 + `Retry-After` to the app), and for a short while afterwards misses fail at once
//! instead of each waiting out the timeouts.

mod answer;
pub mod cache;
mod call;
mod dpop_key;
mod endpoint;
mod error;
mod form;
mod issued;

pub use answer::BadAnswer;
pub use error::ExchangeError;
pub use issued::Issued;

use crate::config::outbound::{ClientAuth, Outbound as Config, Route};
use crate::jwt;
use crate::secret::Token;
use answer::Asked;
use dpop_key::DpopKey;
use form::target_params;
use std::sync::atomic::AtomicU64;
use tokio::sync::OnceCell;
use url::Url;

/// `grant_type` of a token exchange (RFC 8693 §2.1).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type URN of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `client_assertion_type` of a SPIFFE JWT-SVID (draft-ietf-oauth-spiffe-client-auth).
pub const JWT_SPIFFE_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// Seconds misses fail fast after the IdP was found unavailable; also the `Retry-After` value.
pub const RETRY_AFTER_SECS: u64 = 5;

/// What a token is requested for: one route's target (RFC 8693 §2.1, RFC 8707).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Target {
    /// `audience` (RFC 8693 §2.1).
    pub audience: Option<String>,
    /// `resource`, repeated (RFC 8707 §2).
    pub resources: Vec<String>,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `requested_token_type` URN.
    pub requested_token_type: Option<String>,
    /// Seconds, sent as `requested_lifetime`.
    pub requested_lifetime: Option<u64>,
}

impl Target {
    /// The target a route asks for; the requested type is always an access token.
    pub fn of(route: &Route) -> Self {
        Self {
            audience: route.audience.clone(),
            resources: route.resources.clone(),
            scope: route.scope.clone(),
            requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
            requested_lifetime: route.requested_lifetime,
        }
    }
}

/// The RFC 8693 client of one sidecar.
pub struct Exchanger {
    http: reqwest::Client,
    issuer: Option<String>,
    issuer_url: Option<Url>,
    endpoint: OnceCell<Url>,
    /// The issuer is https: so must every URL this client calls be.
    https_only: bool,
    client_id: String,
    auth: ClientAuth,
    /// Unix second until which misses fail fast after the IdP was unavailable.
    down_until: AtomicU64,
    /// The sidecar's DPoP key (memory only): proofs to the token endpoint and to upstreams.
    key: std::sync::RwLock<DpopKey>,
    /// How long one DPoP key is used for new tokens.
    rotation: std::time::Duration,
    /// The algorithm of new DPoP keys.
    alg: crate::dpop::ProofAlg,
    /// The IdP's latest DPoP nonce (RFC 9449 §8), for the next proof to the token endpoint.
    nonce: std::sync::Mutex<Option<String>>,
}

impl Exchanger {
    /// Builds the client. `issuer` (top-level `issuer` of the config) is used to discover the
    /// token endpoint when none is configured, and as the client assertion's `aud` (rfc7523bis).
    ///
    /// With an `https` issuer every call is https-only: a configured `http` token endpoint is
    /// refused here, and a discovered one fails at discovery (the client secret or assertion
    /// never crosses plain HTTP for an issuer that has TLS).
    pub fn new(cfg: &Config, issuer: Option<&str>) -> Result<Self, ExchangeError> {
        if cfg.token_endpoint.is_none() && issuer.is_none() {
            return Err(ExchangeError::unavailable(
                "no token_endpoint and no issuer to discover it from",
            ));
        }
        let https_only = issuer.is_some_and(|i| i.starts_with("https:"));
        if https_only
            && cfg
                .token_endpoint
                .as_ref()
                .is_some_and(|u| u.scheme() != "https")
        {
            return Err(ExchangeError::unavailable(
                "the token_endpoint of an https issuer must be https",
            ));
        }
        // The IdP client's settings (rustls, no proxy from the environment, https-only for an
        // https issuer), keeping its connections and following no redirect: a 307 would send
        // the client's credentials again to wherever it points.
        let http = crate::jwt::jwks::client_builder(issuer.unwrap_or_default())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .map_err(|e| ExchangeError::transport("build HTTP client", e))?;
        let endpoint = OnceCell::new_with(cfg.token_endpoint.clone());
        Ok(Self {
            http,
            issuer: issuer.map(|s| s.trim_end_matches('/').to_owned()),
            issuer_url: issuer.and_then(|s| Url::parse(s).ok()),
            endpoint,
            https_only,
            client_id: cfg.client.client_id.clone(),
            auth: cfg.client.auth.clone(),
            down_until: AtomicU64::new(0),
            nonce: std::sync::Mutex::new(None),
            key: std::sync::RwLock::new(DpopKey::generate(cfg.dpop_alg)?),
            rotation: cfg.dpop_key_rotation,
            alg: cfg.dpop_alg,
        })
    }

    /// The client that talks to the IdP's token endpoint, for other calls to the IdP that carry
    /// credentials or tokens and so must follow no redirect (discovery, userinfo).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// RFC 8693 §2.1 exchange of `subject` for `target`; with a DPoP proof (the new token bound
    /// to this sidecar's key) when `dpop` or when the subject is itself DPoP-bound.
    pub async fn exchange(
        &self,
        subject: &Token,
        target: &Target,
        dpop: bool,
    ) -> Result<Issued, ExchangeError> {
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE.to_owned()),
            ("subject_token", subject.expose().to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ];
        target_params(target, &mut form);
        let claims = jwt::peek_claims(subject.expose());
        let field = |name: &str| claims.as_ref().and_then(|c| c.get(name)?.as_str());
        let sub = field("sub");
        let foreign = matches!((field("iss"), &self.issuer), (Some(iss), Some(own)) if iss != own);
        let asked = match sub {
            Some(sub) if foreign => Asked::Crossing(sub),
            _ => Asked::Exchange(sub),
        };
        let dpop = dpop
            || claims
                .as_ref()
                .is_some_and(|c| crate::dpop::bound_jkt(c).is_some());
        self.token_request(form, asked, target, dpop).await
    }

    /// RFC 6749 §4.4 `client_credentials` for `target`: the service's own identity; bound to
    /// this sidecar's DPoP key when `dpop`.
    pub async fn client_credentials(
        &self,
        target: &Target,
        dpop: bool,
    ) -> Result<Issued, ExchangeError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        target_params(target, &mut form);
        self.token_request(form, Asked::ClientCredentials, target, dpop)
            .await
    }
}

#[cfg(test)]
mod tests;
