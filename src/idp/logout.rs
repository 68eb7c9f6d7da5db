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
//! - Pending confirmations are kept server-side for [`LOGOUT_SECS`] within a budget of
//!   [`LOGOUTS_BUDGET`](super::store::LOGOUTS_BUDGET) bytes.

use super::authn::Session;
use super::form::read_form;
use super::pages::{self, Problem, error_page};
use super::state::Idp;
use super::store::{After, LOGOUT_SECS, PendingLogout};
use super::{browser, errors, session, verify};
use crate::http::{Body, BoxError, Form};
use crate::jwt::Claims;
use crate::page::strings;
use crate::secret::Token;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tracing::info;

/// Longest `state` accepted, in bytes: it is kept with a pending confirmation.
pub const MAX_STATE: usize = 1024;

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
        current => ask(idp, current.map(|(key, _)| key), checked).await,
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
                note: Some(s.not_registered),
            },
            None => After {
                redirect: None,
                note: Some(s.not_identified),
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

/// Shows the confirmation page, bound to this browser by a fresh cookie and to `session`.
async fn ask(idp: &Idp, session: Option<[u8; 32]>, checked: Checked) -> Response<Body> {
    let id = crate::secret::random_b64(24);
    let browser = Token::new(crate::secret::random_b64(24));
    let app = checked.app.as_deref();
    let mut rsp = pages::confirm_sign_out(&idp.config.branding, app, &id, browser.expose());
    rsp.headers_mut().append(
        header::SET_COOKIE,
        set_confirm_cookie(idp, Some(browser.expose())),
    );
    let pending = PendingLogout {
        browser: browser.sha256(),
        session,
        after: checked.after,
    };
    if idp.store.put_logout(id, pending).await.is_err() {
        return errors::unavailable();
    }
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
    let pending = match idp.store.take_logout(id).await {
        Ok(Some(p)) => p,
        Ok(None) => return error_page(theme, Problem::SignOutExpired),
        Err(_) => return errors::unavailable(),
    };
    let csrf = form.one("csrf").ok().flatten().unwrap_or("");
    let mut cookies = cookies(headers, confirm_cookie(&idp.config.issuer));
    let cookie = match (cookies.next(), cookies.next()) {
        (Some(c), None) => c,
        _ => "",
    };
    let bound = !cookie.is_empty()
        && bool::from(cookie.as_bytes().ct_eq(csrf.as_bytes()))
        && bool::from(Token::new(cookie).sha256().ct_eq(&pending.browser));
    if !bound {
        info!("sign-out confirmation not bound to this browser refused");
        return error_page(theme, Problem::SignOutFormInvalid);
    }
    if pending.session.is_some() && pending.session != current.as_ref().map(|(key, _)| *key) {
        return error_page(theme, Problem::SessionChanged);
    }
    let mut rsp = finish(idp, current, &pending.after, now).await;
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
        None => pages::signed_out(&idp.config.branding, after.note),
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
    use crate::idp::store::LOGOUTS_BUDGET;
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
    async fn a_flood_of_confirmation_pages_stays_within_the_budget() {
        let dir =
            std::env::temp_dir().join(format!("baton-logout-unit-{}", crate::secret::random_u64()));
        let idp = Idp::new(crate::idp::Config::demo("http://idp.test", dir)).expect("idp");
        let body = format!(
            "client_id=service-a&post_logout_redirect_uri={}&state={}",
            "http%3A%2F%2F127.0.0.1%3A8080%2Fsigned-out",
            "s".repeat(MAX_STATE)
        );
        let largest = PendingLogout {
            browser: [0; 32],
            session: None,
            after: After {
                redirect: Some((
                    "http://127.0.0.1:8080/signed-out".into(),
                    Some("s".repeat(MAX_STATE)),
                )),
                note: None,
            },
        };
        let n = 2 * LOGOUTS_BUDGET / u64::from(largest.weight(&crate::secret::random_b64(24)));
        for _ in 0..n {
            // A stranger's cookie-less POST: each one is asked to confirm, and kept.
            let req = Request::post("/end_session")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(Bytes::from(body.clone())))
                .expect("request");
            let rsp = end_session(&idp, req, 1_000).await;
            assert_eq!(rsp.status(), StatusCode::OK);
        }
        let (kept, bytes) = idp.store.memory().expect("memory store").logouts_held();
        assert!(bytes <= LOGOUTS_BUDGET);
        assert!(kept < n && kept > n / 4, "{kept} of {n} kept");
    }

    #[test]
    fn a_pending_confirmation_weighs_what_it_keeps() {
        let p = |state: usize| PendingLogout {
            browser: [0; 32],
            session: None,
            after: After {
                redirect: Some(("https://rp.example/out".into(), Some("s".repeat(state)))),
                note: None,
            },
        };
        let small = p(1).weight("id");
        let large = p(MAX_STATE).weight("id");
        assert_eq!(large - small, u32::try_from(MAX_STATE - 1).expect("small"));
        // The budget holds thousands of the largest, and no more.
        let most = LOGOUTS_BUDGET / u64::from(large);
        assert!((4_000..20_000).contains(&most), "{most}");
    }
}
