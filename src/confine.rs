//! Token confinement: the inbound listener can hand the app an opaque handle instead of the
//! verified token (`inbound.confine_token: true`), so the app never holds a usable token. The
//! handle is `bh_` and a base64url HMAC-SHA-256 of the `Authorization` value, its scheme and
//! spacing made canonical, under a key made when the sidecar starts (memory only): random to
//! anyone else, the same for the same token however it was spelt, so the map grows with distinct
//! tokens, not requests or spellings. The outbound listener of the same sidecar
//! swaps the handle back to the token (and exchanges as usual). A handle is worthless anywhere
//! else (it is no JWT, and no other sidecar knows it), after the token's `exp`, or once evicted.
//! The map is bounded in entries, each holds its own copy of the value (never the request's
//! buffer), and an entry leaves at its token's `exp`; an evicted handle fails closed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use ring::hmac;
use std::time::{Duration, Instant};

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
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build(),
        }
    }

    /// The `Authorization` value the app gets for `authorization` (a verified token valid until
    /// `exp`, `Bearer` or `DPoP` in any case, spaces around the token): `Bearer bh_…`.
    pub fn issue(&self, authorization: &HeaderValue, exp: u64) -> Option<HeaderValue> {
        let value = canonical(authorization)?;
        let tag = hmac::sign(&self.key, value.as_bytes());
        let handle = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        let mut given = HeaderValue::try_from(format!("Bearer {handle}")).ok()?;
        given.set_sensitive(true);
        self.map.insert(handle, (value, exp));
        Some(given)
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

/// `authorization` as `Bearer <token>` or `DPoP <token>`: the scheme in its usual case, one
/// space, the token trimmed, in bytes of its own. `None` for any other scheme.
fn canonical(authorization: &HeaderValue) -> Option<HeaderValue> {
    let v = authorization.as_bytes();
    let space = v.iter().position(|&b| b == b' ')?;
    let scheme = match &v[..space] {
        s if s.eq_ignore_ascii_case(b"bearer") => "Bearer",
        s if s.eq_ignore_ascii_case(b"dpop") => "DPoP",
        _ => return None,
    };
    let token = v[space + 1..].trim_ascii();
    let mut owned = Vec::with_capacity(scheme.len() + 1 + token.len());
    owned.extend_from_slice(scheme.as_bytes());
    owned.push(b' ');
    owned.extend_from_slice(token);
    let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(owned)).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// An entry leaves the map when its token expires.
struct UntilExp;

impl moka::Expiry<String, (HeaderValue, u64)> for UntilExp {
    fn expire_after_create(
        &self,
        _: &String,
        v: &(HeaderValue, u64),
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            v.1.saturating_sub(crate::jwt::unix_now()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_stands_for_its_token_until_exp_and_is_no_jwt() {
        let h = Handles::new(10);
        let auth = HeaderValue::from_static("DPoP a.b.c");
        let exp = crate::jwt::unix_now() + 100;
        let given = h.issue(&auth, exp).expect("handle");
        let handle = given
            .to_str()
            .expect("ascii")
            .strip_prefix("Bearer ")
            .expect("bearer");
        assert!(handle.starts_with(PREFIX) && !handle.contains('.'));
        assert_eq!(
            h.issue(&auth, exp),
            Some(given.clone()),
            "same token, same handle"
        );
        assert_eq!(h.redeem(handle, exp - 1), Some(auth));
        assert_eq!(h.redeem(handle, exp), None, "dead at exp");
        assert_eq!(h.redeem(handle, exp - 50), None, "and forgotten");
        // Another sidecar's store does not know it.
        let other = Handles::new(10);
        assert_eq!(other.redeem(handle, exp - 50), None);
    }

    #[test]
    fn every_spelling_of_a_token_is_one_handle_for_one_canonical_value() {
        let h = Handles::new(10);
        let canonical = HeaderValue::from_static("Bearer a.b.c");
        let first = h.issue(&canonical, u64::MAX / 2).expect("handle");
        for spelling in [
            "bearer a.b.c",
            "BEARER   a.b.c",
            "bEaReR a.b.c  ",
            "Bearer \ta.b.c",
        ] {
            let v = HeaderValue::from_str(spelling).expect("value");
            assert_eq!(
                h.issue(&v, u64::MAX / 2),
                Some(first.clone()),
                "{spelling:?}"
            );
        }
        let handle = first.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        assert_eq!(h.redeem(handle, 1), Some(canonical));
        h.map.run_pending_tasks();
        assert_eq!(h.map.entry_count(), 1);
        let dpop = h
            .issue(&HeaderValue::from_static("dpop  x.y.z"), u64::MAX / 2)
            .unwrap();
        let handle = dpop.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        assert_eq!(
            h.redeem(handle, 1),
            Some(HeaderValue::from_static("DPoP x.y.z"))
        );
        assert_eq!(h.issue(&HeaderValue::from_static("Basic x"), 5), None);
    }

    #[test]
    fn an_entry_leaves_at_its_exp() {
        use moka::Expiry;
        let now = crate::jwt::unix_now();
        let entry = |exp| (HeaderValue::from_static("Bearer t"), exp);
        let until = |exp| UntilExp.expire_after_create(&String::new(), &entry(exp), Instant::now());
        let left = until(now + 300).expect("a lifetime");
        assert!((299..=300).contains(&left.as_secs()), "{left:?}");
        assert_eq!(until(now.saturating_sub(5)), Some(Duration::ZERO));
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
