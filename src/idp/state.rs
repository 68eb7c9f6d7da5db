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
    /// The signing keys in the database could not be used.
    #[error(transparent)]
    DbKeys(#[from] store::keys::KeysError),
    /// A trusted issuer's keys could not be set up.
    #[error(transparent)]
    Trusted(#[from] super::foreign::TrustError),
    /// The `tracing:` settings or the `OTEL_*` variables are unusable.
    #[error(transparent)]
    Tracing(#[from] crate::otel::Error),
}

/// Where the signing keys live.
enum KeySource {
    /// PEM files and a manifest in `keys.dir`.
    Dir(keys::Store),
    /// The shared database, encrypted at rest.
    Db(Box<store::keys::DbKeys>),
}

/// A running OpenID Provider.
pub struct Idp {
    pub(crate) config: Config,
    key_source: KeySource,
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
    /// The DPoP nonce handed out this period (RFC 9449 §8), when `dpop.nonce` is on.
    pub(crate) nonces: super::nonce::Nonces,
    /// DPoP proof headers checked before, with their keys ready (a client's proofs share one).
    pub(crate) dpop_headers: crate::dpop::HeaderCache,
    /// The trusted foreign issuers and their keys (`trusted_issuers:`).
    pub(crate) trusted: Vec<super::foreign::Trusted>,
    /// Where the token endpoint's spans go, when tracing is on.
    pub(crate) tracing: Option<Arc<crate::otel::Tracing>>,
}

impl Idp {
    /// Loads (or on first start creates) the signing keys and builds the stores. A database
    /// store is not contacted here: [`Idp::prepare`] does.
    pub fn new(config: Config) -> Result<Self, IdpError> {
        let store = store::Store::new(
            &config,
            throttle::bounds(&config.login.throttle, config.users.len()),
        )?;
        let (key_source, ring, sealer) = match (db_keys(&config, &store), kek(&config)) {
            (Some(db), Some(kek)) => {
                // Replaced by the database's keys in `prepare`, before anything is served.
                let ring = keys::KeyRing::ephemeral(config.keys.algorithm)?;
                (KeySource::Db(Box::new(db)), ring, seal::derived(kek))
            }
            _ => {
                let key_store = key_store(&config);
                let ring = key_store.load_or_create()?;
                let sealer = seal::sealer(&config.keys.dir)?;
                (KeySource::Dir(key_store), ring, sealer)
            }
        };
        let hashes: Vec<&str> = config
            .users
            .values()
            .map(|u| u.password_hash.expose())
            .collect();
        let trusted = super::foreign::start(&config.trusted_issuers)?;
        let lim = config.login;
        let passwords = password::Checker::new(&hashes, lim.hash_workers, lim.hash_queue);
        info!(
            workers = lim.hash_workers,
            queue = lim.hash_queue,
            memory_mib = passwords.memory_bound() >> 20,
            "password checks bounded"
        );
        let metrics = metrics::Metrics::default();
        let tracing = match crate::otel::Settings::resolve(config.tracing.as_ref(), "baton-idp")? {
            Some(s) => Some(crate::otel::Tracing::start(
                &s,
                metrics.trace_spans_dropped.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            tracing,
            throttle: throttle::Throttle::with_store(
                lim.throttle,
                throttle::Counters::of(&store, &config.login.throttle, config.users.len()),
            ),
            store,
            config,
            key_source,
            ring: RwLock::new(Arc::new(ring)),
            metrics,
            sealer,
            passwords,
            nonces: super::nonce::Nonces::default(),
            dpop_headers: crate::dpop::HeaderCache::default(),
            trusted,
        })
    }

    /// Traces the token endpoint into `tracing` instead of where the config and the `OTEL_*`
    /// variables say (`baton demo` collects spans in-process).
    pub fn with_tracing(mut self, tracing: Arc<crate::otel::Tracing>) -> Self {
        self.tracing = Some(tracing);
        self
    }

    /// Stops taking spans; those queued are still exported.
    pub fn shutdown_tracing(&self) {
        if let Some(t) = &self.tracing {
            t.shutdown();
        }
    }

    /// Readies the store (for a database: migrations, schema check, revocations copy).
    pub async fn prepare(&self) -> Result<(), IdpError> {
        self.store.prepare().await?;
        if let KeySource::Db(db) = &self.key_source {
            let ring = db.load_or_create(unix_now()).await?;
            info!(kid = %ring.signer.kid(), "signing keys read from the database");
            self.set_ring(ring);
        }
        Ok(())
    }

    /// Whether the IdP can answer requests that need its store (`/readyz`).
    pub fn ready(&self) -> bool {
        self.store.ready()
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where it keeps what it remembers.
    pub fn store(&self) -> &store::Store {
        &self.store
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

    /// Rotates the keys (next → active, active → retired, new next) and uses them.
    pub async fn rotate_keys(&self) -> Result<(), IdpError> {
        let ring = match &self.key_source {
            KeySource::Dir(d) => d.rotate(unix_now())?,
            KeySource::Db(db) => db.rotate(unix_now()).await?,
        };
        info!(kid = %ring.signer.kid(), "signing key rotated");
        self.set_ring(ring);
        Ok(())
    }

    /// Re-reads the manifest (or the database's keys) and switches keys if another process
    /// (`baton-idp keys rotate`, another replica) changed them. Returns whether keys changed.
    pub async fn reload_keys(&self) -> Result<bool, IdpError> {
        let ring = match &self.key_source {
            KeySource::Dir(d) => d.reload_if_changed(&self.keys())?,
            KeySource::Db(db) => db.reload_if_changed(&self.keys(), unix_now()).await?,
        };
        match ring {
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

/// The key-encryption key, when the store keeps the signing keys.
fn kek(cfg: &Config) -> Option<&[u8; 32]> {
    match &cfg.store {
        crate::idp::config::StoreConfig::Postgres(pg) => pg.key_encryption_key.as_ref(),
        crate::idp::config::StoreConfig::Memory => None,
    }
}

/// The database key store, when the config asks for one.
fn db_keys(cfg: &Config, store: &store::Store) -> Option<store::keys::DbKeys> {
    let pg = store.postgres()?;
    let kek = kek(cfg)?;
    Some(store::keys::DbKeys::new(
        pg.clone(),
        kek,
        cfg.keys.algorithm,
        cfg.max_token_lifetime(),
    ))
}

/// Rotates the keys in the database the config names, as `baton-idp keys rotate` does there;
/// the replicas pick the change up within 10 s. The kid of the new active key.
pub async fn rotate_in_db(cfg: &Config) -> Result<String, IdpError> {
    let store = store::Store::new(cfg, throttle::bounds(&cfg.login.throttle, cfg.users.len()))?;
    let Some(db) = db_keys(cfg, &store) else {
        return rotate_on_disk(cfg);
    };
    if let Some(pg) = store.postgres() {
        pg.migrate().await?;
    }
    Ok(db.rotate(unix_now()).await?.signer.kid().to_owned())
}

/// Whether the config keeps the signing keys in the database.
pub fn keys_in_db(cfg: &Config) -> bool {
    kek(cfg).is_some()
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
