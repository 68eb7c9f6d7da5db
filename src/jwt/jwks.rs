//! Discovery and JWKS cache: background refresh, single-flight unknown-`kid` refetch, readiness,
//! and the [`Verifier`] that caches successful verifications by token hash until `exp`.
//!
//! Keys come only from the configured issuer's discovery document → `jwks_uri` (RFC 8414 §3.3:
//! its `issuer` must equal the configured one exactly). For an https issuer both fetches, and
//! every redirect they follow, are https ([`http_client_for`]). The first successful load drops the
//! readiness latch (linkerd-style). Refresh follows `Cache-Control: max-age`, clamped; failures
//! retry. An unknown `kid` triggers at most one refetch per cooldown, shared by every caller
//! (no storm of unknown kids can hammer the IdP). Last-good keys keep verifying for a bounded
//! stale window while the IdP is unreachable.

mod verifier;

pub use verifier::{LastToken, Verifier, VerifyFailure};

use super::Algorithm;
use super::keys::KeySet;
use crate::telemetry::{Metrics, Outcome};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};
use tracing::{debug, info, instrument, warn};

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
        source: super::keys::KeyError,
    },
}

/// A loaded key set and when it was fetched.
struct Loaded {
    keys: Arc<KeySet>,
    at: Instant,
}

/// Discovery and JWKS fetching settings (`sidecar.yaml` `jwks:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Lower clamp of the refresh interval taken from `Cache-Control: max-age`.
    pub refresh_min: Duration,
    /// Upper clamp of that interval, and the interval when the IdP sends no `max-age`.
    pub refresh_max: Duration,
    /// Wait before retrying a failed background fetch.
    pub retry: Duration,
    /// How long last-good keys keep verifying while the IdP cannot be reached.
    pub stale_window: Duration,
    /// Timeout of one discovery or JWKS request.
    pub fetch_timeout: Duration,
    /// Largest discovery or JWKS response accepted, in bytes.
    pub max_bytes: usize,
    /// At most one unknown-`kid` refetch per this interval (OIDC Core §10.1.1).
    pub kid_cooldown: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_min: Duration::from_secs(300),
            refresh_max: Duration::from_secs(3600),
            retry: Duration::from_secs(5),
            stale_window: Duration::from_secs(12 * 3600),
            fetch_timeout: Duration::from_secs(5),
            max_bytes: 256 << 10,
            kid_cooldown: Duration::from_secs(30),
        }
    }
}

/// The issuer's signing keys, kept fresh in the background.
pub struct Jwks {
    issuer: String,
    /// Where the keys are, when configured: discovery is skipped.
    jwks_uri: Option<String>,
    algorithms: Vec<Algorithm>,
    settings: JwksSettings,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    loaded: RwLock<Option<Loaded>>,
    ready: watch::Sender<bool>,
    /// Single-flight lock for on-demand refetches, holding when the last one started.
    refetch: Mutex<Option<Instant>>,
    /// Keys given at construction: never fetched, never stale.
    fixed: bool,
}

impl Jwks {
    /// Creates the cache and spawns its refresh task, which stops when the `Jwks` is dropped.
    /// Must be called inside a Tokio runtime.
    pub fn start(
        issuer: &str,
        algorithms: &[Algorithm],
        settings: JwksSettings,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Arc<Jwks> {
        Self::start_at(issuer, None, algorithms, settings, client, metrics)
    }

    /// [`Jwks::start`], fetching the keys from `jwks_uri` when given instead of the one discovery
    /// names (for an issuer whose discovery document is elsewhere or absent).
    pub fn start_at(
        issuer: &str,
        jwks_uri: Option<&str>,
        algorithms: &[Algorithm],
        settings: JwksSettings,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Arc<Jwks> {
        let jwks = Arc::new(Jwks {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.map(str::to_owned),
            algorithms: algorithms.to_vec(),
            settings,
            client,
            metrics,
            loaded: RwLock::new(None),
            ready: watch::channel(false).0,
            refetch: Mutex::new(None),
            fixed: false,
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&jwks)));
        jwks
    }

    /// A key set that is never fetched: ready at once, never stale, no refetch. For a sidecar
    /// whose keys are provisioned out of band, benchmarks and tests.
    pub fn fixed(keys: KeySet, metrics: Arc<Metrics>) -> Arc<Jwks> {
        Arc::new(Jwks {
            issuer: String::new(),
            jwks_uri: None,
            algorithms: Vec::new(),
            settings: JwksSettings::default(),
            client: reqwest::Client::new(),
            metrics,
            loaded: RwLock::new(Some(Loaded {
                keys: Arc::new(keys),
                at: Instant::now(),
            })),
            ready: watch::channel(true).0,
            refetch: Mutex::new(None),
            fixed: true,
        })
    }

    /// Whether the first load has succeeded (the readiness latch has dropped).
    pub fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first load has succeeded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The keys to verify with: `None` before the first load, or when the last successful load
    /// is older than the stale window (fail closed).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        let guard = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let loaded = guard.as_ref()?;
        (self.fixed || loaded.at.elapsed() <= self.settings.stale_window)
            .then(|| loaded.keys.clone())
    }

