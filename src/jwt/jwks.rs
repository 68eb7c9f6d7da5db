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

mod client;
mod fetch;
mod refresh;
mod verifier;

pub use client::{client_builder, http_client, http_client_for};
pub use fetch::FetchError;
pub use verifier::{LastToken, Verifier, VerifyFailure};

use refresh::refresh_loop;

use super::Algorithm;
use super::keys::KeySet;
use crate::telemetry::{Metrics, Outcome};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};
use tracing::{debug, info, instrument, warn};

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
