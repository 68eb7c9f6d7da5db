//! Token confinement: the inbound listener can hand the app an opaque handle instead of the
//! verified token (`inbound.confine_token: true`), so the app never holds a usable token. The
//! handle is `bh_` and a base64url HMAC-SHA-256 of the `Authorization` value under a key made
//! when the sidecar starts (memory only): random to anyone else, the same for the same token, so
//! the map grows with distinct tokens, not requests. The outbound listener of the same sidecar
//! swaps the handle back to the token (and exchanges as usual). A handle is worthless anywhere
//! else (it is no JWT, and no other sidecar knows it), after the token's `exp`, or once evicted.
//! The map is bounded; an evicted handle fails closed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use ring::hmac;

/// What every handle starts with.
pub const PREFIX: &str = "bh_";

/// Handles kept at most, by default.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// The handles of one sidecar.
pub struct Handles {
    key: hmac::Key,
    /// Handle → the `Authorization` value it stands for, and that token's `exp`.
    map: moka::sync::Cache<String, (HeaderValue, u64)>,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles")
            .field("entries", &self.map.entry_count())
            .finish()
    }
}

impl Handles {
    /// A store of at most `capacity` handles under a fresh key.
    pub fn new(capacity: u64) -> Self {
        let secret: [u8; 32] = crate::secret::random();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            map: moka::sync::Cache::builder().max_capacity(capacity).build(),
        }
    }

    /// The `Authorization` value the app gets for `authorization` (a verified token valid until
    /// `exp`): `Bearer bh_…`.
    pub fn issue(&self, authorization: &HeaderValue, exp: u64) -> Option<HeaderValue> {
        let tag = hmac::sign(&self.key, authorization.as_bytes());
        let handle = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        let mut value = HeaderValue::try_from(format!("Bearer {handle}")).ok()?;
        value.set_sensitive(true);
        self.map.insert(handle, (authorization.clone(), exp));
        Some(value)
    }

    /// The `Authorization` value `handle` stands for, if it is known and its token not expired.
    pub fn redeem(&self, handle: &str, now: u64) -> Option<HeaderValue> {
        let (value, exp) = self.map.get(handle)?;
        if exp <= now {
            self.map.invalidate(handle);
            return None;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_stands_for_its_token_until_exp_and_is_no_jwt() {
        let h = Handles::new(10);
        let auth = HeaderValue::from_static("DPoP a.b.c");
        let given = h.issue(&auth, 100).expect("handle");
        let handle = given
            .to_str()
            .expect("ascii")
            .strip_prefix("Bearer ")
            .expect("bearer");
        assert!(handle.starts_with(PREFIX) && !handle.contains('.'));
        assert_eq!(
            h.issue(&auth, 100),
            Some(given.clone()),
            "same token, same handle"
        );
        assert_eq!(h.redeem(handle, 99), Some(auth));
        assert_eq!(h.redeem(handle, 100), None, "dead at exp");
        assert_eq!(h.redeem(handle, 50), None, "and forgotten");
        // Another sidecar's store does not know it.
        let other = Handles::new(10);
        assert_eq!(other.redeem(handle, 50), None);
    }

    #[test]
    fn the_store_is_bounded() {
        let h = Handles::new(50);
        for i in 0..500 {
            let v = HeaderValue::try_from(format!("Bearer t{i}")).expect("value");
            h.issue(&v, 1_000).expect("handle");
        }
        h.map.run_pending_tasks();
        assert!(h.map.entry_count() <= 50, "{}", h.map.entry_count());
    }
}
