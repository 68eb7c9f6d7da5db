//! [`Idp`]: everything one running OpenID Provider holds: the validated config, the key ring,
//! the [`store`] of what it remembers, the sealing key, the password pool, the
//! login throttle and the metrics. Every handler takes it by reference.

use super::config::Config;
use super::{keys, metrics, password, seal, store, throttle};
use crate::jwt::unix_now;
use std::sync::{Arc, RwLock};
use tracing::info;

/// Why the IdP could not start or rotate keys.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The key store failed.
    #[error("signing keys: {0}")]
    Keys(#[from] keys::StoreError),
    /// The sealing key could not be read or made.
    #[error(transparent)]
    Seal(#[from] seal::KeyError),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] store::postgres::SetupError),
}

/// A running OpenID Provider.
pub struct Idp {
    pub(crate) config: Config,
    key_store: keys::Store,
    ring: RwLock<Arc<keys::KeyRing>>,
    /// Codes, refresh families, sessions, sign-out confirmations, revocations, replay sets.
    pub(crate) store: store::Store,
    pub(crate) metrics: metrics::Metrics,
    /// Seals pending requests and device cookies into the browser.
    pub(crate) sealer: crate::http::cookie::Sealer,
    /// The bounded password-check pool.
    pub(crate) passwords: password::Checker,
    /// Failure counters of the login pages.
    pub(crate) throttle: throttle::Throttle<throttle::Counters>,
}

impl Idp {
    /// Loads (or on first start creates) the signing keys and builds the stores. A database
    /// store is not contacted here: [`Idp::prepare`] does.
    pub fn new(config: Config) -> Result<Self, IdpError> {
        let key_store = key_store(&config);
        let ring = key_store.load_or_create()?;
        let sealer = seal::sealer(&config.keys.dir)?;
        let hashes: Vec<&str> = config
            .users
            .values()
            .map(|u| u.password_hash.expose())
            .collect();
        let lim = config.login;
        let passwords = password::Checker::new(&hashes, lim.hash_workers, lim.hash_queue);
        info!(
            workers = lim.hash_workers,
            queue = lim.hash_queue,
            memory_mib = passwords.memory_bound() >> 20,
            "password checks bounded"
        );
        let store = store::Store::new(&config)?;
        Ok(Self {
            throttle: throttle::Throttle::with_store(lim.throttle, store.counters(&config)),
            store,
            config,
            key_store,
            ring: RwLock::new(Arc::new(ring)),
            metrics: metrics::Metrics::default(),
            sealer,
            passwords,
        })
    }

    /// Readies the store (for a database: migrations, schema check, revocations copy).
    pub async fn prepare(&self) -> Result<(), IdpError> {
        Ok(self.store.prepare().await?)
    }

    /// Whether the IdP can answer requests that need its store (`/readyz`).
    pub fn ready(&self) -> bool {
        self.store.ready()
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current key ring (signer, verification keys, JWKS).
    pub fn keys(&self) -> Arc<keys::KeyRing> {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_ring(&self, ring: keys::KeyRing) {
        let mut w = match self.ring.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        *w = Arc::new(ring);
    }

    /// Rotates the keys on disk (next → active, active → retired, new next) and uses them.
    pub fn rotate_keys(&self) -> Result<(), IdpError> {
        let ring = self.key_store.rotate(unix_now())?;
        info!(kid = %ring.signer.kid(), "signing key rotated");
        self.set_ring(ring);
        Ok(())
    }

    /// Re-reads the manifest and switches keys if another process (`baton-idp keys rotate`)
    /// changed it. Returns whether keys changed.
    pub fn reload_keys(&self) -> Result<bool, IdpError> {
        match self.key_store.reload_if_changed(&self.keys())? {
            Some(ring) => {
                info!(kid = %ring.signer.kid(), "signing keys reloaded");
                self.set_ring(ring);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Successful token exchanges so far: lets tests assert "exactly one exchange happened".
    pub fn exchanges(&self) -> u64 {
        self.metrics.exchanges()
    }

    /// Token requests so far, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.metrics.token_requests()
    }
}

/// The key store `cfg` names: its directory and algorithm; retired keys stay published as long
/// as the longest token lifetime.
fn key_store(cfg: &Config) -> keys::Store {
    keys::Store::new(&cfg.keys.dir, cfg.keys.algorithm, cfg.max_token_lifetime())
}

/// Rotates the keys of the store `cfg` names, as `baton-idp keys rotate` does; a running IdP
/// picks the change up on SIGHUP or its periodic manifest check.
pub fn rotate_on_disk(cfg: &Config) -> Result<String, IdpError> {
    Ok(key_store(cfg).rotate(unix_now())?.signer.kid().to_owned())
}
