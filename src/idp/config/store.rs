//! `store:` in `idp.yaml`: where baton-idp keeps what it remembers between requests. `memory`
//! (the default) keeps it in the process: one replica. `postgres` keeps it in a PostgreSQL
//! database every replica shares; its URL holds a password, so it is read from a file
//! (`url_file`) or an environment variable (`url_env`), never written inline.

use super::secrets::{Sources, Spec};
use crate::config::Problems;
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The validated `store:` section.
#[derive(Clone, Default)]
pub enum StoreConfig {
    /// In the process (one replica).
    #[default]
    Memory,
    /// In PostgreSQL, shared by every replica.
    Postgres(PostgresConfig),
}

/// How to reach the shared database.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db?sslmode=…`.
    pub url: Secret,
    /// Connections each replica holds at most.
    pub pool_size: u32,
    /// How long a connection (or a free one from the pool) is waited for.
    pub connect_timeout: Duration,
    /// The longest a replica trusts its copy of the revocations without hearing from the
    /// database; past it, checks that need them answer 503.
    pub revocation_staleness: Duration,
    /// With it, the signing keys live in the database encrypted under this AES-256 key, and the
    /// sealing key is derived from it; without it, both stay in `keys.dir`.
    pub key_encryption_key: Option<[u8; 32]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default = "default_kind")]
    kind: String,
    url: Option<String>,
    url_file: Option<PathBuf>,
    url_env: Option<String>,
    #[serde(default = "default_pool")]
    pool_size: u32,
    /// Seconds.
    #[serde(default = "default_connect_timeout")]
    connect_timeout: u64,
    /// Seconds.
    #[serde(default = "default_staleness")]
    revocation_staleness: u64,
    key_encryption_key: Option<String>,
    key_encryption_key_file: Option<PathBuf>,
    key_encryption_key_env: Option<String>,
}

fn default_kind() -> String {
    "memory".into()
}

fn default_pool() -> u32 {
    10
}

fn default_connect_timeout() -> u64 {
    5
}

fn default_staleness() -> u64 {
    5
}

/// Validates `raw` (absent: the memory store).
pub(super) fn store(raw: Option<RawStore>, sources: &Sources, p: &mut Problems) -> StoreConfig {
    let Some(raw) = raw else {
        return StoreConfig::Memory;
    };
    match raw.kind.as_str() {
        "memory" => {
            if raw.url.is_some() || raw.url_file.is_some() || raw.url_env.is_some() {
                p.push("store.url", "only a postgres store has a URL");
            }
            StoreConfig::Memory
        }
        "postgres" => postgres(raw, sources, p).map_or(StoreConfig::Memory, StoreConfig::Postgres),
        _ => {
            p.push("store.kind", "must be memory or postgres");
            StoreConfig::Memory
        }
    }
}

fn postgres(raw: RawStore, sources: &Sources, p: &mut Problems) -> Option<PostgresConfig> {
    let spec = Spec {
        name: "url",
        what: "database URL",
        make: "keep the URL with its password in a Secret mounted as a file",
        inline: raw.url.as_deref(),
        file: raw.url_file.as_deref(),
        env: raw.url_env.as_deref(),
    };
    if !spec.given() {
        p.push(
            "store.url_file",
            "a postgres store needs url_file or url_env",
        );
        return None;
    }
    if !(1..=1000).contains(&raw.pool_size) {
        p.push("store.pool_size", "must be between 1 and 1000");
    }
    if !(1..=300).contains(&raw.connect_timeout) {
        p.push("store.connect_timeout", "must be between 1 and 300 seconds");
    }
    if !(1..=300).contains(&raw.revocation_staleness) {
        p.push(
            "store.revocation_staleness",
            "must be between 1 and 300 seconds",
        );
    }
    let found = sources.read("store", &spec, p)?;
    let mut demo = Vec::new();
    sources.vet("store", &spec, &found, &mut demo, p);
    super::secrets::warn_demo("store", "the store", &demo, p);
    if !found.value.starts_with("postgres://") && !found.value.starts_with("postgresql://") {
        // The value is not echoed: it holds a password.
        p.push("store.url", "must be a postgres:// or postgresql:// URL");
    }
    let kek = kek(&raw, sources, p);
    Some(PostgresConfig {
        url: Secret::new(found.value),
        pool_size: raw.pool_size,
        connect_timeout: Duration::from_secs(raw.connect_timeout),
        revocation_staleness: Duration::from_secs(raw.revocation_staleness),
        key_encryption_key: kek,
    })
}

/// The key-encryption key, when given: 32 bytes as 64 hex digits or base64 (never inline).
fn kek(raw: &RawStore, sources: &Sources, p: &mut Problems) -> Option<[u8; 32]> {
    use base64::Engine;
    let spec = Spec {
        name: "key_encryption_key",
        what: "key-encryption key",
        make: "head -c 32 /dev/urandom | base64",
        inline: raw.key_encryption_key.as_deref(),
        file: raw.key_encryption_key_file.as_deref(),
        env: raw.key_encryption_key_env.as_deref(),
    };
    if !spec.given() {
        return None;
    }
    let found = sources.read("store", &spec, p)?;
    let mut demo = Vec::new();
    sources.vet("store", &spec, &found, &mut demo, p);
    let v = found.value.trim();
    let bytes = if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
    } else {
        base64::engine::general_purpose::STANDARD.decode(v).ok()
    };
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(k) => Some(k),
        None => {
            p.push(
                "store.key_encryption_key",
                "must be 32 bytes, as 64 hex digits or base64 (head -c 32 /dev/urandom | base64)",
            );
            None
        }
    }
}
