//! `Token` and `Secret` newtypes that never print themselves (logs and errors see a hash prefix),
//! and the process's one source of random bytes, one SHA-256 and one constant-time comparison.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

/// A bearer token, assertion or code. `Debug`/`Display` print `sha256:<8 hex>`, never the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Wraps a token string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw token, for the wire only (headers, forms, signature checks).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Full SHA-256 of the token, for cache keys and replay sets (`ring`'s assembly: this runs
    /// on every inbound request).
    pub fn sha256(&self) -> [u8; 32] {
        sha256(&[self.0.as_bytes()])
    }

    /// `sha256:` plus the first 8 hex digits: safe to log and correlate.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

/// A client secret, password or key material. Prints `[redacted]`; compares in constant time.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw secret, for comparison or the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison against a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `sha256:` plus the first 8 hex digits of the SHA-256 of `data`.
pub fn fingerprint(data: &[u8]) -> String {
    let digest = sha256(&[data]);
    let mut out = String::from("sha256:");
    for b in &digest[..4] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Compares two byte strings without an early exit on the first difference (`subtle`); only
/// the lengths may differ in time. The bytes are compared eight at a time, as `u64` words: a
/// byte at a time, `subtle` made the comparison of an inbound token with the connection's last
/// one 8 % of a request's instructions (`bench/RESULTS.md`, 2026-12-07 16:30 UTC).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_tail) = a.as_chunks::<8>();
    let (b_words, b_tail) = b.as_chunks::<8>();
    let same_words = a_words
        .iter()
        .zip(b_words)
        .fold(subtle::Choice::from(1), |same, (x, y)| {
            same & u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y))
        });
    (same_words & a_tail.ct_eq(b_tail)).into()
}

/// SHA-256 of the concatenation of `parts`: the crate's one implementation (`ring`'s assembly,
/// which also runs on every inbound request through [`Token::sha256`]).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The operating system's CSPRNG (`getrandom(2)` through `ring`): every code, token, cookie,
/// `jti`, salt and key the crate makes comes from [`fill`].
static RANDOM: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);

/// Fills `buf` with random bytes. The OS generator does not fail once the process runs; if it
/// ever did, carrying on with predictable bytes would be worse than stopping.
pub fn fill(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    RANDOM
        .fill(buf)
        .expect("the operating system's random generator failed");
}

/// `N` random bytes.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0; N];
    fill(&mut out);
    out
}

/// A URL-safe string of `n` random bytes (base64url, no padding).
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random `u64`, for names that must not collide (temporary files, demo ports).
pub fn random_u64() -> u64 {
    u64::from_le_bytes(random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality_at_every_length_and_position() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert!(constant_time_eq(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!constant_time_eq(&a, &b), "{len} {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!constant_time_eq(&a, &longer), "{len}");
        }
    }

    #[test]
    fn token_never_prints_itself() {
        let t = Token::new("eyJhbGciOiJFUzI1NiJ9.secret-payload.sig");
        assert!(!format!("{t}").contains("secret-payload"));
        assert!(!format!("{t:?}").contains("secret-payload"));
        assert!(format!("{t}").starts_with("sha256:"));
        assert_eq!(format!("{t}").len(), "sha256:".len() + 8);
    }

    #[test]
    fn secret_never_prints_itself() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s}{s:?}").contains("hunter2"));
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter22"));
    }
}
