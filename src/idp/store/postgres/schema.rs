//! The schema: the embedded migrations, applied in order under an advisory lock.

use super::{Postgres, SetupError};
use tracing::info;

/// The migrations, in order: schema version N is the first N applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_signing_keys.sql"),
    include_str!("../migrations/0003_refresh_jkt.sql"),
    include_str!("../migrations/0004_dpop_proofs.sql"),
    include_str!("../migrations/0005_no_logouts.sql"),
];

/// The schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock migrations run under (any fixed number; "baton" in ASCII).
const MIGRATE_LOCK: i64 = 0x0062_6174_6f6e;

impl Postgres {
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
