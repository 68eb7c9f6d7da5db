//! The replay store: each proof (`jkt`, `jti`) is accepted once while its `iat` is in the
//! window (RFC 9449 §11.1). Bounded: at most `capacity` entries of 16 bytes (a hash of the key
//! and `jti`, whatever their length) and an expiry each; expired entries are swept when the
//! store is full, at most once a second; a store full of live proofs refuses new ones rather
//! than forget one that could then be replayed.

use super::ProofError;
use std::collections::HashMap;
use std::sync::Mutex;

/// Remembered proofs.
#[derive(Debug)]
pub struct Replay {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Hash of `jkt` and `jti` → the second after which the proof is too old anyway.
    seen: HashMap<[u8; 16], u64>,
    /// When the last sweep ran.
    swept_at: u64,
}

impl Replay {
    /// A store of at most `capacity` proofs.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records the proof (`jkt`, `jti`) until `until`; refuses one seen before
    /// ([`ProofError::Replayed`]) or, with the store full of live proofs, any new one
    /// ([`ProofError::Busy`]).
    pub fn first_use(&self, jkt: &str, jti: &str, until: u64, now: u64) -> Result<(), ProofError> {
        let digest = crate::secret::sha256(&[jkt.as_bytes(), &[0], jti.as_bytes()]);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&exp) = inner.seen.get(&key)
            && exp >= now
        {
            return Err(ProofError::Replayed);
        }
        if inner.seen.len() >= self.capacity && inner.swept_at != now {
            inner.seen.retain(|_, exp| *exp >= now);
            inner.swept_at = now;
        }
        if inner.seen.len() >= self.capacity && !inner.seen.contains_key(&key) {
            return Err(ProofError::Busy);
        }
        inner.seen.insert(key, until);
        Ok(())
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
