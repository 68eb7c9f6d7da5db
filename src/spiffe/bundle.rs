//! The JWT-SVID signing keys of one trust domain: a SPIFFE trust bundle (SPIFFE Trust Domain
//! and Bundle §4: a JWK set whose keys say `use: jwt-svid` or `use: x509-svid`) or a plain JWK
//! set, read from a file (read again whenever its modification time, size or inode changes) or
//! fetched from an https URL (bounded in time and size, refreshed every [`REFRESH`], and at most
//! once per [`KID_COOLDOWN`] for a `kid` it does not hold). A failed read or fetch keeps the
//! keys last loaded.

use crate::jwt::Algorithm;
use crate::jwt::keys::{KeyError, KeySet};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};
use url::Url;

/// How often a bundle fetched from a URL is fetched again.
pub const REFRESH: Duration = Duration::from_secs(300);
/// At most one fetch for an unknown `kid` per this interval.
pub const KID_COOLDOWN: Duration = Duration::from_secs(30);

/// Until a bundle URL has answered once, the least time between two fetches of it.
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);
/// Largest bundle read or fetched, in bytes.
pub const MAX_BYTES: usize = 256 << 10;
/// Time allowed for one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The bundle file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_BYTES`].
    #[error("bundle larger than {MAX_BYTES} bytes")]
    TooLarge,
    /// The fetch failed.
    #[error("fetch {url}: {reason}")]
    Fetch {
        /// The bundle URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// Not a JWK set, or no JWT-SVID key of an allowed algorithm in it.
    #[error("not a bundle with a JWT-SVID key of an allowed algorithm: {0}")]
    Keys(String),
}

/// Where a bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file kept fresh by something else (a SPIFFE helper, a mounted ConfigMap).
    File(PathBuf),
    /// An https endpoint serving the bundle (a SPIRE bundle endpoint or OIDC discovery
    /// provider's keys).
    Url(Url),
}

/// One trust domain's JWT-SVID keys, kept fresh.
pub struct Bundle {
    source: Source,
    algorithms: Vec<Algorithm>,
    loaded: RwLock<Loaded>,
    /// Serialises fetches; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Loaded {
    keys: Arc<KeySet>,
    /// The file's stamp when it was read.
    stamp: Option<Stamp>,
    /// When the URL was last fetched successfully.
    at: Option<Instant>,
}

