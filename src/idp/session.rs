//! The browser's login session at the IdP: found through an opaque cookie (`__Host-baton-idp`
//! over https: Secure, HttpOnly, SameSite=Lax, Path=/), kept in the [`store`](super::store)
//! under the SHA-256 of the cookie value, so a memory dump holds no usable cookie.
//!
//! A password sign-in always starts a new session (no session fixation); a later factor is added
//! to the session the cookie names. Ending a session revokes every token descending from it.

use super::authn::Session;
use super::config::Factor;
use super::state::Idp;
use super::store::StoreError;
use crate::http::cookie;
use crate::secret::Token;
use http::{HeaderMap, HeaderValue};
use std::collections::BTreeMap;

/// The cookie's name: the `__Host-` prefix needs Secure, so only an https issuer gets it.
pub fn cookie_name(issuer: &str) -> &'static str {
    if secure(issuer) {
        "__Host-baton-idp"
    } else {
        "baton-idp"
    }
}

fn secure(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

/// `Set-Cookie` for the session cookie: `value` for `max_age` seconds (0 clears it).
fn set_cookie(idp: &Idp, value: &str, max_age: u64) -> HeaderValue {
    let issuer = &idp.config.issuer;
    cookie::set(cookie_name(issuer), value, "/", max_age, secure(issuer))
}

/// The session the request's cookie names, if it exists and has not expired, with the cookie.
pub async fn current(
    idp: &Idp,
    headers: &HeaderMap,
    now: u64,
) -> Result<Option<(Token, Session)>, StoreError> {
    let Some(value) = cookie::read(headers, cookie_name(&idp.config.issuer)) else {
        return Ok(None);
    };
    let value = Token::new(value);
    let session = idp.store.session(&value.sha256()).await?;
    Ok(session.filter(|s| s.expires_at > now).map(|s| (value, s)))
}

/// Starts a new session for `user` who just proved `factor`; returns the cookie to set and the
/// session.
pub async fn start(
    idp: &Idp,
    user: &str,
    factor: Factor,
    now: u64,
) -> Result<(HeaderValue, Session), StoreError> {
    let id = Token::new(crate::secret::random_b64(32));
    let session = Session {
        user: user.to_owned(),
        sid: crate::secret::random_b64(16),
        factors: BTreeMap::from([(factor, now)]),
        expires_at: now + idp.config.lifetimes.session,
    };
    idp.store.put_session(id.sha256(), &session).await?;
    let cookie = set_cookie(idp, id.expose(), idp.config.lifetimes.session);
    Ok((cookie, session))
}

/// Records `factor` on the session `id`; returns the updated session.
pub async fn add(
    idp: &Idp,
    id: &Token,
    mut session: Session,
    factor: Factor,
    now: u64,
) -> Result<Session, StoreError> {
    session.factors.insert(factor, now);
    idp.store.put_session(id.sha256(), &session).await?;
    Ok(session)
}

/// Ends the session stored under `key` (RP-Initiated Logout 1.0 §2): drops the server-side
/// state and revokes its `sid`, and with it every token descending from the session: refresh
/// tokens, access tokens and every exchange of them. Returns the cookie that clears the
/// browser's.
pub async fn end(
    idp: &Idp,
    key: &[u8; 32],
    session: &Session,
    now: u64,
) -> Result<HeaderValue, StoreError> {
    idp.store.end_session(key, session, now).await?;
    Ok(set_cookie(idp, "", 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_prefix_follows_the_issuer_scheme() {
        assert_eq!(cookie_name("https://idp.example"), "__Host-baton-idp");
        assert_eq!(cookie_name("http://127.0.0.1:9000"), "baton-idp");
    }
}
