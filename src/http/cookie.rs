//! Encrypted, authenticated cookies for the edge login (ChaCha20-Poly1305, RFC 8439) and the
//! small parts of RFC 6265 the sidecar needs: reading one cookie, writing `Set-Cookie`.
//!
//! A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)` with a fresh random 96-bit nonce; the
//! cookie's name is the associated data, so a value sealed for one cookie never opens as another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// What every cookie of the sidecar's is named with; none of them is forwarded to the app.
pub const PREFIX: &str = "baton-";
/// The browser session cookie.
pub const SESSION: &str = "baton-session";
/// The pre-login cookies (state, PKCE verifier, nonce, return path) are named this plus a short
/// hash of their `state`, one per sign-in in progress, so two tabs signing in at once both
/// complete. Their sealed values all use this name as associated data.
pub const LOGIN: &str = "baton-login";
/// Associated data of the logout form's CSRF token (the sealed session id).
pub const LOGOUT: &str = "baton-logout";
/// Largest cookie value read; anything longer is ignored before decoding.
const MAX_VALUE: usize = 4096;

/// Seals and opens cookie values with one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer with `key` (32 bytes), or a fresh random key: sessions then end at restart.
    pub fn new(key: Option<[u8; 32]>) -> Sealer {
        let bytes = key.unwrap_or_else(crate::secret::random);
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32 bytes is the key size");
        Sealer {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Encrypts `plain` for the cookie `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = crate::secret::random();
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .expect("a cookie is far below the AEAD length limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a value sealed for `name`; `None` when it was tampered with, sealed under another
    /// key or for another cookie, or is not a sealed value at all.
    pub fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4), first wins.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Every cookie whose name starts with `prefix`, as (name, value), first `max` only.
pub fn with_prefix<'a>(
    headers: &'a HeaderMap,
    prefix: &str,
    max: usize,
) -> Vec<(&'a str, &'a str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.starts_with(prefix))
        .take(max)
        .collect()
}

/// Removes every cookie whose name starts with `prefix` from the request's `Cookie` headers, so
/// the sidecar's own sealed cookies never reach the app; the others are kept, in order, in one
/// `Cookie` header (RFC 6265 §5.4). Works on bytes: a header that is not UTF-8 is filtered too.
pub fn strip(headers: &mut HeaderMap, prefix: &str) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<Vec<u8>> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(prefix.as_bytes()))
        .map(<[u8]>::to_vec)
        .collect();
    headers.remove(header::COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, `Secure` when `secure`; `max_age` 0 clears it.
pub fn set(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("baton-invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_only_the_sidecars_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("app=1; baton-session=sealed; theme=dark"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("baton-login-ab=x"));
        h.append(header::COOKIE, HeaderValue::from_static("lang=en"));
        strip(&mut h, "baton-");
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, vec!["app=1; theme=dark; lang=en"]);

        let mut only_ours = HeaderMap::new();
        only_ours.insert(header::COOKIE, HeaderValue::from_static("baton-session=s"));
        strip(&mut only_ours, "baton-");
        assert!(!only_ours.contains_key(header::COOKIE));
    }

    #[test]
    fn cookies_are_found_by_prefix_and_bounded() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("baton-login-aa=1; other=2; baton-login-bb=3"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("baton-login-cc=4"));
        assert_eq!(
            with_prefix(&h, "baton-login-", 10),
            [
                ("baton-login-aa", "1"),
                ("baton-login-bb", "3"),
                ("baton-login-cc", "4")
            ]
        );
        assert_eq!(with_prefix(&h, "baton-login-", 2).len(), 2);
        assert!(with_prefix(&h, "nothing", 10).is_empty());
    }

    #[test]
    fn sealed_values_open_only_for_their_cookie_and_key() {
        let s = Sealer::new(Some([7; 32]));
        let v = s.seal(SESSION, b"session id");
        assert_eq!(s.open(SESSION, &v).as_deref(), Some(&b"session id"[..]));
        // Another cookie name (associated data), another key, or the same key afresh all refuse.
        assert_eq!(s.open(LOGIN, &v), None);
        assert_eq!(Sealer::new(None).open(SESSION, &v), None);
        assert_eq!(
            Sealer::new(Some([7; 32])).open(SESSION, &v).as_deref(),
            Some(&b"session id"[..])
        );
        // Two seals of the same value differ (fresh nonce).
        assert_ne!(s.seal(SESSION, b"x"), s.seal(SESSION, b"x"));
    }

    #[test]
    fn any_flipped_bit_or_truncation_is_refused() {
        let s = Sealer::new(Some([1; 32]));
        let v = s.seal(SESSION, b"abc");
        let raw = URL_SAFE_NO_PAD.decode(&v).expect("b64");
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                s.open(SESSION, &URL_SAFE_NO_PAD.encode(&bad)),
                None,
                "byte {i}"
            );
        }
        assert_eq!(
            s.open(SESSION, &URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1])),
            None
        );
        assert_eq!(s.open(SESSION, ""), None);
        assert_eq!(s.open(SESSION, "not base64 !"), None);
        assert_eq!(s.open(SESSION, &"A".repeat(MAX_VALUE + 1)), None);
    }

    #[test]
    fn cookies_are_read_by_exact_name_and_written_with_flags() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; baton-session-x=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("baton-session=3"));
        assert_eq!(read(&h, SESSION), Some("3"));
        assert_eq!(read(&h, LOGIN), None);
        let c = set(SESSION, "v", "/", 60, true);
        assert_eq!(
            c.to_str().expect("ascii"),
            "baton-session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(
            !set(LOGIN, "", "/_baton/", 0, false)
                .to_str()
                .expect("ascii")
                .contains("Secure")
        );
    }
}
