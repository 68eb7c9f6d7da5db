//! `GET|POST /end_session` (OpenID Connect RP-Initiated Logout 1.0): ends the browser's login
//! session at the IdP, revokes the refresh tokens issued through it, clears the cookie, and
//! sends the browser back to a registered `post_logout_redirect_uri` with `state`.
//!
//! The rules, from §2–§3 of the spec:
//! - `id_token_hint` must be an ID token we signed with our issuer; an expired one is accepted.
//!   An invalid hint is refused with an error page and nothing is ended.
//! - `client_id`, when sent with a hint, must be in the hint's `aud`. The client is `client_id`
//!   or the hint's `aud`; `post_logout_redirect_uri` must match one of its registered
//!   `post_logout_redirect_uris` exactly, otherwise the browser is never redirected: it gets a
//!   plain "signed out" page.
//! - Confirmation (§2 "the OP SHOULD ask the End-User"): when the request does not show it is
//!   about this browser's session (no hint, or a hint whose `sid`/`sub` is not the session's),
//!   a page asks the user to confirm with a CSRF-protected POST. Otherwise the logout happens
//!   at once.
//! - Without the browser's cookie (an RP's cross-site POST does not carry a SameSite=Lax
//!   cookie), a valid hint's `sid` names the session to end, server-side.

use super::authorize::{error_page, verify_hint};
use super::login::{escape, html_page};
use super::session::{self, Session};
use super::token::read_form;
use super::{Idp, random};
use crate::http::{Body, BoxError, Form};
use crate::jwt::Claims;
use crate::secret::Secret;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde_json::Value;
use std::sync::Arc;
use tracing::info;

/// Where the browser goes once signed out: a validated redirect with `state`, or a page.
#[derive(Debug, Clone)]
pub struct After {
    redirect: Option<(String, Option<String>)>,
    /// Why a `post_logout_redirect_uri` that was sent is not used.
    note: Option<&'static str>,
}

/// A logout waiting for the user's confirmation.
#[derive(Debug)]
pub struct PendingLogout {
    csrf: Secret,
    after: After,
}

/// A checked end-session request.
struct Checked {
    hint: Option<Claims>,
    after: After,
}

/// The end-session endpoint.
pub async fn end_session<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let current = session::current(idp, req.headers(), now).map(|(id, s)| (id.sha256(), s));
    let form = if req.method() == Method::POST {
        match read_form(req).await {
            Ok((_, f)) => f,
            Err(_) => return error_page("The sign-out request could not be read."),
        }
    } else {
        Form::parse(req.uri().query().unwrap_or("").as_bytes())
    };
    // The confirmation form coming back.
    if let Ok(Some(id)) = form.one("logout_request") {
        let Some(pending) = idp.state.logouts.remove(id) else {
            return error_page(
                "This sign-out request expired. Sign out again from the application.",
            );
        };
        let csrf = form.one("csrf").ok().flatten().unwrap_or("");
        if !pending.csrf.matches(csrf) {
            return error_page(
                "The sign-out form was not valid. Sign out again from the application.",
            );
        }
        return finish(idp, current, &pending.after);
    }
    let checked = match check(idp, &form, now) {
        Ok(c) => c,
        Err(message) => return error_page(message),
    };
    let target = match current {
        Some((_, ref s)) if !names(checked.hint.as_ref(), s) => {
            let id = random(24);
            let csrf = Secret::new(random(24));
            let rsp = confirm_page(&id, csrf.expose());
            idp.state.logouts.insert(
                id,
                Arc::new(PendingLogout {
                    csrf,
                    after: checked.after,
                }),
            );
            return rsp;
        }
        Some(named) => Some(named),
        // No cookie (e.g. the RP's cross-site POST): the session the hint's `sid` names.
        None => checked
            .hint
            .as_ref()
            .and_then(|h| h.get("sid")?.as_str())
            .and_then(|sid| session::by_sid(idp, sid, now))
            .filter(|(_, s)| names(checked.hint.as_ref(), s)),
    };
    finish(idp, target, &checked.after)
}

