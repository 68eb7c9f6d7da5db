//! One-time codes (RFC 6238 TOTP: SHA-1, 6 digits, 30 s steps, ±1 step of clock skew) for the
//! `otp` factor: checking a code once per step, and the `otpauth://` provisioning URI that
//! `baton-idp totp USER` prints.

use crate::secret::Secret;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Seconds per code (RFC 6238 §4 default).
pub const STEP: u64 = 30;

/// Decodes a base32 secret; `None` when it is not base32 or shorter than 128 bits (RFC 4226 §4).
pub fn decode(base32: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(base32.trim().to_uppercase())
        .to_bytes()
        .ok()
        .filter(|b| b.len() >= 16)
}

fn totp(secret: &[u8], issuer: &str, user: &str) -> Option<TOTP> {
    // The otpauth label forbids ':' in the issuer; a URL issuer keeps its host part.
    let label = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "baton-idp".into());
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        secret.to_vec(),
        Some(label),
        user.to_owned(),
    )
    .ok()
}

/// The time step `code` is valid for at `now` (one step either side accepted), if any.
/// Callers remember used steps so a code works once.
pub fn check(secret: &Secret, code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = decode(secret.expose())?;
    let t = totp(&bytes, "", "user")?;
    [now.saturating_sub(STEP), now, now + STEP]
        .into_iter()
        .find(|&at| t.generate(at).as_bytes().ct_eq(code.as_bytes()).into())
        .map(|at| at / STEP)
}

/// The `otpauth://totp/...` URI an authenticator app scans (Key Uri Format).
pub fn provisioning_uri(secret: &Secret, issuer: &str, user: &str) -> Option<String> {
    let bytes = decode(secret.expose())?;
    Some(totp(&bytes, issuer, user)?.get_url())
}

/// The current code, for tests and the demo.
pub fn current(secret: &Secret, now: u64) -> Option<String> {
    let bytes = decode(secret.expose())?;
    Some(totp(&bytes, "", "user")?.generate(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B, T = 59, secret "12345678901234567890", last 6 digits.
        let s = Secret::new(String::from("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert_eq!(current(&s, 59).as_deref(), Some("287082"));
        assert_eq!(check(&s, "287082", 59), Some(1));
    }

    #[test]
    fn codes_are_checked_within_one_step_only() {
        let s = Secret::new(String::from(SECRET));
        let now = 1_000_000_000;
        let code = current(&s, now).expect("code");
        assert_eq!(check(&s, &code, now), Some(now / STEP));
        assert!(check(&s, &code, now + STEP).is_some(), "one step of skew");
        assert_eq!(check(&s, &code, now + 3 * STEP), None);
        assert_eq!(check(&s, "12345", now), None);
        assert_eq!(check(&s, "abcdef", now), None);
    }

    #[test]
    fn short_or_invalid_secrets_are_refused() {
        assert!(decode("JBSWY3DP").is_none(), "40 bits");
        assert!(decode("not base32!").is_none());
        assert!(decode(SECRET).is_some());
    }

    #[test]
    fn provisioning_uri_names_user_and_issuer_host() {
        let s = Secret::new(String::from(SECRET));
        let uri = provisioning_uri(&s, "http://127.0.0.1:9000", "alice").expect("uri");
        assert!(uri.starts_with("otpauth://totp/127.0.0.1:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={SECRET}")), "{uri}");
    }
}
