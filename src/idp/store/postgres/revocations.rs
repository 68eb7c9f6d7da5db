//! Revocations: written to the shared table, asked of it where a decision is made once, and
//! copied into this replica's cache for the reads that may be a second stale.

use super::{Postgres, int};
use crate::idp::revocation::{Lineage, Revocations, Root};
use crate::idp::store::StoreError;
use crate::jwt::unix_now;
use sqlx::{Postgres as Pg, Row, Transaction};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Revocations written this long before the newest one seen are read again at each refresh: a
/// transaction that committed late is still copied.
const SYNC_OVERLAP_US: i64 = 10_000_000;

fn kind(root: Root<'_>) -> (&'static str, &str) {
    match root {
        Root::Session(id) => ("s", id),
        Root::Grant(id) => ("g", id),
    }
}

impl Postgres {
    /// Copies the revocations written since the last copy (minus an overlap) into the cache.
    pub(super) async fn sync(&self) -> Result<(), sqlx::Error> {
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

    pub(super) async fn insert_revocation(
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

    pub(in crate::idp::store) async fn revoke(
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

    pub(in crate::idp::store) async fn is_revoked(
        &self,
        l: &Lineage<'_>,
        now: u64,
    ) -> Result<bool, StoreError> {
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
