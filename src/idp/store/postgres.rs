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

use super::counter::{self, Bounds, Key, Record};
use super::{After, StoreError};
use super::{
    Code, CodeGrant, Consume, LOGOUT_SECS, PendingLogout, Refresh, RefreshGrant, Rotation,
};
use crate::dpop::ProofError;
use crate::idp::authn::{Authentication, Session};
use crate::idp::config::Rule;
use crate::idp::config::{Lifetimes, PostgresConfig};
use crate::idp::revocation::{self, Lineage, Revocations, Root};
use crate::idp::totp;
use crate::jwt::{MAX_LEEWAY, unix_now};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres as Pg, Row, Transaction};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The migrations, in order: schema version N is the first N applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_signing_keys.sql"),
    include_str!("migrations/0003_refresh_jkt.sql"),
    include_str!("migrations/0004_dpop_proofs.sql"),
];

/// The schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock migrations run under (any fixed number; "baton" in ASCII).
const MIGRATE_LOCK: i64 = 0x0062_6174_6f6e;

/// How often the revocations copy is refreshed (and the database probed).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How often expired rows are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Revocations written this long before the newest one seen are read again at each refresh: a
/// transaction that committed late is still copied.
const SYNC_OVERLAP_US: i64 = 10_000_000;

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

fn kind(root: Root<'_>) -> (&'static str, &str) {
    match root {
        Root::Session(id) => ("s", id),
        Root::Grant(id) => ("g", id),
    }
}

/// A sign-out confirmation as stored: the note is kept as its text and mapped back to the
/// page's string.
#[derive(Serialize, Deserialize)]
struct StoredLogout {
    browser: [u8; 32],
    session: Option<[u8; 32]>,
    redirect: Option<(String, Option<String>)>,
    note: Option<String>,
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

