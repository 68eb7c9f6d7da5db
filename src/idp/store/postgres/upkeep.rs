//! The background loop: the revocations copy refreshed every second (the probe that ends an
//! outage) and expired rows deleted every minute.

use super::{Postgres, int};
use crate::jwt::unix_now;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::info;

/// How often the revocations copy is refreshed (and the database probed).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How often expired rows are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Postgres {
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

    /// Deletes every expired row.
    async fn sweep(&self, now: u64) -> Result<(), sqlx::Error> {
        let mut deleted = 0;
        for table in [
            "codes",
            "families",
            "refresh_tokens",
            "sessions",
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
}
