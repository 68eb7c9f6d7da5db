//! `GET|POST /end_session` (OpenID Connect RP-Initiated Logout 1.0): ends the browser's login
//! session at the IdP, revokes every token descending from it (refresh tokens, access tokens
//! and their exchanges), clears the cookie, and sends the browser back to a registered
//! `post_logout_redirect_uri` with `state`.
//!
//! The rules, from §2–§3 of the spec:
//! - `id_token_hint` must be an ID token we signed with our issuer; an expired one is accepted.
//!   An invalid hint is refused with an error page and nothing is ended.
//! - `client_id`, when sent with a hint, must be in the hint's `aud`. The client is `client_id`
//!   or the hint's `aud`; `post_logout_redirect_uri` must match one of its registered
//!   `post_logout_redirect_uris` exactly, otherwise the browser is never redirected: it gets a
//!   plain "signed out" page. `state` is at most [`MAX_STATE`] bytes.
//! - The logout happens at once only when the browser's own session cookie comes with a hint
//!   naming that session (its `sid`, else its `sub`). Anything else asks the user first (§2
//!   "the OP SHOULD ask the End-User"): a hint without the cookie (an RP's cross-site POST, or
//!   anyone else holding an ID token), a hint for another session, no hint at all. Only a
//!   cookie-less GET without a hint, which has nothing to end, gets the signed-out page.
//! - The confirmation is a POST, bound to the browser it was shown to: the page sets a
//!   SameSite=Strict confirmation cookie whose value the form carries too and whose hash the
//!   pending request keeps, and a page shown to a session must be confirmed by that session. A
//!   POST from another site (`Origin` not the issuer's, `Sec-Fetch-Site` `same-site` or
//!   `cross-site`) is refused ([`browser::same_origin`]). So a confirmation copied from another browser's page
//!   ends nothing.
//! - A pending confirmation is not kept on the server: it is sealed (see [`super::seal`]) into
//!   the page's `logout_request` field with the hash of the confirmation cookie, the session it
//!   was shown to and an expiry [`LOGOUT_SECS`] on, and opened again when the form comes back.
//!   An anonymous `/end_session` therefore costs the IdP no storage after its answer, and any
//!   replica that shares the sealing key takes the confirmation. It is not single-use: only the
//!   browser holding the cookie can send it (the answer clears that cookie), and sending it again
//!   ends what that browser asked to end, never a session it was not shown to.

use super::authn::Session;
use super::form::read_form;
use super::pages::{self, Problem, error_page};
use super::state::Idp;
use super::{browser, errors, session, verify};
use crate::http::cookie::Sealer;
use crate::http::{Body, BoxError, Form};
use crate::jwt::Claims;
use crate::page::strings;
use crate::secret::Token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tracing::info;

/// Longest `state` accepted, in bytes: it travels sealed with a pending confirmation.
pub const MAX_STATE: usize = 1024;
/// How long a sign-out confirmation page stays valid, in seconds.
pub const LOGOUT_SECS: u64 = 600;
/// Associated data of a sealed confirmation: it opens as nothing else.
const PURPOSE: &str = "baton-idp-logout";
/// Longest sealed confirmation: what the sealer opens at most.
const MAX_SEALED: usize = 4096;

/// Why a `post_logout_redirect_uri` that was sent is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Note {
    #[serde(rename = "r")]
    NotRegistered,
    #[serde(rename = "i")]
    NotIdentified,
}

impl Note {
    /// The sentence the signed-out page shows.
    fn text(self) -> &'static str {
        let s = strings();
        match self {
            Note::NotRegistered => s.not_registered,
            Note::NotIdentified => s.not_identified,
        }
    }
}

/// Where the browser goes once signed out: a validated redirect with `state`, or a page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct After {
    /// The registered `post_logout_redirect_uri` and the `state` to send it.
    redirect: Option<(String, Option<String>)>,
    note: Option<Note>,
}

/// A sign-out waiting for the user's confirmation, as sealed into the page's form. Hashes and
/// `state` are base64url, so the sealed size does not depend on how JSON escapes `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingLogout {
    /// SHA-256 of the confirmation cookie (and the form's `csrf`) the page was shown with.
    #[serde(rename = "b")]
    browser: String,
    /// SHA-256 of the store key of the session the page was shown to, when the cookie came.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    redirect: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    note: Option<Note>,
    /// Unix seconds after which the confirmation is refused.
    #[serde(rename = "e")]
    expires_at: u64,
}

/// base64url of the SHA-256 of `bytes`.
fn digest(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[bytes]))
}