/// Modification time, size and inode of a file: a replaced or rewritten file changes one.
type Stamp = (Option<SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

impl Bundle {
    /// A bundle from `source` with keys of `algorithms` only. A file is read now (an error when
    /// it cannot be used); a URL is fetched at first use.
    pub fn new(source: Source, algorithms: Vec<Algorithm>) -> Result<Self, BundleError> {
        let client = match &source {
            Source::File(_) => None,
            Source::Url(u) => Some(
                crate::jwt::jwks::client_builder(u.as_str())
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| BundleError::Fetch {
                        url: u.to_string(),
                        reason: e.to_string(),
                    })?,
            ),
        };
        let bundle = Self {
            source,
            algorithms,
            loaded: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
            client,
        };
        if let Source::File(path) = &bundle.source {
            let st = stamp(path);
            let keys = read_file(path, &bundle.algorithms)?;
            *bundle.loaded.write().unwrap_or_else(|e| e.into_inner()) = Loaded {
                keys: Arc::new(keys),
                stamp: st,
                at: None,
            };
        }
        Ok(bundle)
    }

    /// Where the keys come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The keys to verify a JWT-SVID whose header names `kid`: a changed file is read again
    /// first; a URL is fetched when its keys are older than [`REFRESH`] or lack `kid` (then at
    /// most once per [`KID_COOLDOWN`]).
    pub async fn keys(&self, kid: Option<&str>) -> Arc<KeySet> {
        match &self.source {
            Source::File(path) => self.file_keys(path),
            Source::Url(url) => self.url_keys(url, kid).await,
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .clone()
    }

    fn file_keys(&self, path: &Path) -> Arc<KeySet> {
        let now = stamp(path);
        {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            if loaded.stamp == now {
                return loaded.keys.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        // Recorded either way: a half-written file is read again only once it changes again.
        loaded.stamp = now;
        match read_file(path, &self.algorithms) {
            Ok(keys) => {
                info!(bundle = %path.display(), keys = keys.len(), "SPIFFE bundle reloaded");
                loaded.keys = Arc::new(keys);
            }
            Err(e) => warn!(error = %e, "SPIFFE bundle reload failed; keeping the old keys"),
        }
        loaded.keys.clone()
    }

    async fn url_keys(&self, url: &Url, kid: Option<&str>) -> Arc<KeySet> {
        let fresh = |l: &Loaded| {
            l.at.is_some_and(|at| at.elapsed() < REFRESH) && kid.is_none_or(|k| l.keys.contains(k))
        };
        if fresh(&self.loaded.read().unwrap_or_else(|e| e.into_inner())) {
            return self.current();
        }
        let mut last = self.fetching.lock().await;
        let loaded_once = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .at
            .is_some();
        // Another caller fetched while this one waited, or one fetched too recently: before the
        // first load too (a retry a second, not one per assertion a stranger sends).
        let cooldown = if loaded_once {
            KID_COOLDOWN
        } else {
            FIRST_LOAD_RETRY
        };
        if fresh(&self.loaded.read().unwrap_or_else(|e| e.into_inner()))
            || last.is_some_and(|t| t.elapsed() < cooldown)
        {
            return self.current();
        }
        *last = Some(Instant::now());
        match self.fetch(url).await {
            Ok(keys) => {
                let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
                loaded.keys = Arc::new(keys);
                loaded.at = Some(Instant::now());
            }
            Err(e) => warn!(error = %e, "SPIFFE bundle fetch failed; keeping the old keys"),
        }
        self.current()
    }

    async fn fetch(&self, url: &Url) -> Result<KeySet, BundleError> {
        let fail = |reason: String| BundleError::Fetch {
            url: url.to_string(),
            reason,
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| fail("no client".into()))?;
        let mut rsp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !rsp.status().is_success() {
            return Err(fail(format!("status {}", rsp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = rsp
            .chunk()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(BundleError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body, &self.algorithms)
    }
}

fn read_file(path: &Path, algorithms: &[Algorithm]) -> Result<KeySet, BundleError> {
    let read = |source| BundleError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_BYTES as u64 {
        return Err(BundleError::TooLarge);
    }
    parse(&std::fs::read(path).map_err(read)?, algorithms)
}

/// The JWT-SVID keys of a SPIFFE bundle or JWK set: keys with `use` `jwt-svid`, `sig` or none;
/// `x509-svid` keys (CA certificates) and any other use are left out. An empty result is an
/// error: such a bundle would refuse every SVID.
pub fn parse(json: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, BundleError> {
    let mut doc: Value =
        serde_json::from_slice(json).map_err(|e| BundleError::Keys(e.to_string()))?;
    let keys = doc
        .get_mut("keys")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| BundleError::Keys("no keys array".into()))?;
    keys.retain_mut(|k| {
        let keep = matches!(
            k.get("use").and_then(Value::as_str),
            None | Some("jwt-svid") | Some("sig")
        ) && k.get("use").is_none_or(Value::is_string);
        if let Some(o) = k.as_object_mut() {
            o.remove("use");
        }
        keep
    });
    let bytes = serde_json::to_vec(&doc).map_err(|e| BundleError::Keys(e.to_string()))?;
    let set = KeySet::from_jwks(&bytes, algorithms)
        .map_err(|e: KeyError| BundleError::Keys(e.to_string()))?;
    if set.is_empty() {
        return Err(BundleError::Keys("no usable key".into()));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::keys::SigningKey;
    use serde_json::json;

    #[test]
    fn only_jwt_svid_keys_are_kept() {
        let jwt = SigningKey::generate(Algorithm::ES256).expect("key");
        let x509 = SigningKey::generate(Algorithm::ES256).expect("key");
        let with_use = |k: &SigningKey, u: &str| {
            let mut v = k.public_jwk();
            v["use"] = json!(u);
            v
        };
        let doc = json!({"keys": [with_use(&jwt, "jwt-svid"), with_use(&x509, "x509-svid")],
            "spiffe_sequence": 1});
        let set = parse(doc.to_string().as_bytes(), &[Algorithm::ES256]).expect("bundle");
        assert!(set.contains(jwt.kid()));
        assert!(!set.contains(x509.kid()));
        let only_x509 = json!({"keys": [with_use(&x509, "x509-svid")]});
        assert!(parse(only_x509.to_string().as_bytes(), &[Algorithm::ES256]).is_err());
        // A key of an algorithm not allowed is left out too.
        let rs_only = json!({"keys": [with_use(&jwt, "jwt-svid")]});
        assert!(parse(rs_only.to_string().as_bytes(), &[Algorithm::RS256]).is_err());
    }
}
