//! RFC 8693 token-exchange client: discovers the token endpoint, authenticates the sidecar
//! (`client_secret_basic`, `private_key_jwt` or a SPIFFE JWT-SVID), builds the form, calls the IdP, maps errors.
//!
//! The POST is never retried: an IdP that is unreachable, slow or answers 5xx is `Unavailable`
//! (→ 503 + `Retry-After` to the app), and for a short while afterwards misses fail at once
//! instead of each waiting out the timeouts.

mod answer;
pub mod cache;

pub use answer::BadAnswer;

use crate::config::outbound::{ClientAuth, Outbound as Config, Route};
use crate::dpop::Holder;
use crate::jwt::{self, keys::SigningKey};
use crate::secret::{Token, fingerprint};
use answer::Asked;
use http::HeaderValue;
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Largest token-endpoint or discovery answer read.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

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

/// Why no token was obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The IdP answered with an OAuth error (RFC 6749 §5.2, RFC 8693 §2.2.2).
    #[error("identity provider refused the token request: {code}")]
    Refused {
        /// The `error` code, e.g. `invalid_target`.
        code: String,
        /// The HTTP status of the IdP's answer.
        status: u16,
    },
    /// The IdP could not be reached, timed out, or answered 5xx or garbage.
    #[error("identity provider unavailable: {reason}")]
    Unavailable {
        /// What failed, in words safe to log (no URL query, no form).
        reason: Cow<'static, str>,
        /// The transport error behind it, when there is one.
        #[source]
        source: Option<Arc<reqwest::Error>>,
    },
    /// The client assertion could not be signed.
    #[error("sign client assertion: {0}")]
    Assertion(String),
    /// The IdP answered 2xx with something other than what was asked for ([`answer`]'s checks).
    #[error("identity provider answer refused: {}", .0.as_str())]
    BadAnswer(BadAnswer),
}

impl ExchangeError {
    /// [`ExchangeError::Unavailable`] with no transport error behind it.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`ExchangeError::Unavailable`] caused by `e`, whose URL is dropped (reqwest's `Display`
    /// names the URL, never the form; the URL may carry a query).
    pub fn transport(reason: &'static str, e: reqwest::Error) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: Some(Arc::new(e.without_url())),
        }
    }
    /// True for `invalid_*` answers, which the cache remembers briefly.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if code.starts_with("invalid_"))
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

/// A DPoP key and when it was made.
#[derive(Clone)]
struct DpopKey {
    holder: Arc<Holder>,
    made: std::time::Instant,
}

