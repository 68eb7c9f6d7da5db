//! A JWT-SVID in a file that a SPIFFE helper (spiffe-helper, the SPIRE agent's sidecar)
//! rewrites before the SVID expires: read again whenever the file's modification time, size or
//! inode changes, and never shown (`Debug` names the path only).

use crate::secret::Token;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Largest SVID file read, in bytes.
pub const MAX_BYTES: u64 = 16 << 10;

/// Why no SVID could be read.
#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    /// The file could not be read.
    #[error("read the JWT-SVID file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Empty, too large, or not a compact JWS in visible ASCII.
    #[error("the JWT-SVID file {} holds no JWT", path.display())]
    NotJwt {
        /// The file.
        path: PathBuf,
    },
}

/// The JWT-SVID file of a sidecar.
pub struct SvidFile {
    path: PathBuf,
    cached: Mutex<Option<(Stamp, Token)>>,
}

type Stamp = (Option<SystemTime>, u64, u64);

impl std::fmt::Debug for SvidFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SvidFile {
    /// The SVID at `path`, read at first use.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SVID in the file now: the one read before while the file has not changed.
    pub fn read(&self) -> Result<Token, SvidError> {
        use std::os::unix::fs::MetadataExt;
        let fail = |source| SvidError::Read {
            path: self.path.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(fail)?;
        let stamp = (meta.modified().ok(), meta.len(), meta.ino());
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, token)) = cached.as_ref()
            && *s == stamp
        {
            return Ok(token.clone());
        }
        let not_jwt = || SvidError::NotJwt {
            path: self.path.clone(),
        };
        if meta.len() > MAX_BYTES {
            return Err(not_jwt());
        }
        let text = std::fs::read_to_string(&self.path).map_err(fail)?;
        let jwt = text.trim();
        let visible = jwt.bytes().all(|b| b.is_ascii_graphic());
        if jwt.is_empty() || !visible || jwt.split('.').count() != 3 {
            return Err(not_jwt());
        }
        let token = Token::new(jwt);
        *cached = Some((stamp, token.clone()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("baton-svid-{}", crate::secret::random_u64()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("svid.token");
        std::fs::write(&path, "a.b.c\n").expect("write");
        let f = SvidFile::new(&path);
        assert_eq!(f.read().expect("svid").expose(), "a.b.c");
        // Replaced the way helpers do: a new file renamed over the old one.
        let tmp = dir.join("svid.tmp");
        std::fs::write(&tmp, "d.e.ff").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        assert_eq!(f.read().expect("svid").expose(), "d.e.ff");
        std::fs::write(&path, "not a jwt").expect("write");
        assert!(matches!(f.read(), Err(SvidError::NotJwt { .. })));
        assert!(!format!("{f:?}").contains("d.e.ff"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