    /// A key set loaded `age` ago that is never refreshed (tests of the stale window).
    #[cfg(test)]
    pub(crate) fn loaded_ago(
        keys: KeySet,
        age: Duration,
        settings: JwksSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Jwks> {
        let at = Instant::now()
            .checked_sub(age)
            .expect("the test's age is below the machine's uptime");
        Arc::new(Jwks {
            issuer: String::new(),
            jwks_uri: None,
            algorithms: Vec::new(),
            settings,
            client: reqwest::Client::new(),
            metrics,
            loaded: RwLock::new(Some(Loaded {
                keys: Arc::new(keys),
                at,
            })),
            ready: watch::channel(true).0,
            refetch: Mutex::new(None),
            fixed: false,
        })
    }

    /// Seconds since the key set in use was fetched; `None` before the first load.
    pub fn age(&self) -> Option<Duration> {
        let guard = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|l| l.at.elapsed())
    }

    /// After a token named a `kid` not in the set: refetch once, shared by all concurrent callers
    /// and at most once per cooldown. Returns the newest keys (refetched or not).
    pub async fn refetch_for(&self, kid: Option<&str>) -> Option<Arc<KeySet>> {
        if self.fixed {
            return self.keys();
        }
        let mut last = self.refetch.lock().await;
        // Someone else's refetch may already have brought the key while we waited.
        if let (Some(kid), Some(keys)) = (kid, self.keys())
            && keys.contains(kid)
        {
            return Some(keys);
        }
        if last.is_some_and(|t| t.elapsed() < self.settings.kid_cooldown) {
            debug!("unknown kid; refetch cooling down");
            return self.keys();
        }
        *last = Some(Instant::now());
        if let Err(e) = self.load().await {
            warn!(error = %e, "JWKS refetch for unknown kid failed");
        }
        self.keys()
    }

    /// Fetches discovery then the JWK set and installs it. Returns the `max-age` the IdP sent.
    #[instrument(skip_all, fields(issuer = %self.issuer))]
    async fn load(&self) -> Result<Option<Duration>, FetchError> {
        let result = self.fetch().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .jwks_fetches
            .get_or_create(&Outcome { outcome })
            .inc();
        let (keys, max_age) = result?;
        info!(keys = keys.len(), "JWKS loaded");
        let mut guard = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        *guard = Some(Loaded {
            keys: Arc::new(keys),
            at: Instant::now(),
        });
        drop(guard);
        self.ready.send_replace(true);
        Ok(max_age)
    }

    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
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

/// Redirects a discovery or JWKS fetch follows at most.
const MAX_REDIRECTS: usize = 3;

/// The HTTP client for discovery and JWKS: rustls, a 2 s connect timeout, no proxy from the
/// environment (the app's `HTTP_PROXY` may point at this very sidecar), at most 3 redirects and
/// never one from https to http. It keeps no idle connection: a fetch every few minutes gains
/// nothing from one, and a pool holding one runs a reaper on tokio's timer until it has sat idle
/// 90 s.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder("").build()
}

/// [`http_client`] for `issuer`: with an https issuer every request and every redirect must be
/// https (`https_only`), so neither discovery nor the keys can be fetched over plain HTTP,
/// whatever a redirect says.
pub fn http_client_for(issuer: &str) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(issuer).build()
}

/// The builder of [`http_client_for`], and the base of every client baton opens to an IdP:
/// the token endpoint's ([`crate::exchange::Exchanger`]) changes the redirects and the pool;
/// a test adds its private CA.
pub fn client_builder(issuer: &str) -> reqwest::ClientBuilder {
    let no_downgrade = reqwest::redirect::Policy::custom(|attempt| {
        let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if from_https && attempt.url().scheme() != "https" {
            attempt.error("redirect from https to http refused")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(no_downgrade)
        .https_only(issuer.starts_with("https:"))
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
}

/// The `kid` of a token's header, unverified: only used to skip a refetch another caller did.
fn header_kid(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
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

/// The wait before the next background refresh: `max-age` clamped to the refresh bounds, or,
/// after `failures` consecutive failures, the retry interval doubled each time up to
/// `refresh_min` (a down IdP is not hammered, a flapping one is soon retried).
fn next_refresh(
    result: &Result<Option<Duration>, FetchError>,
    s: &JwksSettings,
    failures: u32,
) -> Duration {
    match result {
        Ok(age) => age
            .unwrap_or(s.refresh_max)
            .clamp(s.refresh_min, s.refresh_max),
        Err(_) => s
            .retry
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(s.refresh_min.max(s.retry)),
    }
}

async fn refresh_loop(jwks: Weak<Jwks>) {
    let mut failures = 0u32;
    loop {
        let Some(j) = jwks.upgrade() else { return };
        let result = j.load().await;
        match &result {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                warn!(error = %e, failures, "JWKS refresh failed; keeping last-good keys");
            }
        }
        let wait = next_refresh(&result, &j.settings, failures);
        drop(j);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn refresh_is_clamped_and_failures_retry() {
        let s = JwksSettings::default();
        assert_eq!(
            next_refresh(&Ok(Some(Duration::from_secs(1))), &s, 0),
            s.refresh_min
        );
        assert_eq!(
            next_refresh(&Ok(Some(Duration::from_secs(86400))), &s, 0),
            s.refresh_max
        );
        assert_eq!(next_refresh(&Ok(None), &s, 0), s.refresh_max);
        assert_eq!(
            next_refresh(&Ok(Some(Duration::from_secs(900))), &s, 0),
            Duration::from_secs(900)
        );
        let err = Err(FetchError::Discovery {
            url: "u".into(),
            reason: "r".into(),
        });
        assert_eq!(next_refresh(&err, &s, 1), s.retry);
        assert_eq!(next_refresh(&err, &s, 3), s.retry * 4);
        assert_eq!(
            next_refresh(&err, &s, 40),
            s.refresh_min,
            "backoff is capped"
        );
    }
}
