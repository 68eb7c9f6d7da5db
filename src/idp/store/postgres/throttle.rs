//! Login failure counters in the shared table, so every replica counts the same attempts.

use super::{Postgres, int};
use crate::idp::config::Rule;
use crate::idp::store::StoreError;
use crate::idp::store::counter::{self, Key, Record};
use sqlx::Row;

impl Postgres {
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