impl DpopKey {
    fn generate(alg: crate::dpop::ProofAlg) -> Result<Self, ExchangeError> {
        Ok(Self {
            holder: Arc::new(
                Holder::generate_alg(alg).map_err(|e| ExchangeError::Assertion(e.to_string()))?,
            ),
            made: std::time::Instant::now(),
        })
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
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

    /// The DPoP key new tokens are bound to: a fresh one once the current one is
    /// `dpop_key_rotation` old. Tokens bound to an older key keep it ([`Issued::key`]) until
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

    async fn token_request(
        &self,
        mut form: Vec<(&'static str, String)>,
        asked: Asked<'_>,
        target: &Target,
        dpop: bool,
    ) -> Result<Issued, ExchangeError> {
        let now = jwt::unix_now();
        if self.down_until.load(Ordering::Relaxed) > now {
            return Err(ExchangeError::unavailable(
                "recently unreachable; failing fast",
            ));
        }
        // With tracing on (an outbound span is current), the call is a span `exchange` of its
        // own, and the IdP continues it (`traceparent`).
        let grant = form.first().map_or("", |(_, g)| grant_name(g));
        let span = crate::otel::child(
            "exchange",
            opentelemetry::trace::SpanKind::Client,
            vec![
                opentelemetry::KeyValue::new("http.request.method", "POST"),
                opentelemetry::KeyValue::new("baton.grant_type", grant),
            ],
        );
        let result = match &span {
            None => self.post(&mut form, asked, target, dpop, now).await,
            Some(cx) => {
                use crate::otel::FutureExt as _;
                use opentelemetry::trace::TraceContextExt as _;
                if let Ok(endpoint) = self.token_endpoint().await {
                    let host = endpoint.host_str().unwrap_or_default().to_owned();
                    let port = endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
                    let url = format!("{}://{host}{port}{}", endpoint.scheme(), endpoint.path());
                    cx.span().set_attributes([
                        opentelemetry::KeyValue::new("server.address", host),
                        opentelemetry::KeyValue::new("url.full", url),
                    ]);
                }
                let r = Box::pin(self.post(&mut form, asked, target, dpop, now))
                    .with_context(cx.clone())
                    .await;
                let outcome = match &r {
                    Ok(_) => "ok",
                    Err(ExchangeError::Refused { code, .. }) => crate::otel::error_code(code),
                    Err(ExchangeError::BadAnswer(_)) => "bad_answer",
                    Err(_) => "unavailable",
                };
                cx.span().set_attribute(opentelemetry::KeyValue::new(
                    "baton.exchange.outcome",
                    outcome,
                ));
                let status = match &r {
                    Err(ExchangeError::Refused { status, .. }) => Some(*status),
                    Err(ExchangeError::Unavailable { .. }) => None,
                    _ => Some(200),
                };
                crate::otel::end(cx, status, false);
                r
            }
        };
        if matches!(result, Err(ExchangeError::Unavailable { .. })) {
            self.down_until
                .store(now + RETRY_AFTER_SECS, Ordering::Relaxed);
        }
        result
    }

    /// A grant for the edge login (`authorization_code`, `refresh_token`, RFC 6749 §4.1.3, §6)
    /// with this client's authentication: the token response as JSON. Not fail-fast: a browser
    /// sign-in is rare and should see the real answer.
    pub async fn user_grant(
        &self,
        form: Vec<(&'static str, String)>,
    ) -> Result<Value, ExchangeError> {
        let (status, body) = self.send(&form, None, jwt::unix_now()).await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|_| ExchangeError::unavailable("token endpoint answered malformed JSON"));
        }
        Err(refusal(status, &body))
    }

    async fn post(
        &self,
        form: &mut Vec<(&'static str, String)>,
        asked: Asked<'_>,
        target: &Target,
        dpop: bool,
        now: u64,
    ) -> Result<Issued, ExchangeError> {
        let holder = dpop.then(|| self.holder());
        let (status, body) = self.send(form, holder.as_deref(), now).await?;
        if status.is_success() {
            let proof_key = holder.as_ref().map(|h| h.jkt());
            let mut issued = answer::check_for(&body, asked, target, proof_key, now)?;
            if issued.ath.is_some() {
                issued.key = holder;
            }
            return Ok(issued);
        }
        Err(refusal(status, &body))
    }

    /// Authenticates the client, posts `form` to the token endpoint (with a DPoP proof when
    /// `dpop`) and reads the answer.
    ///
    /// An IdP that asks for DPoP nonces (RFC 9449 §8) answers `use_dpop_nonce` with one in
    /// `DPoP-Nonce`: the request is sent once more with it. The latest nonce seen is kept for
    /// the next request.
    async fn send(
        &self,
        form: &[(&'static str, String)],
        dpop: Option<&Holder>,
        now: u64,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ExchangeError> {
        let endpoint = self.token_endpoint().await?;
        let mut answer = self.send_once(endpoint, form.to_vec(), dpop, now).await?;
        if dpop.is_some() && answer.2 {
            answer = self.send_once(endpoint, form.to_vec(), dpop, now).await?;
        }
        Ok((answer.0, answer.1))
    }

    /// One POST of `form`: the status, the body, and whether the IdP asked for a new nonce.
    async fn send_once(
        &self,
        endpoint: &Url,
        mut form: Vec<(&'static str, String)>,
        dpop: Option<&Holder>,
        now: u64,
    ) -> Result<(reqwest::StatusCode, Vec<u8>, bool), ExchangeError> {
        let mut req = self.http.post(endpoint.clone());
        if let Some(holder) = dpop {
            let nonce = self.nonce.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let proof = holder
                .proof("POST", endpoint.as_str(), None, nonce.as_deref(), now)
                .map_err(|e| ExchangeError::Assertion(e.to_string()))?;
            req = req.header(crate::dpop::HEADER, proof);
        }
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
        let mut trace = http::HeaderMap::new();
        crate::otel::inject(&opentelemetry::Context::current(), &mut trace);
        if !trace.is_empty() {
            req = req.headers(trace);
        }
        let rsp = req.form(&form).send().await.map_err(unavailable)?;
        let status = rsp.status();
        let fresh = rsp
            .headers()
            .get(crate::dpop::NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| nonce_ok(n))
            .map(str::to_owned);
        let renewed = fresh.is_some();
        if let Some(n) = fresh {
            *self.nonce.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
        }
        let body = limited(rsp).await?;
        let retry = renewed
            && status == reqwest::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<ErrorResponse>(&body)
                .is_ok_and(|e| e.error == "use_dpop_nonce");
        Ok((status, body, retry))
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

/// The short name of a `grant_type` value, for spans.
fn grant_name(grant: &str) -> &'static str {
    match grant {
        GRANT_TOKEN_EXCHANGE => "token_exchange",
        "client_credentials" => "client_credentials",
        "authorization_code" => "authorization_code",
        "refresh_token" => "refresh_token",
        _ => "other",
    }
}

/// A non-success answer: an OAuth error for a readable 4xx, else the IdP is unavailable.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> ExchangeError {
    if status.is_client_error()
        && let Ok(err) = serde_json::from_slice::<ErrorResponse>(body)
    {
        // Only the code is kept: a description could echo what was sent.
        return ExchangeError::Refused {
            code: sanitize_code(&err.error),
            status: status.as_u16(),
        };
    }
    ExchangeError::unavailable(format!("token endpoint answered {status}"))
}

fn target_params(target: &Target, form: &mut Vec<(&'static str, String)>) {
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
fn assertion(
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

/// Keeps an OAuth error code to its RFC 6749 §5.2 character set so it is safe to log and echo.
fn sanitize_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "invalid_request".into()
    } else {
        clean
    }
}

async fn limited(mut rsp: reqwest::Response) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    while let Some(chunk) = rsp.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ExchangeError::unavailable("IdP answer too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unavailable(e: reqwest::Error) -> ExchangeError {
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    ExchangeError::transport(reason, e)
}

#[cfg(test)]
mod tests;
