//! The replay store: each proof (`jkt`, `jti`) is accepted once while its `iat` is in the
//! window (RFC 9449 §11.1). Bounded twice: at most `capacity` entries in all, and at most
//! `per_key` live entries of one key, so one key (one client, or one stranger with a token)
//! cannot fill the store for everyone. An entry is 16 bytes (a hash of the key and `jti`,
//! whatever their length), an expiry and 8 bytes naming the key. Expired entries are swept when
//! a bound is reached, at most once a second; a store (or a key's share) full of live proofs
//! refuses new ones rather than forget one that could then be replayed.

use super::ProofError;
use std::collections::HashMap;
use std::sync::Mutex;

/// The 8 bytes naming a key in the store: the start of the SHA-256 of its thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The name of the key whose RFC 7638 thumbprint is `jkt`.
    pub fn of(jkt: &str) -> Self {
        let mut key = [0u8; 8];
        key.copy_from_slice(&crate::secret::sha256(&[jkt.as_bytes()])[..8]);
        Self(key)
    }
}

/// Remembered proofs.
#[derive(Debug)]
pub struct Replay {
    capacity: usize,
    per_key: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Hash of `jkt` and `jti` → the second after which the proof is too old anyway, and the
    /// hash of its `jkt`.
    seen: HashMap<[u8; 16], (u64, [u8; 8])>,
    /// Hash of a `jkt` → its entries in `seen`.
    per_key: HashMap<[u8; 8], usize>,
    /// When the last sweep ran.
    swept_at: u64,
}

impl Inner {
    /// Drops the expired entries, once a second at most.
    fn sweep(&mut self, now: u64) {
        if self.swept_at == now {
            return;
        }
        self.swept_at = now;
        let per_key = &mut self.per_key;
        self.seen.retain(|_, (exp, key)| {
            let live = *exp >= now;
            if !live && let Some(n) = per_key.get_mut(key) {
                *n = n.saturating_sub(1);
            }
            live
        });
        per_key.retain(|_, n| *n > 0);
    }

    fn count(&self, key: &[u8; 8]) -> usize {
        self.per_key.get(key).copied().unwrap_or(0)
    }
}

impl Replay {
    /// A store of at most `capacity` proofs, and of `per_key` proofs of any one key.
    pub fn new(capacity: usize, per_key: usize) -> Self {
        Self {
            capacity,
            per_key,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records the proof (`jkt`, `jti`) until `until`; refuses one seen before
    /// ([`ProofError::Replayed`]) or, with the store or the key's share full of live proofs,
    /// any new one ([`ProofError::Busy`]).
    pub fn first_use(&self, jkt: &str, jti: &str, until: u64, now: u64) -> Result<(), ProofError> {
        self.first_use_of(KeyId::of(jkt), jkt, jti, until, now)
    }

    /// [`Replay::first_use`] with the key's [`KeyId`] made beforehand (once per key).
    pub fn first_use_of(
        &self,
        key: KeyId,
        jkt: &str,
        jti: &str,
        until: u64,
        now: u64,
    ) -> Result<(), ProofError> {
        let digest = crate::secret::sha256(&[jkt.as_bytes(), &[0], jti.as_bytes()]);
        let mut entry = [0u8; 16];
        entry.copy_from_slice(&digest[..16]);
        let key = key.0;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(exp, _)) = inner.seen.get(&entry) {
            if exp >= now {
                return Err(ProofError::Replayed);
            }
            // An expired entry of this very proof: its `iat` is out of the window by now, so
            // `check` refused it before; forget the entry and count afresh.
            inner.seen.remove(&entry);
            if let Some(n) = inner.per_key.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
        if inner.seen.len() >= self.capacity || inner.count(&key) >= self.per_key {
            inner.sweep(now);
        }
        if inner.seen.len() >= self.capacity || inner.count(&key) >= self.per_key {
            return Err(ProofError::Busy);
        }
        inner.seen.insert(entry, (until, key));
        *inner.per_key.entry(key).or_insert(0) += 1;
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
