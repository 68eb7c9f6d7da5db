//! Replay sets: client-assertion `jti`s, DPoP proofs and one-time-code steps, each recorded
//! only if no live row holds it.

use super::{Postgres, int};
use crate::dpop::ProofError;
use crate::idp::store::StoreError;
use crate::idp::totp;
use crate::jwt::{MAX_LEEWAY, unix_now};

impl Postgres {
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

    pub(in crate::idp::store) async fn first_assertion_use(
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
    pub(in crate::idp::store) async fn first_dpop_use(
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

    pub(in crate::idp::store) async fn first_otp_use(
        &self,
        key: String,
    ) -> Result<bool, StoreError> {
        self.first_use("otp", &key, unix_now() + 4 * totp::STEP)
            .await
    }
}
