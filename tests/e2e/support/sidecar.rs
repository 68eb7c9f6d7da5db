//! The inbound side of a sidecar, built in the test process from a config: its state, the JWKS
//! it verifies with, and its metrics, ready for `inbound::serve` on a listener of the test's.

use baton::config::Config;
use baton::inbound::Inbound;
use baton::jwt::jwks::Jwks;
use baton::telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// What [`inbound`] builds.
pub struct Parts {
    /// The inbound state, to serve or to add handles to.
    pub state: Inbound,
    /// Its key set (already fetching).
    pub jwks: Arc<Jwks>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

/// The inbound state of `cfg`, its key set started with baton's own JWKS client.
pub fn inbound(cfg: &Config) -> Parts {
    let metrics = Arc::new(Metrics::new());
    let client = baton::jwt::jwks::http_client().expect("client");
    let jwks = Jwks::start(
        &cfg.issuer,
        &cfg.algorithms,
        cfg.jwks.clone(),
        client,
        metrics.clone(),
    );
    let state = Inbound::new(cfg, jwks.clone(), metrics.clone());
    Parts {
        state,
        jwks,
        metrics,
    }
}

/// Waits until `jwks` has its keys (at most 20 s).
pub async fn keys_loaded(jwks: &Jwks) {
    tokio::time::timeout(Duration::from_secs(20), jwks.wait_ready())
        .await
        .expect("JWKS loads");
}
