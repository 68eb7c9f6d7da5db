//! The login and one-time-code forms: `POST /login` checks the password against the user's argon2
//! hash and starts a login session; `POST /otp` checks an RFC 6238 code (once per step) and adds
//! the `otp` factor to it. When the session proves what the request needs, a single-use code
//! bound to the pending authorization request goes back to the client (RFC 6749 §4.1.2).
//!
//! [`Authentication`] records what the user proved (`acr`, `amr`, `auth_time`).

use super::authorize::{Pending, redirect};
use super::config::Factor;
use super::token::{CodeGrant, read_form};
use super::{Idp, random, session, totp};
use crate::http::{Body, BoxError, full};
use crate::secret::Token;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tracing::info;

/// Failed password attempts allowed per authorization request.
const MAX_ATTEMPTS: u32 = 5;

/// Argon2 hash of a throw-away password, checked when the username is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$VIDVIBp0SK7k9I9lgl9L2A$rDbqQgxRRtP79qGt2777sI4/Pq81SFSd/Lx85b8VOtE";

/// What a user proved, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Username (`sub`).
    pub user: String,
    /// The login session's public id, written as `sid` in ID tokens.
    pub sid: Option<String>,
    /// When the user last authenticated (OIDC Core §2 `auth_time`).
    pub auth_time: u64,
    /// Authentication context class (`pwd` for a password).
    pub acr: String,
    /// Methods used (RFC 8176), e.g. `["pwd"]`.
    pub amr: Vec<String>,
}

impl Authentication {
    /// Writes `acr`, `amr`, `auth_time` into token claims (RFC 9068 §2.2.1, RFC 9470 §6.1).
    pub fn stamp(&self, claims: &mut crate::jwt::Claims) {
        claims.insert("acr".into(), json!(self.acr));
        claims.insert("amr".into(), json!(self.amr));
        claims.insert("auth_time".into(), json!(self.auth_time));
    }
}

/// Checks `password` against an argon2 PHC string.
pub fn password_ok(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Hashes a password for `users[].password_hash` (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Counts a failed password or code; after `MAX_ATTEMPTS` the pending request is dropped and the
/// client gets `access_denied`.
fn give_up_after_too_many(
    idp: &Idp,
    id: &str,
    pending: &super::authorize::Pending,
) -> Option<Response<Body>> {
    if pending.attempts.fetch_add(1, Ordering::Relaxed) + 1 < MAX_ATTEMPTS {
        return None;
    }
    idp.state.pending.invalidate(id);
    Some(super::authorize::redirect_error(
        idp,
        &pending.redirect_uri,
        pending.state.as_deref(),
        "access_denied",
        "too many failed sign-in attempts",
    ))
}

/// `POST /login`.
pub async fn login<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = match read_form(req).await {
        Ok((_, body)) => body,
        Err(_) => return super::authorize::error_page("The sign-in form could not be read."),
    };
    let field = |n: &str| body.one(n).ok().flatten().unwrap_or("");
    let id = field("request");
    let Some(pending) = idp.state.pending.get(id) else {
        return super::authorize::error_page(
            "This sign-in request expired. Start again from the application.",
        );
    };
    if !pending.csrf.matches(field("csrf")) {
        return super::authorize::error_page(
            "The sign-in form was not valid. Start again from the application.",
        );
    }
    let (username, password) = (field("username").to_owned(), field("password").to_owned());
    // An unknown user still costs one argon2 check, so timing does not reveal who exists.
    let user = idp.config.users.get(&username);
    let known = user.is_some();
    let phc = user.map_or(DUMMY_HASH.to_owned(), |u| {
        u.password_hash.expose().to_owned()
    });
    // argon2 is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || password_ok(&phc, &password) && known)
        .await
        .unwrap_or(false);
    if !ok {
        idp.metrics.login("invalid_credentials");
        if let Some(denied) = give_up_after_too_many(idp, id, &pending) {
            return denied;
        }
        return self::form(
            id,
            pending.csrf.expose(),
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    idp.metrics.login("ok");
    info!(client_id = %pending.client, "user signed in");
    let (cookie, started) = session::start(idp, &username, Factor::Pwd, now);
    if !pending.needed.contains(&Factor::Otp) {
        idp.state.pending.invalidate(id);
        let auth = started.authentication(&idp.config.acr);
        return code_redirect(idp, &pending, auth, now, Some(cookie));
    }
    if user.is_none_or(|u| u.totp_secret.is_none()) {
        idp.state.pending.invalidate(id);
        let mut rsp = super::authorize::redirect_error(
            idp,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "unmet_authentication_requirements",
            "the user has no one-time-code app enrolled",
        );
        rsp.headers_mut().insert(header::SET_COOKIE, cookie);
        return rsp;
    }
    pending.set_user(&username);
    let mut rsp = otp_form(id, pending.csrf.expose(), None, StatusCode::OK);
    rsp.headers_mut().insert(header::SET_COOKIE, cookie);
    rsp
}

/// `POST /otp`: the one-time code for the user the pending request is bound to, whose login
/// session must be the browser's.
pub async fn otp<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let current = session::current(idp, req.headers(), now);
    let body = match read_form(req).await {
        Ok((_, body)) => body,
        Err(_) => return super::authorize::error_page("The code form could not be read."),
    };
    let field = |n: &str| body.one(n).ok().flatten().unwrap_or("");
    let id = field("request");
    let Some(pending) = idp.state.pending.get(id) else {
        return super::authorize::error_page(
            "This sign-in request expired. Start again from the application.",
        );
    };
    let user = pending.user();
    let session = current.filter(|(_, s)| user.as_ref() == Some(&s.user));
    let (Some(user), Some((sid, s)), true) = (user, session, pending.csrf.matches(field("csrf")))
    else {
        return super::authorize::error_page(
            "The code form was not valid. Start again from the application.",
        );
    };
    let secret = idp
        .config
        .users
        .get(&user)
        .and_then(|u| u.totp_secret.as_ref());
    let step = secret.and_then(|sec| totp::check(sec, field("code"), now));
    let fresh = step.is_some_and(|st| {
        let key = format!("{user}:{st}");
        // One atomic check-and-insert: two concurrent submissions of a code cannot both pass.
        idp.state.otp_used.entry(key).or_insert(()).is_fresh()
    });
    if !fresh {
        idp.metrics.login("invalid_otp");
        if let Some(denied) = give_up_after_too_many(idp, id, &pending) {
            return denied;
        }
        return otp_form(
            id,
            pending.csrf.expose(),
            Some("Wrong or already used code."),
            StatusCode::UNAUTHORIZED,
        );
    }
    idp.state.pending.invalidate(id);
    idp.metrics.login("ok");
    info!(client_id = %pending.client, "one-time code accepted");
    let s = session::add(idp, &sid, s, Factor::Otp, now);
    code_redirect(idp, &pending, s.authentication(&idp.config.acr), now, None)
}

/// Issues a code for `auth` and redirects to the client with it and `state`, setting `cookie`.
pub(crate) fn code_redirect(
    idp: &Idp,
    pending: &Pending,
    auth: Authentication,
    now: u64,
    cookie: Option<HeaderValue>,
) -> Response<Body> {
    let code = issue_code(idp, pending, auth, now);
    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s.as_str()));
    }
    let mut rsp = redirect(idp, &pending.redirect_uri, &pairs);
    if let Some(c) = cookie {
        rsp.headers_mut().insert(header::SET_COOKIE, c);
    }
    rsp
}

