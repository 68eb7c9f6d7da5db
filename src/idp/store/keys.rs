//! Signing keys in the shared database, so every replica signs and publishes the same keys and
//! a pod deletion loses none. Private keys are stored encrypted with AES-256-GCM (ring) under a
//! key-encryption key the database never sees (`store.key_encryption_key_file` or `_env`); the
//! `kid` is the associated data, so a sealed key cannot be passed off under another `kid`.
//!
//! Rotation has a single writer: it runs in a transaction holding an advisory lock. It promotes
//! the `next` key only once that key has been published for [`PUBLISH_SECS`]: every replica
//! re-reads the keys at least that often, so each JWKS shows a key before any replica signs
//! with it. Retired keys stay published for the longest token lifetime.

use super::postgres::Postgres;
use crate::idp::keys::{KeyRing, State, StoreError as KeyStoreError, Stored};
use crate::jwt::Algorithm;
use crate::jwt::keys::SigningKey;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sqlx::Row;
use std::sync::Arc;

/// Seconds a `next` key is published before a rotation may make it sign: more than the
/// replicas' reload interval (10 s) with a margin.
pub const PUBLISH_SECS: u64 = 30;

/// The advisory lock key creation and rotation run under.
const KEYS_LOCK: i64 = 0x0062_6174_6f6f;

/// Why the keys in the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The database failed.
    #[error("signing keys: database: {0}")]
    Db(#[from] sqlx::Error),
    /// A key could not be made or read.
    #[error("signing keys: {0}")]
    Key(#[from] KeyStoreError),
    /// A sealed key did not open: another key-encryption key, or a tampered row.
    #[error("signing keys: key {0} does not decrypt with this key-encryption key")]
    Sealed(String),
    /// The next key is too fresh to sign.
    #[error(
        "signing keys: the next key was published {age} s ago; rotate again in {wait} s, when \
         every replica has published it"
    )]
    TooSoon {
        /// Seconds since it was made.
        age: u64,
        /// Seconds to wait.
        wait: u64,
    },
}

/// The keys of one IdP in the database.
pub struct DbKeys {
    pg: Arc<Postgres>,
    kek: LessSafeKey,
    alg: Algorithm,
    retain: u64,
}

impl DbKeys {
    /// Keys of `alg` in `pg`, sealed under `kek`; retired keys kept `retain` seconds.
    pub fn new(pg: Arc<Postgres>, kek: &[u8; 32], alg: Algorithm, retain: u64) -> Self {
        let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte AES key"));
        Self {
            pg,
            kek,
            alg,
            retain,
        }
    }