    /// Applies the migrations this schema lacks, under the advisory lock; the version after.
    pub async fn migrate(&self) -> Result<i32, SetupError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATE_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = migrate_locked(&mut conn).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATE_LOCK)
            .execute(&mut *conn)
            .await;
        let version = result?;
        unlock?;
        Ok(version)
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

    /// Refreshes the revocations copy every second (the probe that ends an outage) and deletes
    /// expired rows every minute, until dropped.
    pub async fn maintain(&self) {
        let mut last_sweep = Instant::now();
        loop {
            tokio::time::sleep(SYNC_EVERY).await;
            let synced = tokio::time::timeout(self.connect_timeout, self.sync()).await;
            match synced {
                Ok(Ok(())) => {
                    if !self.healthy.swap(true, Ordering::AcqRel) {
                        info!("store: database reachable again");
                    }
                }
                Ok(Err(e)) => self.down(&e),
                Err(_) => self.down(&sqlx::Error::PoolTimedOut),
            }
            if self.ready() && last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                if let Err(e) = self.sweep(unix_now()).await {
                    self.down(&e);
                }
            }
        }
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

    /// Copies the revocations written since the last copy (minus an overlap) into the cache.
    async fn sync(&self) -> Result<(), sqlx::Error> {
        let mut cursor = self
            .seen_us
            .load(Ordering::Acquire)
            .saturating_sub(SYNC_OVERLAP_US);
        let now = unix_now();
        loop {
            let rows = sqlx::query(
                "SELECT kind, id, username, auth_time, revoked_us FROM revocations \
                 WHERE revoked_us > $1 AND keep_until > $2 ORDER BY revoked_us LIMIT 5000",
            )
            .bind(cursor)
            .bind(int(now))
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                let (k, id, user): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                let auth_time = u64::try_from(r.get::<i64, _>(3)).unwrap_or(0);
                let root = if k == "s" {
                    Root::Session(&id)
                } else {
                    Root::Grant(&id)
                };
                self.cache.revoke(&user, root, auth_time, now);
                cursor = cursor.max(r.get(4));
            }
            if rows.len() < 5000 {
                break;
            }
        }
        self.seen_us.fetch_max(cursor, Ordering::AcqRel);
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.synced_ms.store(ms, Ordering::Release);
        Ok(())
    }

    /// Deletes every expired row.
    async fn sweep(&self, now: u64) -> Result<(), sqlx::Error> {
        let mut deleted = 0;
        for table in [
            "codes",
            "families",
            "refresh_tokens",
            "sessions",
            "logouts",
            "replays",
            "dpop_proofs",
            "throttle",
        ] {
            let sql = format!("DELETE FROM {table} WHERE expires_at <= $1");
            deleted += sqlx::query(&sql)
                .bind(int(now))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        deleted += sqlx::query("DELETE FROM revocations WHERE keep_until <= $1")
            .bind(int(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        for (kind, bound) in &self.throttle_bounds {
            deleted += sqlx::query(
                "DELETE FROM throttle WHERE id IN (SELECT id FROM throttle WHERE kind = $1 \
                 ORDER BY last DESC OFFSET $2)",
            )
            .bind(*kind)
            .bind(int(*bound))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        if deleted > 0 {
            info!(deleted, "store: expired rows deleted");
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Pg>, StoreError> {
        self.guard()?;
        self.pool.begin().await.map_err(|e| self.fail(e))
    }

    // === codes ===

    pub(super) async fn put_code(&self, key: [u8; 32], grant: CodeGrant) -> Result<(), StoreError> {
        self.guard()?;
        let keep = grant.expires_at + self.code_keep;
        sqlx::query("INSERT INTO codes (hash, grant_json, expires_at) VALUES ($1, $2, $3)")
            .bind(&key[..])
            .bind(to_json(&grant)?)
            .bind(int(keep))
            .execute(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(super) async fn code(&self, key: &[u8; 32]) -> Result<Option<Code>, StoreError> {
        self.guard()?;
        let row = sqlx::query(
            "SELECT grant_json, consumed_at IS NOT NULL, family FROM codes \
             WHERE hash = $1 AND expires_at > $2",
        )
        .bind(&key[..])
        .bind(int(unix_now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Code {
            grant: from_json(row.get::<&str, _>(0))?,
            used: row.get(1),
            family: row.get(2),
        }))
    }

    pub(super) async fn consume_code(
        &self,
        key: &[u8; 32],
        family: &str,
    ) -> Result<Consume, StoreError> {
        self.guard()?;
        let won = sqlx::query(
            "UPDATE codes SET consumed_at = $2, family = $3 \
             WHERE hash = $1 AND consumed_at IS NULL RETURNING 1",
        )
        .bind(&key[..])
        .bind(int(unix_now()))
        .bind(family)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        if won.is_some() {
            return Ok(Consume::Won);
        }
        let other: Option<Option<String>> =
            sqlx::query_scalar("SELECT family FROM codes WHERE hash = $1")
                .bind(&key[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail(e))?;
        Ok(Consume::Lost(other.flatten()))
    }

    // === refresh families ===

    pub(super) async fn start_family(
        &self,
        key: [u8; 32],
        grant: RefreshGrant,
    ) -> Result<(), StoreError> {
        let json = to_json(&grant)?;
        let mut tx = self.begin().await?;
        let run = async {
            sqlx::query(
                "INSERT INTO families (id, current, expires_at, jkt) VALUES ($1, $2, $3, $4)",
            )
            .bind(&grant.family)
            .bind(&key[..])
            .bind(int(grant.expires_at))
            .bind(grant.jkt.as_deref())
            .execute(&mut *tx)
            .await?;
            insert_refresh(&mut tx, &key, &grant, &json).await?;
            tx.commit().await
        };
        run.await.map_err(|e| self.fail(e))
    }

    pub(super) async fn refresh(&self, key: &[u8; 32]) -> Result<Option<Refresh>, StoreError> {
        self.guard()?;
        let row = sqlx::query(
            "SELECT r.grant_json, f.current, \
             (SELECT b.jkt FROM families b WHERE b.id = r.family) FROM refresh_tokens r \
             LEFT JOIN families f ON f.id = r.family AND f.expires_at > $2 \
             WHERE r.hash = $1 AND r.expires_at > $2",
        )
        .bind(&key[..])
        .bind(int(unix_now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(row) = row else { return Ok(None) };
        let mut grant: RefreshGrant = from_json(row.get::<&str, _>(0))?;
        grant.jkt = row.get(2);
        Ok(Some(Refresh {
            grant,
            current: hash(row.get(1)),
        }))
    }

    pub(super) async fn rotate(
        &self,
        old: &[u8; 32],
        next: [u8; 32],
        grant: RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let json = to_json(&grant)?;
        let mut tx = self.begin().await?;
        let run = async {
            let current: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                "SELECT current FROM families WHERE id = $1 AND expires_at > $2 FOR UPDATE",
            )
            .bind(&grant.family)
            .bind(int(now))
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match hash(current.flatten()) {
                Some(c) if c == *old => {
                    sqlx::query("UPDATE families SET current = $2 WHERE id = $1")
                        .bind(&grant.family)
                        .bind(&next[..])
                        .execute(&mut *tx)
                        .await?;
                    insert_refresh(&mut tx, &next, &grant, &json).await?;
                    Rotation::Rotated
                }
                Some(_) => {
                    sqlx::query("UPDATE families SET current = NULL WHERE id = $1")
                        .bind(&grant.family)
                        .execute(&mut *tx)
                        .await?;
                    let root = Root::Grant(&grant.family);
                    self.insert_revocation(&mut tx, &grant.auth.user, root, grant.auth.auth_time)
                        .await?;
                    Rotation::Reused
                }
                None => Rotation::Gone,
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(outcome)
        };
        let outcome = run.await.map_err(|e| self.fail(e))?;
        if outcome == Rotation::Reused {
            let root = Root::Grant(&grant.family);
            self.cache
                .revoke(&grant.auth.user, root, grant.auth.auth_time, now);
        }
        Ok(outcome)
    }

    pub(super) async fn revoke_family(
        &self,
        family: &str,
        auth: &Authentication,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let run = async {
            let had: Option<Option<Vec<u8>>> =
                sqlx::query_scalar("SELECT current FROM families WHERE id = $1 FOR UPDATE")
                    .bind(family)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query("UPDATE families SET current = NULL WHERE id = $1")
                .bind(family)
                .execute(&mut *tx)
                .await?;
            self.insert_revocation(&mut tx, &auth.user, Root::Grant(family), auth.auth_time)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(had.flatten().is_some())
        };
        let had = run.await.map_err(|e| self.fail(e))?;
        self.cache
            .revoke(&auth.user, Root::Grant(family), auth.auth_time, now);
        Ok(had)
    }

    // === login sessions ===

    pub(super) async fn put_session(
        &self,
        key: [u8; 32],
        session: &Session,
    ) -> Result<(), StoreError> {
        self.guard()?;
        sqlx::query(
            "INSERT INTO sessions (hash, session_json, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO UPDATE \
             SET session_json = EXCLUDED.session_json, expires_at = EXCLUDED.expires_at",
        )
        .bind(&key[..])
        .bind(to_json(session)?)
        .bind(int(session.expires_at))
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(super) async fn session(&self, key: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        self.guard()?;
        let json: Option<String> = sqlx::query_scalar(
            "SELECT session_json FROM sessions WHERE hash = $1 AND expires_at > $2",
        )
        .bind(&key[..])
        .bind(int(unix_now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        json.map(|j| from_json(&j)).transpose()
    }

    pub(super) async fn end_session(
        &self,
        key: &[u8; 32],
        session: &Session,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let root = Root::Session(&session.sid);
        let run = async {
            sqlx::query("DELETE FROM sessions WHERE hash = $1")
                .bind(&key[..])
                .execute(&mut *tx)
                .await?;
            self.insert_revocation(&mut tx, &session.user, root, session.auth_time())
                .await?;
            tx.commit().await
        };
        run.await.map_err(|e| self.fail(e))?;
        self.cache
            .revoke(&session.user, root, session.auth_time(), now);
        Ok(())
    }

    // === sign-out confirmations ===

    pub(super) async fn put_logout(
        &self,
        id: String,
        pending: PendingLogout,
    ) -> Result<(), StoreError> {
        self.guard()?;
        let stored = StoredLogout {
            browser: pending.browser,
            session: pending.session,
            redirect: pending.after.redirect,
            note: pending.after.note.map(str::to_owned),
        };
        sqlx::query("INSERT INTO logouts (id, pending_json, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(to_json(&stored)?)
            .bind(int(unix_now() + LOGOUT_SECS))
            .execute(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(super) async fn take_logout(&self, id: &str) -> Result<Option<PendingLogout>, StoreError> {
        self.guard()?;
        let json: Option<String> = sqlx::query_scalar(
            "DELETE FROM logouts WHERE id = $1 AND expires_at > $2 RETURNING pending_json",
        )
        .bind(id)
        .bind(int(unix_now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(json) = json else { return Ok(None) };
        let s: StoredLogout = from_json(&json)?;
        let strings = crate::page::strings::strings();
        let note = s.note.and_then(|n| {
            [strings.not_registered, strings.not_identified]
                .into_iter()
                .find(|known| *known == n)
        });
        Ok(Some(PendingLogout {
            browser: s.browser,
            session: s.session,
            after: After {
                redirect: s.redirect,
                note,
            },
        }))
    }

    // === replay sets ===

    /// Inserts `key` of `kind` unless a live row holds it; whether it was inserted.
    async fn first_use(&self, kind: &str, key: &str, until: u64) -> Result<bool, StoreError> {
        self.guard()?;
        let done = sqlx::query(
            "INSERT INTO replays (kind, key, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE replays.expires_at <= $4",
        )
        .bind(kind)
        .bind(key)
        .bind(int(until))
        .bind(int(unix_now()))
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn first_assertion_use(
        &self,
        key: String,
        exp: u64,
    ) -> Result<bool, StoreError> {
        self.first_use("jti", &key, exp.max(unix_now()) + MAX_LEEWAY)
            .await
    }

    /// Inserts the proof unless a live row holds it or its key has `dpop_share` live proofs.
    /// Two replicas racing past the share may each insert one more: the share is exceeded by
    /// at most the number of concurrent inserts.
    pub(super) async fn first_dpop_use(
        &self,
        jkt: &str,
        jti: &str,
        until: u64,
        now: u64,
    ) -> Result<Result<(), ProofError>, StoreError> {
        self.guard()?;
        let proof = crate::secret::sha256(&[jkt.as_bytes(), &[0], jti.as_bytes()]);
        let key = crate::secret::sha256(&[jkt.as_bytes()]);
        let share = i64::try_from(self.dpop_share).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "INSERT INTO dpop_proofs (proof, jkt, expires_at) \
             SELECT $1, $2, $3 WHERE (SELECT count(*) FROM (SELECT 1 FROM dpop_proofs \
               WHERE jkt = $2 AND expires_at > $4 LIMIT $5) live) < $5 \
             ON CONFLICT (proof) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE dpop_proofs.expires_at <= $4",
        )
        .bind(&proof[..])
        .bind(&key[..16])
        .bind(int(until))
        .bind(int(now))
        .bind(share)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let seen: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM dpop_proofs WHERE proof = $1 AND expires_at > $2")
                .bind(&proof[..])
                .bind(int(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail(e))?;
        Ok(Err(if seen.is_some() {
            ProofError::Replayed
        } else {
            ProofError::Busy
        }))
    }

    pub(super) async fn first_otp_use(&self, key: String) -> Result<bool, StoreError> {
        self.first_use("otp", &key, unix_now() + 4 * totp::STEP)
            .await
    }

    // === revocations ===

    async fn insert_revocation(
        &self,
        tx: &mut Transaction<'static, Pg>,
        user: &str,
        root: Root<'_>,
        auth_time: u64,
    ) -> Result<(), sqlx::Error> {
        let (k, id) = kind(root);
        sqlx::query(
            "INSERT INTO revocations (kind, id, username, auth_time, keep_until) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, id) DO UPDATE \
             SET auth_time = GREATEST(revocations.auth_time, EXCLUDED.auth_time), \
                 keep_until = GREATEST(revocations.keep_until, EXCLUDED.keep_until), \
                 revoked_us = DEFAULT",
        )
        .bind(k)
        .bind(id)
        .bind(user)
        .bind(int(auth_time))
        .bind(int(auth_time.saturating_add(self.keep)))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(super) async fn revoke(
        &self,
        user: &str,
        root: Root<'_>,
        auth_time: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let run = async {
            self.insert_revocation(&mut tx, user, root, auth_time)
                .await?;
            tx.commit().await
        };
        run.await.map_err(|e| self.fail(e))?;
        self.cache.revoke(user, root, auth_time, now);
        Ok(())
    }

    pub(super) async fn is_revoked(&self, l: &Lineage<'_>, now: u64) -> Result<bool, StoreError> {
        self.guard()?;
        if self.cache.is_revoked(l, now) {
            return Ok(true);
        }
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM revocations WHERE keep_until > $3 AND \
             ((kind = 's' AND id = $1) OR (kind = 'g' AND id = $2)))",
        )
        .bind(l.sid)
        .bind(l.grant)
        .bind(int(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail(e))
    }

    /// The copy's answer, unless the copy is older than `revocation_staleness`.
    pub fn revoked_cached(&self, l: &Lineage<'_>, now: u64) -> Result<bool, StoreError> {
        let synced = Duration::from_millis(self.synced_ms.load(Ordering::Acquire));
        if self.epoch.elapsed().saturating_sub(synced) > self.staleness {
            return Err(StoreError::Unavailable);
        }
        Ok(self.cache.is_revoked(l, now))
    }
}

impl Postgres {
    // === login failure counters ===

    /// [`counter::Store::reserve`] on the shared table: the row is locked while the rule is
    /// applied, so concurrent attempts at any replica count one after the other.
    pub async fn reserve_attempt(
        &self,
        key: &Key,
        rule: &Rule,
        now: u64,
    ) -> Result<Result<Option<Record>, u64>, StoreError> {
        let mut tx = self.begin().await?;
        let run = async {
            sqlx::query(
                "INSERT INTO throttle (id, kind, failures, last, expires_at) \
                 VALUES ($1, $2, 0, 0, 0) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&key.id[..])
            .bind(key.kind.label())
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT failures, last, expires_at FROM throttle WHERE id = $1 FOR UPDATE",
            )
            .bind(&key.id[..])
            .fetch_one(&mut *tx)
            .await?;
            let before = (row.get::<i64, _>(2) > int(now)).then(|| Record {
                failures: u32::try_from(row.get::<i32, _>(0)).unwrap_or(0),
                last: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
            });
            if let Some(r) = before {
                let until = r.last.saturating_add(rule.wait(r.failures));
                if until > now {
                    tx.rollback().await?;
                    return Ok(Err(until - now));
                }
            }
            let failures = before.map_or(0, |r| r.failures).saturating_add(1);
            sqlx::query(
                "UPDATE throttle SET failures = $2, last = $3, expires_at = $4 WHERE id = $1",
            )
            .bind(&key.id[..])
            .bind(i32::try_from(failures).unwrap_or(i32::MAX))
            .bind(int(now))
            .bind(int(now.saturating_add(rule.forget_after.max(1))))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(before))
        };
        run.await.map_err(|e| self.fail(e))
    }

    /// [`counter::Store::release`] on the shared table (see [`counter::released`]).
    pub async fn release_attempt(&self, key: &Key, before: Option<Record>, now: u64) {
        let Ok(mut tx) = self.begin().await else {
            return;
        };
        let run = async {
            let row = sqlx::query(
                "SELECT failures, last, expires_at FROM throttle WHERE id = $1 FOR UPDATE",
            )
            .bind(&key.id[..])
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return tx.commit().await;
            };
            let cur = Record {
                failures: u32::try_from(row.get::<i32, _>(0)).unwrap_or(0),
                last: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
            };
            match counter::released(cur, before, now) {
                Some(r) => {
                    sqlx::query("UPDATE throttle SET failures = $2, last = $3 WHERE id = $1")
                        .bind(&key.id[..])
                        .bind(i32::try_from(r.failures).unwrap_or(i32::MAX))
                        .bind(int(r.last))
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query("DELETE FROM throttle WHERE id = $1")
                        .bind(&key.id[..])
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await
        };
        if let Err(e) = run.await {
            self.fail(e);
        }
    }

    /// [`counter::Store::clear`] on the shared table.
    pub async fn clear_attempts(&self, key: &Key) {
        if self.guard().is_err() {
            return;
        }
        let done = sqlx::query("DELETE FROM throttle WHERE id = $1")
            .bind(&key.id[..])
            .execute(&self.pool)
            .await;
        if let Err(e) = done {
            self.fail(e);
        }
    }
}

async fn insert_refresh(
    tx: &mut Transaction<'static, Pg>,
    key: &[u8; 32],
    grant: &RefreshGrant,
    json: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, family, grant_json, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&key[..])
    .bind(&grant.family)
    .bind(json)
    .bind(int(grant.expires_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the migrations missing from the schema; fails on a newer schema.
async fn migrate_locked(conn: &mut sqlx::PgConnection) -> Result<i32, SetupError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS baton_schema \
         (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT version FROM baton_schema WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(SetupError::Newer {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (done, sql) in (found..).zip(MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0))) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO baton_schema (id, version) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(done + 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        info!(version = done + 1, "store: schema migrated");
    }
    Ok(found.max(SCHEMA_VERSION))
}