fn issue_code(idp: &Idp, p: &Pending, auth: Authentication, now: u64) -> Token {
    let user_scope = idp
        .config
        .users
        .get(&auth.user)
        .map(|u| u.scope.clone())
        .unwrap_or_default();
    let scope = p
        .scope
        .iter()
        .filter(|s| *s == "openid" || user_scope.contains(s))
        .cloned()
        .collect();
    let code = Token::new(random(32));
    let grant = CodeGrant {
        client: p.client.clone(),
        redirect_uri: p.redirect_uri.clone(),
        challenge: p.challenge.clone(),
        auth,
        scope,
        resources: p.resources.clone(),
        nonce: p.nonce.clone(),
        expires_at: now + idp.config.lifetimes.code,
        used: false,
        family: None,
    };
    idp.state
        .codes
        .insert(code.sha256(), Arc::new(Mutex::new(grant)));
    code
}

/// The one-time-code form for pending request `id`.
pub fn otp_form(id: &str, csrf: &str, error: Option<&str>, status: StatusCode) -> Response<Body> {
    let alert = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<p>Enter the 6-digit code from your authenticator app.</p>
<form method="post" action="/otp">
<input type="hidden" name="request" value="{id}">
<input type="hidden" name="csrf" value="{csrf}">
<p><label for="code">One-time code</label><br><input id="code" name="code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required autofocus></p>
<p><button type="submit">Verify</button></p>
</form>"#,
        id = escape(id),
        csrf = escape(csrf),
    );
    html_page(status, "One-time code", &body)
}

/// The login form for pending request `id`.
pub fn form(id: &str, csrf: &str, error: Option<&str>, status: StatusCode) -> Response<Body> {
    let alert = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<form method="post" action="/login">
<input type="hidden" name="request" value="{id}">
<input type="hidden" name="csrf" value="{csrf}">
<p><label for="username">Username</label><br><input id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">Password</label><br><input id="password" type="password" name="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>"#,
        id = escape(id),
        csrf = escape(csrf),
    );
    html_page(status, "Sign in", &body)
}

/// A self-contained HTML page (no external assets), never cached or framed.
pub fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\n<body><main><h1>{t}</h1>\n{body}\n</main></body></html>\n",
        t = escape(title)
    );
    let mut rsp = Response::new(full(html));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    rsp
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
