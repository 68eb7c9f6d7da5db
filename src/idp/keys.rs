//! The IdP's signing-key store: PKCS#8 PEM files plus `manifest.json` in `keys.dir`, each key
//! `next`, `active` or `retired`. Rotation promotes next → active and active → retired, and makes
//! a new next, so verifiers see a key in the JWKS before anything is signed with it (OIDC Core
//! §10.1.1). Retired keys stay published until `retired_at` + the longest token lifetime.

use crate::jwt::Algorithm;
use crate::jwt::keys::{KeyError, KeySet, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MANIFEST: &str = "manifest.json";

/// Why the key store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("key store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("key store {path}: manifest: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The manifest parses but cannot be used.
    #[error("key store {path}: manifest: {reason}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key could not be generated or parsed.
    #[error("key store: {0}")]
    Key(#[from] KeyError),
}

/// A key's place in the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Published, not yet signing.
    Next,
    /// Signs new tokens.
    Active,
    /// Verify-only until its tokens have expired.
    Retired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    kid: String,
    alg: String,
    state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    keys: Vec<Entry>,
}

/// The keys in use at one moment: the signer, what verifies, what the JWKS publishes.
pub struct KeyRing {
    /// The active key.
    pub signer: Arc<SigningKey>,
    /// Every published key, for verifying this IdP's own tokens.
    pub verify: KeySet,
    /// The JWK set document (RFC 7517 §5).
    pub jwks: Value,
    manifest: String,
}

/// A key as a store other than the directory keeps it (the database): its place in the
/// rotation and its private key in PKCS#8 PEM.
pub struct Stored {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    /// Next, active or retired.
    pub state: State,
    /// When it was retired.
    pub retired_at: Option<u64>,
    /// The private key.
    pub pem: String,
}

impl KeyRing {
    /// The ring of `keys` at `now`: retired keys published `retain` seconds after retirement;
    /// `manifest` names this set of keys (a change means a reload).
    pub fn from_stored(
        keys: &[Stored],
        retain: u64,
        now: u64,
        manifest: String,
    ) -> Result<KeyRing, StoreError> {
        let mut ring = Vec::new();
        let mut signer = None;
        let published = keys.iter().filter(|k| {
            k.state != State::Retired
                || k.retired_at.is_some_and(|t| t.saturating_add(retain) > now)
        });
        for k in published {
            let key = Arc::new(SigningKey::from_pem(&k.kid, k.alg, &k.pem)?);
            if k.state == State::Active {
                signer = Some(key.clone());
            }
            ring.push(key);
        }
        let signer = signer.ok_or(StoreError::Invalid {
            path: PathBuf::from("(database)"),
            reason: "no active key",
        })?;
        Ok(Self::of(signer, &ring, manifest))
    }

    /// A one-key ring held only in memory: what an IdP whose keys live in the database signs
    /// with until it has read them (it serves nothing before).
    pub fn ephemeral(alg: Algorithm) -> Result<KeyRing, StoreError> {
        let key = Arc::new(SigningKey::generate(alg)?);
        Ok(Self::of(key.clone(), &[key], String::new()))
    }

    fn of(signer: Arc<SigningKey>, keys: &[Arc<SigningKey>], manifest: String) -> KeyRing {
        let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
        KeyRing {
            signer,
            verify: KeySet::from_signing_keys(keys.iter().map(|k| k.as_ref())),
            jwks,
            manifest,
        }
    }

    /// What names this set of keys: a store reloads when it differs.
    pub fn manifest(&self) -> &str {
        &self.manifest
    }
}

/// The on-disk store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    alg: Algorithm,
    /// How long a retired key stays published after `retired_at`.
    retain: u64,
}

impl Store {
    /// A store in `dir` creating `alg` keys; retired keys are kept `retain` seconds.
    pub fn new(dir: impl Into<PathBuf>, alg: Algorithm, retain: u64) -> Self {
        Self {
            dir: dir.into(),
            alg,
            retain,
        }
    }

