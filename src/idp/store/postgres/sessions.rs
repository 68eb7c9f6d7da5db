//! Login sessions: stored under the hash of their cookie, and ended together with a revocation
//! of everything issued under them.

use super::{Postgres, from_json, int, to_json};
use crate::idp::authn::Session;
use crate::idp::revocation::{Revocations, Root};
use crate::idp::store::StoreError;
use crate::jwt::unix_now;

impl Postgres {
    pub(in crate::idp::store) async fn put_session(
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

    pub(in crate::idp::store) async fn session(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<Session>, StoreError> {
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

    pub(in crate::idp::store) async fn end_session(
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
}
