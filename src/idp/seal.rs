//! The IdP's sealing key: what the login pages seal into the browser (the pending authorization
//! request, the device cookie) is encrypted and authenticated with it (ChaCha20-Poly1305, the
//! sealer the sidecar's cookies use). It lives next to the signing keys as `sealing.key`, 32
//! random bytes made on first start and readable by the owner only, so a restart keeps sign-ins
//! in flight and replicas that share the key directory open each other's pages.

use crate::http::cookie::Sealer;
use std::io;
use std::path::{Path, PathBuf};

/// The key file's name in the key directory.
pub const FILE: &str = "sealing.key";

/// Why the sealing key could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("sealing key {path}: {source}")]
pub struct KeyError {
    path: PathBuf,
    source: io::Error,
}

/// The sealer for the key in `dir` (which must exist), creating the key when there is none.
/// Two processes starting at once agree on one key: it is written aside and linked into place,
/// which fails if the other linked first.
pub fn sealer(dir: &Path) -> Result<Sealer, KeyError> {
    let path = dir.join(FILE);
    let err = |source| KeyError {
        path: path.clone(),
        source,
    };
    if !path.exists() {
        let mut key = [0u8; 32];
        crate::secret::fill(&mut key);
        let tmp = dir.join(format!("{FILE}.{}.tmp", crate::secret::random_u64()));
        write_private(&tmp, &key).map_err(err)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    let bytes = std::fs::read(&path).map_err(err)?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidData, "not 32 bytes")))?;
    Ok(Sealer::new(Some(key)))
}

/// The sealer of replicas whose keys live in the database: its key derived (HKDF-SHA256) from the
/// key-encryption key they share, so no replica needs a key directory.
pub fn derived(kek: &[u8; 32]) -> Sealer {
    use ring::hkdf::{HKDF_SHA256, Salt};
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = Salt::new(HKDF_SHA256, b"baton-idp").extract(kek);
    let mut key = [0u8; 32];
    prk.expand(&[b"sealing key"], Len)
        .and_then(|okm| okm.fill(&mut key))
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Sealer::new(Some(key))
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("baton-seal-{}", crate::secret::random_u64()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = sealer(&dir).expect("made");
        let sealed = a.seal("x", b"hello");
        let b = sealer(&dir).expect("read");
        assert_eq!(b.open("x", &sealed).as_deref(), Some(&b"hello"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "owner only");
        }
        std::fs::write(dir.join(FILE), b"short").expect("write");
        assert!(sealer(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