/// Validates the parameters; `Err` is the message of an error page (nothing is ended).
fn check(idp: &Idp, form: &Form, now: u64) -> Result<Checked, &'static str> {
    let one = |name: &str| form.one(name).map_err(|_| "A parameter is repeated.");
    let hint = match one("id_token_hint")? {
        Some(t) => Some(
            verify_hint(idp, t, now).ok_or("The id_token_hint is not an ID token we issued.")?,
        ),
        None => None,
    };
    let hint_aud: Vec<&str> = match hint.as_ref().and_then(|h| h.get("aud")) {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let client = match one("client_id")? {
        Some(id) if hint.is_some() && !hint_aud.contains(&id) => {
            return Err("The client_id does not match the id_token_hint.");
        }
        Some(id) => Some(idp.config.clients.get(id).ok_or("Unknown client.")?),
        None => match hint_aud.as_slice() {
            [one] => idp.config.clients.get(*one),
            _ => None,
        },
    };
    let state = one("state")?.map(str::to_owned);
    let after = match one("post_logout_redirect_uri")? {
        None => After {
            redirect: None,
            note: None,
        },
        Some(uri) => match client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => After {
                redirect: Some((uri.to_owned(), state)),
                note: None,
            },
            Some(_) => After {
                redirect: None,
                note: Some("The application's return address is not registered, so you stay here."),
            },
            None => After {
                redirect: None,
                note: Some("The application was not identified, so you stay here."),
            },
        },
    };
    Ok(Checked { hint, after })
}

/// Whether a hint names the browser's session: its `sid` when it has one, else its `sub`.
fn names(hint: Option<&Claims>, s: &Session) -> bool {
    let Some(h) = hint else { return false };
    match h.get("sid").and_then(Value::as_str) {
        Some(sid) => sid == s.sid,
        None => h.get("sub").and_then(Value::as_str) == Some(s.user.as_str()),
    }
}

/// Ends the session (if any) and sends the browser on.
fn finish(idp: &Idp, target: Option<([u8; 32], Session)>, after: &After) -> Response<Body> {
    let cookie = target.map(|(key, s)| {
        info!(sid = %s.sid, "signed out");
        session::end(idp, &key, &s)
    });
    let mut rsp = match &after.redirect {
        Some((uri, state)) => redirect(uri, state.as_deref()),
        None => {
            let note = after
                .note
                .map(|n| format!("<p>{}</p>", escape(n)))
                .unwrap_or_default();
            html_page(
                StatusCode::OK,
                "Signed out",
                &format!("<p role=\"status\">You are signed out.</p>{note}"),
            )
        }
    };
    if let Some(c) = cookie {
        rsp.headers_mut().insert(header::SET_COOKIE, c);
    }
    rsp
}

/// 303 to a registered post-logout URI with `state` (RP-Initiated Logout 1.0 §3).
fn redirect(uri: &str, state: Option<&str>) -> Response<Body> {
    let Ok(mut url) = url::Url::parse(uri) else {
        return error_page("The post_logout_redirect_uri is not a valid URL.");
    };
    if let Some(s) = state {
        url.query_pairs_mut().append_pair("state", s);
    }
    crate::http::redirect(StatusCode::SEE_OTHER, url.as_str())
}

fn confirm_page(id: &str, csrf: &str) -> Response<Body> {
    let body = format!(
        r#"<p>Do you want to sign out of the identity provider? Applications you signed in to through it will ask you to sign in again.</p>
<form method="post" action="/end_session">
<input type="hidden" name="logout_request" value="{id}">
<input type="hidden" name="csrf" value="{csrf}">
<p><button type="submit">Sign out</button></p>
</form>"#,
        id = escape(id),
        csrf = escape(csrf),
    );
    html_page(StatusCode::OK, "Sign out", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
