//! Refresh-token families: a family's row names its current token. A rotation moves it on in
//! one statement when it still names the token presented; otherwise a transaction locks the row
//! and, finding a reused token, revokes the family.

use super::{Postgres, from_json, hash, int, to_json};
use crate::idp::authn::Authentication;
use crate::idp::revocation::{Revocations, Root};
use crate::idp::store::{Refresh, RefreshGrant, Rotation, StoreError};
use crate::jwt::unix_now;
use sqlx::{Postgres as Pg, Row, Transaction};

impl Postgres {
    pub(in crate::idp::store) async fn start_family(
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

    pub(in crate::idp::store) async fn refresh(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<Refresh>, StoreError> {
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

    pub(in crate::idp::store) async fn rotate(
        &self,
        old: &[u8; 32],
        next: [u8; 32],
        grant: RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let json = to_json(&grant)?;
        if self.move_on(old, &next, &grant, &json, now).await? {
            return Ok(Rotation::Rotated);
        }
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

    /// The usual rotation in one statement, one round trip: the family still names `old` and
    /// moves on to `next`, whose row is written with it. `false`: the family names another token
    /// or none (a reuse, a revoked or expired family), which the locking transaction of
    /// [`Postgres::rotate`] then tells apart. Two rotations of one token cannot both pass: the
    /// second waits for the first's row lock and then finds `current` moved.
    async fn move_on(
        &self,
        old: &[u8; 32],
        next: &[u8; 32],
        grant: &RefreshGrant,
        json: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.guard()?;
        let done = sqlx::query(
            "WITH moved AS (UPDATE families SET current = $3 \
             WHERE id = $1 AND current = $2 AND expires_at > $6 RETURNING id) \
             INSERT INTO refresh_tokens (hash, family, grant_json, expires_at) \
             SELECT $3, id, $4, $5 FROM moved",
        )
        .bind(&grant.family)
        .bind(&old[..])
        .bind(&next[..])
        .bind(json)
        .bind(int(grant.expires_at))
        .bind(int(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::idp::store) async fn revoke_family(
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