    fn seal(&self, kid: &str, pem: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::secret::fill(&mut nonce);
        let mut buf = pem.as_bytes().to_vec();
        self.kek
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any length we store");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Result<String, KeysError> {
        let bad = || KeysError::Sealed(kid.to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = body.to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }

    /// Reads every key row.
    async fn rows(&self, conn: &mut sqlx::PgConnection) -> Result<Vec<Row_>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT kid, alg, state, created_at, retired_at, sealed FROM signing_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Row_ {
                kid: r.get(0),
                alg: r.get(1),
                state: r.get(2),
                created_at: u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                retired_at: r
                    .get::<Option<i64>, _>(4)
                    .and_then(|t| u64::try_from(t).ok()),
                sealed: r.get(5),
            })
            .collect())
    }

    fn ring(&self, rows: &[Row_], now: u64) -> Result<KeyRing, KeysError> {
        let mut keys = Vec::new();
        for r in rows {
            let Some(state) = state_of(&r.state) else {
                continue;
            };
            keys.push(Stored {
                kid: r.kid.clone(),
                alg: if r.alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                },
                state,
                retired_at: r.retired_at,
                pem: self.open(&r.kid, &r.sealed)?,
            });
        }
        Ok(KeyRing::from_stored(
            &keys,
            self.retain,
            now,
            manifest(rows),
        )?)
    }

    async fn insert(
        &self,
        tx: &mut sqlx::PgConnection,
        state: &str,
        now: u64,
    ) -> Result<(), KeysError> {
        let key = SigningKey::generate(self.alg).map_err(KeyStoreError::from)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, created_at, sealed) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.kid())
        .bind(format!("{:?}", key.alg()))
        .bind(state)
        .bind(int(now))
        .bind(self.seal(key.kid(), key.to_pem()))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// The keys, creating an active and a next key when there is none (under the lock).
    pub async fn load_or_create(&self, now: u64) -> Result<KeyRing, KeysError> {
        let mut tx = self.pg.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEYS_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut rows = self.rows(&mut tx).await?;
        if !rows.iter().any(|r| r.state == "active") {
            self.insert(&mut tx, "active", now).await?;
            self.insert(&mut tx, "next", now).await?;
            rows = self.rows(&mut tx).await?;
        }
        tx.commit().await?;
        self.ring(&rows, now)
    }

    /// The keys again when they changed since `current` was read.
    pub async fn reload_if_changed(
        &self,
        current: &KeyRing,
        now: u64,
    ) -> Result<Option<KeyRing>, KeysError> {
        let mut conn = self.pg.pool().acquire().await?;
        let rows = self.rows(&mut conn).await?;
        if manifest(&rows) == current.manifest() {
            return Ok(None);
        }
        self.ring(&rows, now).map(Some)
    }

    /// next → active, active → retired, a new next; retired keys past their time dropped. The
    /// next key must have been published [`PUBLISH_SECS`].
    pub async fn rotate(&self, now: u64) -> Result<KeyRing, KeysError> {
        self.load_or_create(now).await?;
        let mut tx = self.pg.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEYS_LOCK)
            .execute(&mut *tx)
            .await?;
        let rows = self.rows(&mut tx).await?;
        if let Some(next) = rows.iter().find(|r| r.state == "next") {
            let age = now.saturating_sub(next.created_at);
            if age < PUBLISH_SECS {
                return Err(KeysError::TooSoon {
                    age,
                    wait: PUBLISH_SECS - age,
                });
            }
        }
        sqlx::query("DELETE FROM signing_keys WHERE state = 'retired' AND retired_at + $2 <= $1")
            .bind(int(now))
            .bind(int(self.retain))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE state = 'active'",
        )
        .bind(int(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE signing_keys SET state = 'active' WHERE state = 'next'")
            .execute(&mut *tx)
            .await?;
        self.insert(&mut tx, "next", now).await?;
        let rows = self.rows(&mut tx).await?;
        tx.commit().await?;
        self.ring(&rows, now)
    }
}

/// One row of `signing_keys`.
struct Row_ {
    kid: String,
    alg: String,
    state: String,
    created_at: u64,
    retired_at: Option<u64>,
    sealed: Vec<u8>,
}

fn state_of(s: &str) -> Option<State> {
    match s {
        "next" => Some(State::Next),
        "active" => Some(State::Active),
        "retired" => Some(State::Retired),
        _ => None,
    }
}

/// What names a set of keys: kid, state and retirement of each.
fn manifest(rows: &[Row_]) -> String {
    rows.iter()
        .map(|r| format!("{}:{}:{:?}", r.kid, r.state, r.retired_at))
        .collect::<Vec<_>>()
        .join(",")
}

fn int(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sealed_key_opens_only_under_its_kid_and_its_key() {
        // The cipher alone, without a database: DbKeys::seal/open through a lazily connected
        // pool that is never used.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let cfg = crate::idp::config::PostgresConfig {
                url: crate::secret::Secret::new("postgres://nobody@127.0.0.1:1/none"),
                pool_size: 1,
                connect_timeout: std::time::Duration::from_secs(1),
                revocation_staleness: std::time::Duration::from_secs(5),
                key_encryption_key: None,
            };
            let l = crate::idp::Config::demo("http://idp.test", "/tmp/none").lifetimes;
            let pg = super::Postgres::new(
                &cfg,
                &l,
                crate::idp::store::counter::Bounds {
                    account: 18,
                    unknown: 16,
                    device: 16,
                    network: 16,
                },
            )
            .expect("pool");
            let keys = super::DbKeys::new(
                std::sync::Arc::new(pg),
                &[7u8; 32],
                crate::jwt::Algorithm::ES256,
                600,
            );
            let sealed = keys.seal("kid-1", "-----BEGIN PRIVATE KEY-----");
            assert!(
                !sealed.windows(5).any(|w| w == b"BEGIN"),
                "encrypted at rest"
            );
            assert_eq!(
                keys.open("kid-1", &sealed).expect("opens"),
                "-----BEGIN PRIVATE KEY-----"
            );
            assert!(keys.open("kid-2", &sealed).is_err(), "bound to its kid");
            let mut tampered = sealed.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert!(keys.open("kid-1", &tampered).is_err());
            let other = super::DbKeys::new(
                keys.pg.clone(),
                &[8u8; 32],
                crate::jwt::Algorithm::ES256,
                600,
            );
            assert!(
                other.open("kid-1", &sealed).is_err(),
                "another key-encryption key"
            );
        });
    }
}
