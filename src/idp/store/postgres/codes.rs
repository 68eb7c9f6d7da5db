//! Authorization codes: stored, read back, and consumed once by a single conditional update.

use super::{Postgres, from_json, int, to_json};
use crate::idp::store::{Code, CodeGrant, Consume, StoreError};
use crate::jwt::unix_now;
use sqlx::Row;

impl Postgres {
    pub(in crate::idp::store) async fn put_code(
        &self,
        key: [u8; 32],
        grant: CodeGrant,
    ) -> Result<(), StoreError> {
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

    pub(in crate::idp::store) async fn code(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<Code>, StoreError> {
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

    pub(in crate::idp::store) async fn consume_code(
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
}
