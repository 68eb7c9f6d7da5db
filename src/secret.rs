//! `Token` and `Secret` newtypes that never print themselves: logs and errors see a hash prefix.

use sha2::{Digest, Sha256};
use std::fmt;

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
        let mut out = [0; 32];
        out.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes()).as_ref(),
        );
        out
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

/// A client secret, password or key material. Prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

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
    let digest = Sha256::digest(data);
    let mut out = String::from("sha256:");
    for b in &digest[..4] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