impl PendingLogout {
    fn new(browser: &Token, session: Option<[u8; 32]>, after: After, now: u64) -> Self {
        let (redirect, state) = match after.redirect {
            Some((uri, state)) => (Some(uri), state.map(|s| URL_SAFE_NO_PAD.encode(s))),
            None => (None, None),
        };
        PendingLogout {
            browser: URL_SAFE_NO_PAD.encode(browser.sha256()),
            session: session.map(|key| digest(&key)),
            redirect,
            state,
            note: after.note,
            expires_at: now + LOGOUT_SECS,
        }
    }

    /// The sealed form; `None` when it would be longer than [`MAX_SEALED`] (a registered
    /// `post_logout_redirect_uri` of over a kilobyte).
    fn seal(&self, sealer: &Sealer) -> Option<String> {
        let plain = serde_json::to_vec(self).ok()?;
        let sealed = sealer.seal(PURPOSE, &plain);
        (sealed.len() <= MAX_SEALED).then_some(sealed)
    }

    /// The confirmation sealed in `value`, if it is genuine and has not expired at `now`.
    fn open(sealer: &Sealer, value: &str, now: u64) -> Option<Self> {
        if value.len() > MAX_SEALED {
            return None;
        }
        let plain = sealer.open(PURPOSE, value)?;
        let pending: PendingLogout = serde_json::from_slice(&plain).ok()?;
        (pending.expires_at > now).then_some(pending)
    }

    /// Where the browser goes once signed out; `None` if a field does not decode.
    fn after(&self) -> Option<After> {
        let redirect = match (&self.redirect, &self.state) {
            (Some(uri), state) => {
                let state = match state {
                    Some(s) => Some(String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?),
                    None => None,
                };
                Some((uri.clone(), state))
            }
            (None, Some(_)) => return None,
            (None, None) => None,
        };
        Some(After {
            redirect,
            note: self.note,
        })
    }
}

/// A checked end-session request.
struct Checked {
    hint: Option<Claims>,
    after: After,
    /// The display name of the client that asked, when it was identified.
    app: Option<String>,
}

/// The end-session endpoint.
pub async fn end_session<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let theme = &idp.config.branding;
    let Ok(current) = session::current(idp, req.headers(), now).await else {
        return errors::unavailable();
    };
    let current = current.map(|(id, s)| (id.sha256(), s));
    let post = req.method() == Method::POST;
    let (headers, form) = if post {
        match read_form(req).await {
            Ok((parts, f)) => (parts.headers, f),
            Err(_) => return error_page(theme, Problem::SignOutUnreadable),
        }
    } else {
        let form = Form::parse(req.uri().query().unwrap_or("").as_bytes());
        (req.into_parts().0.headers, form)
    };
    match form.one("logout_request") {
        Ok(None) => {}
        // The confirmation coming back: only ever a POST from our own page.
        Ok(Some(id)) if post => return confirm(idp, &headers, current, id, &form, now).await,
        _ => return error_page(theme, Problem::SignOutNeedsButton),
    }
    let checked = match check(idp, &form, now) {
        Ok(c) => c,
        Err(detail) => return error_page(theme, Problem::BadSignOutLink(detail)),
    };
    match current {
        Some((key, s)) if names(checked.hint.as_ref(), &s) => {
            finish(idp, Some((key, s)), &checked.after, now).await
        }
        // No cookie on a top-level GET and no hint: no session of this browser to end.
        None if !post && checked.hint.is_none() => finish(idp, None, &checked.after, now).await,
        current => ask(idp, current.map(|(key, _)| key), checked, now),
    }
}

/// Validates the parameters; `Err` is the detail of an error page (nothing is ended).
fn check(idp: &Idp, form: &Form, now: u64) -> Result<Checked, &'static str> {
    let s = strings();
    let one = |name: &str| form.one(name).map_err(|_| s.repeated_parameter);
    let state = one("state")?;
    if state.is_some_and(|st| st.len() > MAX_STATE) {
        return Err(s.state_too_long);
    }
    let hint = match one("id_token_hint")? {
        Some(t) => Some(verify::hint(idp, t, now).ok_or(s.hint_not_ours)?),
        None => None,
    };
    let hint_aud: Vec<&str> = match hint.as_ref().and_then(|h| h.get("aud")) {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let client = match one("client_id")? {
        Some(id) if hint.is_some() && !hint_aud.contains(&id) => {
            return Err(s.client_not_in_hint);
        }
        Some(id) => Some(idp.config.clients.get(id).ok_or(s.unknown_client)?),
        None => match hint_aud.as_slice() {
            [one] => idp.config.clients.get(*one),
            _ => None,
        },
    };
    let after = match one("post_logout_redirect_uri")? {
        None => After {
            redirect: None,
            note: None,
        },
        Some(uri) => match client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => After {
                redirect: Some((uri.to_owned(), state.map(str::to_owned))),
                note: None,
            },
            Some(_) => After {
                redirect: None,
                note: Some(Note::NotRegistered),
            },
            None => After {
                redirect: None,
                note: Some(Note::NotIdentified),
            },
        },
    };
    let app = client.map(|c| c.display_name().to_owned());
    Ok(Checked { hint, after, app })
}

