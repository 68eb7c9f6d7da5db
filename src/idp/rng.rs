//! The IdP's one source of random bytes: the operating system's CSPRNG. Authorization codes,
//! refresh tokens, session and CSRF cookies, `jti`s, `sid`s, grant ids, password salts and the
//! sealing key all come from [`fill`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) {
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, buf);
}

/// A URL-safe string of `n` random bytes (base64url, no padding).
pub(crate) fn token(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A random `u64`, for names that must not collide (temporary files).
pub(crate) fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}