    /// Loads the keys, creating an active and a next key on first start.
    pub fn load_or_create(&self) -> Result<KeyRing, StoreError> {
        let mut m = self.read_manifest()?;
        if m.keys.iter().all(|e| e.state != State::Active) {
            std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir, e))?;
            self.set_permissions(&self.dir, 0o700);
            m.keys.retain(|e| e.state == State::Retired);
            let active = self.create_key()?;
            m.keys.push(entry(&active, State::Active));
            let next = self.create_key()?;
            m.keys.push(entry(&next, State::Next));
            self.write_manifest(&m)?;
        }
        self.ring(&m, crate::jwt::unix_now())
    }

    /// Reloads only when the manifest changed since `current` was loaded.
    pub fn reload_if_changed(&self, current: &KeyRing) -> Result<Option<KeyRing>, StoreError> {
        // Compare parsed manifests, so reformatting the file by hand is not a change.
        let text = self.read_text()?;
        let same = text
            .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
            .and_then(|m| serde_json::to_string_pretty(&m).ok())
            .is_some_and(|t| t == current.manifest);
        if same {
            return Ok(None);
        }
        self.load_or_create().map(Some)
    }

    /// Rotates on disk: next → active, active → retired (now), a new next; drops retired keys
    /// whose tokens can no longer be valid.
    pub fn rotate(&self, now: u64) -> Result<KeyRing, StoreError> {
        self.load_or_create()?;
        let mut m = self.read_manifest()?;
        let retain = self.retain;
        m.keys.retain(|e| {
            e.state != State::Retired
                || e.retired_at.is_some_and(|t| t.saturating_add(retain) > now)
        });
        for e in &mut m.keys {
            match e.state {
                State::Active => {
                    e.state = State::Retired;
                    e.retired_at = Some(now);
                }
                State::Next => e.state = State::Active,
                State::Retired => {}
            }
        }
        let next = self.create_key()?;
        m.keys.push(entry(&next, State::Next));
        self.write_manifest(&m)?;
        self.ring(&m, now)
    }

    fn ring(&self, m: &Manifest, now: u64) -> Result<KeyRing, StoreError> {
        let mut keys = Vec::new();
        let mut signer = None;
        let published = m.keys.iter().filter(|e| {
            // A retired key whose tokens have all expired is no longer published.
            e.state != State::Retired
                || e.retired_at
                    .is_some_and(|t| t.saturating_add(self.retain) > now)
        });
        for e in published {
            let alg = match e.alg.as_str() {
                "RS256" => Algorithm::RS256,
                _ => Algorithm::ES256,
            };
            let path = self.pem_path(&e.kid)?;
            let pem = std::fs::read_to_string(&path).map_err(|err| self.io(&path, err))?;
            let key = Arc::new(SigningKey::from_pem(&e.kid, alg, &pem)?);
            if e.state == State::Active {
                signer = Some(key.clone());
            }
            keys.push(key);
        }
        let signer = signer.ok_or_else(|| StoreError::Invalid {
            path: self.dir.join(MANIFEST),
            reason: "no active key",
        })?;
        let manifest = serde_json::to_string_pretty(m).unwrap_or_default();
        Ok(KeyRing::of(signer, &keys, manifest))
    }

    fn create_key(&self) -> Result<SigningKey, StoreError> {
        let key = SigningKey::generate(self.alg)?;
        let path = self.pem_path(key.kid())?;
        write_private(&path, key.to_pem().as_bytes()).map_err(|e| self.io(&path, e))?;
        Ok(key)
    }

    /// A `kid` becomes a file name only after checking it is a plain base64url token.
    fn pem_path(&self, kid: &str) -> Result<PathBuf, StoreError> {
        let safe = !kid.is_empty()
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(StoreError::Invalid {
                path: self.dir.join(MANIFEST),
                reason: "kid must be base64url",
            });
        }
        Ok(self.dir.join(format!("{kid}.pem")))
    }

    fn read_text(&self) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(MANIFEST);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn read_manifest(&self) -> Result<Manifest, StoreError> {
        match self.read_text()? {
            None => Ok(Manifest::default()),
            Some(t) => serde_json::from_str(&t).map_err(|source| StoreError::Manifest {
                path: self.dir.join(MANIFEST),
                source,
            }),
        }
    }

    /// Writes a temporary file and renames it, so a running IdP never reads half a manifest.
    fn write_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(m).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|e| self.io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| self.io(&path, e))
    }

    fn io(&self, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    #[cfg(unix)]
    fn set_permissions(&self, path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }

    #[cfg(not(unix))]
    fn set_permissions(&self, _path: &Path, _mode: u32) {}
}

fn entry(key: &SigningKey, state: State) -> Entry {
    Entry {
        kid: key.kid().to_owned(),
        alg: format!("{:?}", key.alg()),
        state,
        retired_at: None,
    }
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "baton-idp-keys-{name}-{}-{}",
            std::process::id(),
            crate::secret::random_u64()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn keys_are_created_once_and_reused() {
        let dir = tmp("reuse");
        let store = Store::new(&dir, Algorithm::ES256, 600);
        let first = store.load_or_create().expect("create");
        let again = store.load_or_create().expect("load");
        assert_eq!(first.signer.kid(), again.signer.kid());
        assert_eq!(first.verify.len(), 2, "active + next are published");
        assert!(store.reload_if_changed(&again).expect("reload").is_none());
    }

    #[test]
    fn rotation_promotes_next_and_keeps_retired_until_expiry() {
        let dir = tmp("rotate");
        let store = Store::new(&dir, Algorithm::ES256, 600);
        let first = store.load_or_create().expect("create");
        let next_kid = first.jwks["keys"]
            .as_array()
            .and_then(|k| k.iter().find(|j| j["kid"] != first.signer.kid()))
            .and_then(|j| j["kid"].as_str())
            .expect("next key")
            .to_owned();
        let rotated = store.rotate(1000).expect("rotate");
        assert_eq!(rotated.signer.kid(), next_kid);
        assert!(
            rotated.verify.contains(first.signer.kid()),
            "retired stays published"
        );
        assert_eq!(rotated.verify.len(), 3);
        assert!(store.reload_if_changed(&first).expect("reload").is_some());
        let later = store.rotate(1000 + 601).expect("rotate again");
        assert!(
            !later.verify.contains(first.signer.kid()),
            "expired retired key dropped"
        );
        assert_eq!(later.verify.len(), 3);
    }
}