/// Whether a hint names the browser's session: its `sid` when it has one, else its `sub`.
fn names(hint: Option<&Claims>, s: &Session) -> bool {
    let Some(h) = hint else { return false };
    match h.get("sid").and_then(Value::as_str) {
        Some(sid) => sid == s.sid,
        None => h.get("sub").and_then(Value::as_str) == Some(s.user.as_str()),
    }
}

/// The confirmation cookie's name (`__Host-` needs Secure, so only an https issuer gets it).
fn confirm_cookie(issuer: &str) -> &'static str {
    if issuer.starts_with("https://") {
        "__Host-baton-idp-logout"
    } else {
        "baton-idp-logout"
    }
}

/// `Set-Cookie` for the confirmation cookie: `value`, or cleared when `None`.
fn set_confirm_cookie(idp: &Idp, value: Option<&str>) -> HeaderValue {
    let secure = if idp.config.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, age) = value.map_or(("", 0), |v| (v, LOGOUT_SECS));
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}",
        confirm_cookie(&idp.config.issuer)
    );
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("baton-idp-logout=; Max-Age=0"))
}

/// Shows the confirmation page, bound to this browser by a fresh cookie and to `session`; the
/// pending request travels sealed in the page's form.
fn ask(idp: &Idp, session: Option<[u8; 32]>, checked: Checked, now: u64) -> Response<Body> {
    let browser = Token::new(crate::secret::random_b64(24));
    let pending = PendingLogout::new(&browser, session, checked.after, now);
    let Some(sealed) = pending.seal(&idp.sealer) else {
        return error_page(
            &idp.config.branding,
            Problem::BadSignOutLink(strings().state_too_long),
        );
    };
    let app = checked.app.as_deref();
    let mut rsp = pages::confirm_sign_out(&idp.config.branding, app, &sealed, browser.expose());
    rsp.headers_mut().append(
        header::SET_COOKIE,
        set_confirm_cookie(idp, Some(browser.expose())),
    );
    rsp
}

/// The values of the cookies named `name` in the request, in order.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The confirmation form coming back: from our origin, with the cookie the page set and, when
/// the page was shown to a session, that session.
async fn confirm(
    idp: &Idp,
    headers: &HeaderMap,
    current: Option<([u8; 32], Session)>,
    id: &str,
    form: &Form,
    now: u64,
) -> Response<Body> {
    let theme = &idp.config.branding;
    if !browser::same_origin(headers, &idp.config.issuer) {
        info!("sign-out confirmation from another site refused");
        return error_page(theme, Problem::SignOutOtherSite);
    }
    let Some((pending, after)) =
        PendingLogout::open(&idp.sealer, id, now).and_then(|p| p.after().map(|a| (p, a)))
    else {
        return error_page(theme, Problem::SignOutExpired);
    };
    let csrf = form.one("csrf").ok().flatten().unwrap_or("");
    let mut cookies = cookies(headers, confirm_cookie(&idp.config.issuer));
    let cookie = match (cookies.next(), cookies.next()) {
        (Some(c), None) => c,
        _ => "",
    };
    let bound = !cookie.is_empty()
        && bool::from(cookie.as_bytes().ct_eq(csrf.as_bytes()))
        && bool::from(
            URL_SAFE_NO_PAD
                .encode(Token::new(cookie).sha256())
                .as_bytes()
                .ct_eq(pending.browser.as_bytes()),
        );
    if !bound {
        info!("sign-out confirmation not bound to this browser refused");
        return error_page(theme, Problem::SignOutFormInvalid);
    }
    if pending.session.is_some() && pending.session != current.as_ref().map(|(key, _)| digest(key))
    {
        return error_page(theme, Problem::SessionChanged);
    }
    let mut rsp = finish(idp, current, &after, now).await;
    rsp.headers_mut()
        .append(header::SET_COOKIE, set_confirm_cookie(idp, None));
    rsp
}

