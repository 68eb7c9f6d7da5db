//! IdP login sessions: which user proved which factors when, kept server-side and found through
//! an opaque cookie (`__Host-baton-idp` over https: Secure, HttpOnly, SameSite=Lax, Path=/).
//!
//! The store is keyed by the SHA-256 of the cookie value, so a memory dump holds no usable cookie.
//! A password sign-in always starts a new session (no session fixation); a later factor is added
//! to the session the cookie names.

use super::config::Factor;
use super::login::Authentication;
use super::{Idp, random};
use crate::secret::Token;
use http::{HeaderMap, HeaderValue, header};
use std::collections::BTreeMap;

/// What a browser's session proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The signed-in user.
    pub user: String,
    /// Public session id (OIDC Front-Channel Logout §3 `sid`): put in ID tokens so an
    /// `id_token_hint` at end-session names this session, and in access tokens so that ending
    /// the session revokes them; unrelated to the cookie value.
    pub sid: String,
    /// When each factor was last proven (unix seconds).
    pub factors: BTreeMap<Factor, u64>,
    /// When the session ends (unix seconds).
    pub expires_at: u64,
}

impl Session {
    /// When the user last authenticated: the latest factor (OIDC Core §2 `auth_time`).
    pub fn auth_time(&self) -> u64 {
        self.factors.values().copied().max().unwrap_or(0)
    }

    /// Whether every factor in `needed` is proven.
    pub fn has(&self, needed: &[Factor]) -> bool {
        needed.iter().all(|f| self.factors.contains_key(f))
    }

    /// What the session proves for a token: the strongest configured `acr` it satisfies.
    pub fn authentication(&self, acr: &BTreeMap<String, Vec<Factor>>) -> Authentication {
        let level = acr
            .iter()
            .filter(|(_, f)| self.has(f))
            .max_by_key(|(_, f)| f.len())
            .map_or("pwd", |(name, _)| name.as_str());
        Authentication {
            user: self.user.clone(),
            sid: Some(self.sid.clone()),
            auth_time: self.auth_time(),
            acr: level.to_owned(),
            amr: self.factors.keys().map(|f| f.amr().to_owned()).collect(),
        }
    }
}

/// The cookie's name: the `__Host-` prefix needs Secure, so only an https issuer gets it.
pub fn cookie_name(issuer: &str) -> &'static str {
    if issuer.starts_with("https://") {
        "__Host-baton-idp"
    } else {
        "baton-idp"
    }
}

/// The values of the cookies named `name` in the request, in order.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The session the request's cookie names, if it exists and has not expired.
pub fn current(idp: &Idp, headers: &HeaderMap, now: u64) -> Option<(Token, Session)> {
    let name = cookie_name(&idp.config.issuer);
    let value = Token::new(cookies(headers, name).next()?.to_owned());
    let session = idp.state.sessions.get(&value.sha256())?;
    (session.expires_at > now).then_some((value, session))
}

/// Starts a new session for `user` who just proved `factor`; returns the cookie to set and the
/// session.
pub fn start(idp: &Idp, user: &str, factor: Factor, now: u64) -> (HeaderValue, Session) {
    let id = Token::new(random(32));
    let session = Session {
        user: user.to_owned(),
        sid: random(16),
        factors: BTreeMap::from([(factor, now)]),
        expires_at: now + idp.config.lifetimes.session,
    };
    idp.state.sessions.insert(id.sha256(), session.clone());
    (set_cookie(idp, &id), session)
}

/// Ends the session stored under `key` (RP-Initiated Logout 1.0 §2): drops the server-side
/// state and revokes its `sid`, and with it every token descending from the session: refresh
/// tokens, access tokens and every exchange of them. Returns the cookie that clears the
/// browser's.
pub fn end(idp: &Idp, key: &[u8; 32], session: &Session, now: u64) -> HeaderValue {
    idp.state.sessions.invalidate(key);
    idp.state.revocations.revoke(
        &session.user,
        super::revocation::Root::Session(&session.sid),
        session.auth_time(),
        now,
    );
    let secure = if idp.config.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        cookie_name(&idp.config.issuer)
    );
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("baton-idp=; Max-Age=0"))
}

/// Records `factor` on the session `id`; returns the updated session.
pub fn add(idp: &Idp, id: &Token, mut session: Session, factor: Factor, now: u64) -> Session {
    session.factors.insert(factor, now);
    idp.state.sessions.insert(id.sha256(), session.clone());
    session
}

fn set_cookie(idp: &Idp, id: &Token) -> HeaderValue {
    let secure = if idp.config.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie_name(&idp.config.issuer),
        id.expose(),
        idp.config.lifetimes.session,
    );
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("baton-idp=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> BTreeMap<String, Vec<Factor>> {
        BTreeMap::from([
            ("pwd".into(), vec![Factor::Pwd]),
            ("mfa".into(), vec![Factor::Pwd, Factor::Otp]),
        ])
    }

    #[test]
    fn authentication_reports_the_strongest_level_met() {
        let mut s = Session {
            user: "alice".into(),
            sid: "s1".into(),
            factors: BTreeMap::from([(Factor::Pwd, 100)]),
            expires_at: 1000,
        };
        let a = s.authentication(&levels());
        assert_eq!(
            (a.acr.as_str(), a.amr.clone(), a.auth_time),
            ("pwd", vec!["pwd".to_owned()], 100)
        );
        s.factors.insert(Factor::Otp, 160);
        let a = s.authentication(&levels());
        assert_eq!(a.acr, "mfa");
        assert_eq!(a.amr, ["pwd", "otp"]);
        assert_eq!(a.auth_time, 160);
    }

    #[test]
    fn cookie_prefix_follows_the_issuer_scheme() {
        assert_eq!(cookie_name("https://idp.example"), "__Host-baton-idp");
        assert_eq!(cookie_name("http://127.0.0.1:9000"), "baton-idp");
    }
}
