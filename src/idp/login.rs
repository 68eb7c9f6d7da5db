//! The login form and `POST /login`: password check against the user's argon2 hash, then a
//! single-use code bound to the pending authorization request (RFC 6749 §4.1.2).
//!
//! [`Authentication`] records what the user proved (`acr`, `amr`, `auth_time`); a later issue adds
//! sessions and a TOTP step-up factor by extending it, without touching the token code.

use super::authorize::{Pending, redirect};
use super::token::{CodeGrant, read_form};
use super::{Idp, random};
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
    /// When the user last authenticated (OIDC Core §2 `auth_time`).
    pub auth_time: u64,
    /// Authentication context class (`pwd` for a password).
    pub acr: String,
    /// Methods used (RFC 8176), e.g. `["pwd"]`.
    pub amr: Vec<String>,
}

impl Authentication {
    /// A password sign-in at `now`.
    pub fn password(user: &str, now: u64) -> Self {
        Self {
            user: user.to_owned(),
            auth_time: now,
            acr: "pwd".into(),
            amr: vec!["pwd".into()],
        }
    }

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
        if pending.attempts.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_ATTEMPTS {
            idp.state.pending.invalidate(id);
            return super::authorize::redirect_error(
                idp,
                &pending.redirect_uri,
                pending.state.as_deref(),
                "access_denied",
                "too many failed sign-in attempts",
            );
        }
        return self::form(
            id,
            pending.csrf.expose(),
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    idp.state.pending.invalidate(id);
    idp.metrics.login("ok");
    info!(client_id = %pending.client, "user signed in");
    let code = issue_code(idp, &pending, Authentication::password(&username, now), now);
    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s.as_str()));
    }
    redirect(idp, &pending.redirect_uri, &pairs)
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
        nonce: p.nonce.clone(),
        expires_at: now + idp.config.lifetimes.code,
        used: false,
        issued: Vec::new(),
        refresh: None,
    };
    idp.state
        .codes
        .insert(code.sha256(), Arc::new(Mutex::new(grant)));
    code
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