/// Ends the session (if any) and sends the browser on.
async fn finish(
    idp: &Idp,
    target: Option<([u8; 32], Session)>,
    after: &After,
    now: u64,
) -> Response<Body> {
    let mut cookie = None;
    if let Some((key, s)) = target {
        let Ok(c) = session::end(idp, &key, &s, now).await else {
            return errors::unavailable();
        };
        info!(sid = %s.sid, "signed out");
        cookie = Some(c);
    }
    let mut rsp = match &after.redirect {
        Some((uri, state)) => redirect(idp, uri, state.as_deref()),
        None => pages::signed_out(&idp.config.branding, after.note.map(Note::text)),
    };
    if let Some(c) = cookie {
        rsp.headers_mut().append(header::SET_COOKIE, c);
    }
    rsp
}

/// 303 to a registered post-logout URI with `state` (RP-Initiated Logout 1.0 §3).
fn redirect(idp: &Idp, uri: &str, state: Option<&str>) -> Response<Body> {
    let pairs: Vec<(&str, &str)> = state.map(|s| ("state", s)).into_iter().collect();
    pages::redirect(uri, &pairs)
        .unwrap_or_else(|| error_page(&idp.config.branding, Problem::BadReturnAddress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn hint(v: serde_json::Value) -> Claims {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_hint_names_the_session_by_sid_else_by_sub() {
        let s = Session {
            user: "alice".into(),
            sid: "sid-1".into(),
            factors: BTreeMap::new(),
            expires_at: 10,
        };
        assert!(names(
            Some(&hint(json!({"sub": "alice", "sid": "sid-1"}))),
            &s
        ));
        assert!(
            !names(Some(&hint(json!({"sub": "alice", "sid": "sid-0"}))), &s),
            "an earlier session of the same user"
        );
        assert!(names(Some(&hint(json!({"sub": "alice"}))), &s));
        assert!(!names(Some(&hint(json!({"sub": "bob"}))), &s));
        assert!(!names(None, &s));
    }

    #[tokio::test]
    async fn a_flood_of_confirmation_pages_stores_nothing() {
        let dir =
            std::env::temp_dir().join(format!("baton-logout-unit-{}", crate::secret::random_u64()));
        let idp = Idp::new(crate::idp::Config::demo("http://idp.test", dir)).expect("idp");
        let body = format!(
            "client_id=service-a&post_logout_redirect_uri={}&state={}",
            "http%3A%2F%2F127.0.0.1%3A8080%2Fsigned-out",
            "s".repeat(MAX_STATE)
        );
        let memory = idp.store.memory().expect("memory store");
        let before = memory.records();
        for _ in 0..2_000 {
            // A stranger's cookie-less POST: each one is asked to confirm.
            let req = Request::post("/end_session")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(Bytes::from(body.clone())))
                .expect("request");
            let rsp = end_session(&idp, req, 1_000).await;
            assert_eq!(rsp.status(), StatusCode::OK);
        }
        assert_eq!(memory.records(), before);
    }

    fn pending(state: &str) -> PendingLogout {
        let after = After {
            redirect: Some(("https://rp.example/out".into(), Some(state.into()))),
            note: None,
        };
        PendingLogout::new(&Token::new("cookie"), Some([7; 32]), after, 1_000)
    }

    #[test]
    fn a_sealed_confirmation_opens_only_unchanged_unexpired_and_for_its_purpose() {
        let s = Sealer::new(None);
        let p = pending("st");
        let sealed = p.seal(&s).expect("small");
        let expires = 1_000 + LOGOUT_SECS;
        let opened = PendingLogout::open(&s, &sealed, expires - 1).expect("opens");
        assert_eq!(opened, p);
        assert_eq!(
            opened.after().and_then(|a| a.redirect),
            Some(("https://rp.example/out".into(), Some("st".into())))
        );
        assert_eq!(PendingLogout::open(&s, &sealed, expires), None, "expired");
        assert_eq!(PendingLogout::open(&Sealer::new(None), &sealed, 999), None);
        assert_eq!(s.open("baton-idp-pending", &sealed), None);
        let other = s.seal("baton-idp-pending", &serde_json::to_vec(&p).expect("json"));
        assert_eq!(
            PendingLogout::open(&s, &other, 999),
            None,
            "another purpose"
        );
        let mut flipped = sealed.into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(PendingLogout::open(&s, &flipped, 999), None);
    }

    #[test]
    fn the_longest_state_fits_however_json_would_escape_it() {
        let s = Sealer::new(None);
        for c in ['s', '\u{1}', '"', '\u{10ffff}'] {
            let state: String = std::iter::repeat_n(c, MAX_STATE / c.len_utf8()).collect();
            let p = pending(&state);
            let sealed = p.seal(&s).expect("fits");
            let opened = PendingLogout::open(&s, &sealed, 1_001).expect("opens");
            assert_eq!(
                opened.after().and_then(|a| a.redirect).and_then(|r| r.1),
                Some(state)
            );
        }
    }
}
