//! The PostgreSQL store: every replica of baton-idp reads and writes the same tables, so a code
//! issued by one is redeemed at another, and a sign-out at one is seen by all.
//!
//! - Atomic steps are single statements or short transactions: a code is consumed by
//!   `UPDATE … WHERE consumed_at IS NULL RETURNING`; a rotation locks its family's row
//!   (`SELECT … FOR UPDATE`) and either moves it to the new token or, finding another current
//!   token, revokes the family in the same transaction; replay sets insert if absent.
//! - Revocations are asked of the database where a decision is made once (code redemption,
//!   refresh, introspection); token exchange and `/userinfo` read this replica's copy
//!   ([`Postgres::revoked_cached`]), refreshed every second and refused as too old past
//!   `revocation_staleness`.
//! - Every row carries its expiry, checked on read; [`Postgres::maintain`] deletes expired rows
//!   every minute.
//! - The schema is created and upgraded by the migrations embedded here, applied under an
//!   advisory lock at start (or by `baton-idp migrate`); a replica refuses to start against a
//!   schema newer than it knows.
//! - Faults: once a query fails for want of the database, every operation answers
//!   [`StoreError::Unavailable`] at once (a 503 with `Retry-After`) until the background probe
//!   reaches it again; nothing waits on a dead connection.

mod codes;
mod families;
mod replays;
mod revocations;
mod schema;
mod sessions;
mod throttle;
mod upkeep;

pub use schema::SCHEMA_VERSION;

use super::StoreError;
use super::counter::Bounds;
use crate::idp::config::{Lifetimes, PostgresConfig};
use crate::idp::revocation;
use crate::jwt::MAX_LEEWAY;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres as Pg, Transaction};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL could not be parsed (it is not echoed: it holds a password).
    #[error("store: the database URL is not a valid PostgreSQL URL")]
    Url,
    /// The database refused or could not be reached.
    #[error("store: database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema was written by a newer baton-idp.
    #[error(
        "store: the database schema is version {found}, newer than this baton-idp knows \
         ({known}); run the newer baton-idp"
    )]
    Newer {
        /// The version found.
        found: i32,
        /// [`SCHEMA_VERSION`].
        known: i32,
    },
}

/// The shared store.
pub struct Postgres {
    pool: PgPool,
    /// False from a failed query until the probe reaches the database again.
    healthy: AtomicBool,
    connect_timeout: Duration,
    /// This replica's copy of the revocations.
    cache: revocation::Memory,
    /// The database's clock (µs) of the newest revocation copied.
    seen_us: AtomicI64,
    /// When the copy was last refreshed, in ms since `epoch`.
    synced_ms: AtomicU64,
    epoch: Instant,
    staleness: Duration,
    /// Seconds a revocation is kept past its `auth_time`.
    keep: u64,
    /// Seconds a code's row outlives the code: its replay is recognised while the tokens it
    /// issued live.
    code_keep: u64,
    /// Most login failure counters kept per kind (the newest), as in memory.
    throttle_bounds: Vec<(&'static str, u64)>,
    /// Live DPoP proofs of one key kept at most.
    dpop_share: usize,
}

/// The database's integer type for unix seconds.
fn int(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn hash(v: Option<Vec<u8>>) -> Option<[u8; 32]> {
    v.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|_| StoreError::Corrupt)
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| {
        warn!(error = %e, "unreadable record in the store");
        StoreError::Corrupt
    })
}

impl Postgres {
    /// A pool for `cfg`, not yet connected; records live as `l` says, login failure counters
    /// are bounded by `bounds`.
    pub fn new(cfg: &PostgresConfig, l: &Lifetimes, bounds: Bounds) -> Result<Self, SetupError> {
        let opts = PgConnectOptions::from_str(cfg.url.expose()).map_err(|_| SetupError::Url)?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.connect_timeout)
            .connect_lazy_with(opts);
        Ok(Self {
            pool,
            healthy: AtomicBool::new(false),
            connect_timeout: cfg.connect_timeout,
            cache: revocation::Memory::new(l.sign_in + MAX_LEEWAY, revocation::PER_USER),
            seen_us: AtomicI64::new(0),
            synced_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            staleness: cfg.revocation_staleness,
            keep: l.sign_in + MAX_LEEWAY,
            code_keep: l.access.max(l.id),
            throttle_bounds: vec![
                ("account", bounds.account),
                ("unknown", bounds.unknown),
                ("device", bounds.device),
                ("network", bounds.network),
            ],
            dpop_share: crate::idp::config::Dpop::default().proofs_per_key,
        })
    }

    /// The same store keeping at most `share` live DPoP proofs of one key.
    pub fn with_dpop_share(mut self, share: usize) -> Self {
        self.dpop_share = share;
        self
    }

    /// Migrates, then takes the first copy of the revocations: the store is ready.
    pub async fn prepare(&self) -> Result<(), SetupError> {
        let version = self.migrate().await?;
        self.sync().await?;
        self.healthy.store(true, Ordering::Release);
        info!(version, "store: postgres ready");
        Ok(())
    }

    /// The connection pool (the signing keys' store shares it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answered the last query and probe.
    pub fn ready(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn down(&self, e: &sqlx::Error) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            warn!(error = %e, "store: database unreachable; answering 503 until it is back");
        }
    }

    /// Fails at once while the database is known to be down.
    fn guard(&self) -> Result<(), StoreError> {
        if self.ready() {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    /// A failed query: the database is marked down (the probe brings it back).
    fn fail(&self, e: sqlx::Error) -> StoreError {
        self.down(&e);
        StoreError::Unavailable
    }

    async fn begin(&self) -> Result<Transaction<'static, Pg>, StoreError> {
        self.guard()?;
        self.pool.begin().await.map_err(|e| self.fail(e))
    }
}
