//! The login and one-time-code forms: `POST /login` checks the password against the user's argon2
//! hash and starts a login session; `POST /otp` checks an RFC 6238 code (once per step) and adds
//! the `otp` factor to it. When the session proves what the request needs, a single-use code
//! bound to the pending authorization request goes back to the client (RFC 6749 §4.1.2).
//!
//! Before any check, each POST passes, in order: the origin check and the pre-login cookie of
//! [`super::browser`] (login CSRF), the opening of the sealed request ([`Pending`]), and the
//! failure counters of [`super::throttle`] (a throttled attempt is refused unchecked, 429 with
//! `Retry-After`). Passwords are checked in the bounded pool of [`super::password`] (503 with
//! `Retry-After` when it is full).
//!
//! [`Authentication`] records what the user proved (`acr`, `amr`, `auth_time`).

mod pages;

use super::authorize::{Pending, error_page, redirect};
use super::browser::{self, Device};
use super::config::Factor;
use super::throttle::{Key, Peer};
use super::token::{CodeGrant, read_form};
use super::{Idp, random, session, totp};
use crate::http::{Body, BoxError};
use crate::secret::Token;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing::info;

pub use super::password::{hash_password, password_ok};
use pages::refusal;
pub use pages::{escape, form, html_page, otp_form};

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

/// A form that came back from the browser it was shown to, with its request opened.
struct Submitted {
    headers: HeaderMap,
    form: crate::http::Form,
    pending: Pending,
    peer: Option<std::net::IpAddr>,
}

impl Submitted {
    fn field(&self, name: &str) -> &str {
        self.form.one(name).ok().flatten().unwrap_or("")
    }
}

/// The checks every login-page POST passes first: same origin, a readable form, a genuine and
/// unexpired sealed request, and the pre-login cookie that request was sealed for.
async fn submitted<B>(idp: &Idp, req: Request<B>, now: u64) -> Result<Submitted, Response<Body>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let issuer = &idp.config.issuer;
    if !browser::same_origin(req.headers(), issuer) {
        // What the client sent, cut short: a header must not make a long log line.
        let sent = |name: &str| {
            let v = req.headers().get(name)?.to_str().ok()?;
            v.get(..v.len().min(80))
        };
        info!(
            origin = sent("origin"),
            fetch_site = sent("sec-fetch-site"),
            "login form from another site refused"
        );
        idp.metrics.login("cross_site");
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This form was sent from another site. Start again from the application.",
        ));
    }
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let (parts, form) = read_form(req)
        .await
        .map_err(|_| error_page("The form could not be read."))?;
    let sealed = form.one("request").ok().flatten().unwrap_or("");
    let Some(pending) = Pending::open(&idp.sealer, sealed, now) else {
        return Err(error_page(
            "This sign-in request expired. Start again from the application.",
        ));
    };
    if !browser::bound(&parts.headers, issuer, &pending) {
        info!(client_id = %pending.client, "login form without its browser's cookie refused");
        idp.metrics.login("unbound");
        return Err(error_page(
            "This form does not belong to this browser. Allow cookies for this site and start again from the application.",
        ));
    }
    Ok(Submitted {
        headers: parts.headers,
        form,
        pending,
        peer,
    })
}

/// The counters an attempt at `factor` for `user` is checked and counted under: the browser's
/// own counter when it proved this factor for this user before (nothing strangers do slows it
/// down), else the account's and the client network's.
fn counters(
    user: &str,
    known: bool,
    factor: Factor,
    device: Option<&Device>,
    peer: Option<std::net::IpAddr>,
) -> Vec<Key> {
    match device.filter(|d| d.trusted(user, factor)) {
        Some(d) => vec![Key::device(&d.id, factor.amr())],
        None => vec![Key::account(user, factor.amr(), known), Key::network(peer)],
    }
}

/// `page` with an alert, `status` and a `Retry-After` of `wait` seconds.
fn retry_later(
    page: fn(&str, Option<&str>, StatusCode) -> Response<Body>,
    sealed: &str,
    status: StatusCode,
    alert: &str,
    wait: u64,
) -> Response<Body> {
    let mut rsp = page(sealed, Some(alert), status);
    rsp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    rsp
}

const THROTTLED: &str = "Too many failed attempts. Try again later.";

/// `POST /login`.
pub async fn login<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let s = match submitted(idp, req, now).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let issuer = &idp.config.issuer;
    let sealed = s.field("request");
    let (username, password) = (s.field("username"), s.field("password"));
    let user = idp.config.users.get(username);
    let device = browser::device(&idp.sealer, &s.headers, issuer, now);
    let keys = counters(
        username,
        user.is_some(),
        Factor::Pwd,
        device.as_ref(),
        s.peer,
    );
    let attempt = match idp.throttle.attempt(&keys, now) {
        Ok(a) => a,
        Err(wait) => {
            idp.metrics.login("throttled");
            let status = StatusCode::TOO_MANY_REQUESTS;
            return retry_later(form, sealed, status, THROTTLED, wait);
        }
    };
    // An unknown user is checked against a decoy hash: the same pool, the same time.
    let ok = match idp
        .passwords
        .check(user.map(|u| &u.password_hash), password)
        .await
    {
        Ok(ok) => ok,
        Err(_busy) => {
            attempt.abandoned();
            idp.metrics.login("busy");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return retry_later(form, sealed, status, "Sign-in is busy. Try again.", 1);
        }
    };
    if !ok {
        attempt.failed();
        idp.metrics.login("invalid_credentials");
        let alert = Some("Wrong username or password.");
        return form(sealed, alert, StatusCode::UNAUTHORIZED);
    }
    attempt.succeeded();
    idp.metrics.login("ok");
    let mut pending = s.pending.clone();
    info!(client_id = %pending.client, "user signed in");
    let (cookie, started) = session::start(idp, username, Factor::Pwd, now);
    let trusted = browser::remember(&idp.sealer, issuer, device, username, Factor::Pwd, now);
    let cookies = [cookie, trusted];
    if !pending.needed.contains(&Factor::Otp) {
        let auth = started.authentication(&idp.config.acr);
        return code_redirect(idp, &pending, auth, now, &cookies);
    }
    if user.is_none_or(|u| u.totp_secret.is_none()) {
        let mut rsp = super::authorize::redirect_error(
            idp,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "unmet_authentication_requirements",
            "the user has no one-time-code app enrolled",
        );
        set_cookies(&mut rsp, &cookies);
        return rsp;
    }
    pending.user = Some(username.to_owned());
    let Some(sealed) = pending.seal(&idp.sealer) else {
        return error_page("This sign-in request is too large. Start again from the application.");
    };
    let mut rsp = otp_form(&sealed, None, StatusCode::OK);
    set_cookies(&mut rsp, &cookies);
    rsp
}

/// `POST /otp`: the one-time code for the user the pending request is bound to, whose login
/// session must be the browser's.
pub async fn otp<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let s = match submitted(idp, req, now).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let issuer = &idp.config.issuer;
    let sealed = s.field("request");
    let current = session::current(idp, &s.headers, now);
    let user = s.pending.user.clone();
    let session = current.filter(|(_, c)| user.as_ref() == Some(&c.user));
    let (Some(user), Some((sid, session))) = (user, session) else {
        return error_page("The code form was not valid. Start again from the application.");
    };
    let device = browser::device(&idp.sealer, &s.headers, issuer, now);
    let keys = counters(&user, true, Factor::Otp, device.as_ref(), s.peer);
    let attempt = match idp.throttle.attempt(&keys, now) {
        Ok(a) => a,
        Err(wait) => {
            idp.metrics.login("throttled");
            let status = StatusCode::TOO_MANY_REQUESTS;
            return retry_later(otp_form, sealed, status, THROTTLED, wait);
        }
    };
    let secret = idp
        .config
        .users
        .get(&user)
        .and_then(|u| u.totp_secret.as_ref());
    let step = secret.and_then(|sec| totp::check(sec, s.field("code"), now));
    let fresh = step.is_some_and(|st| {
        let key = format!("{user}:{st}");
        // One atomic check-and-insert: two concurrent submissions of a code cannot both pass.
        idp.state.otp_used.entry(key).or_insert(()).is_fresh()
    });
    if !fresh {
        attempt.failed();
        idp.metrics.login("invalid_otp");
        let alert = Some("Wrong or already used code.");
        return otp_form(sealed, alert, StatusCode::UNAUTHORIZED);
    }
    attempt.succeeded();
    idp.metrics.login("ok");
    info!(client_id = %s.pending.client, "one-time code accepted");
    let trusted = browser::remember(&idp.sealer, issuer, device, &user, Factor::Otp, now);
    let session = session::add(idp, &sid, session, Factor::Otp, now);
    let auth = session.authentication(&idp.config.acr);
    code_redirect(idp, &s.pending, auth, now, &[trusted])
}

fn set_cookies(rsp: &mut Response<Body>, cookies: &[HeaderValue]) {
    for c in cookies {
        rsp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
}

/// Issues a code for `auth` and redirects to the client with it and `state`, setting `cookies`.
pub(crate) fn code_redirect(
    idp: &Idp,
    pending: &Pending,
    auth: Authentication,
    now: u64,
    cookies: &[HeaderValue],
) -> Response<Body> {
    let code = issue_code(idp, pending, auth, now);
    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s.as_str()));
    }
    let mut rsp = redirect(idp, &pending.redirect_uri, &pairs);
    set_cookies(&mut rsp, cookies);
    rsp
}

/// Bytes the codes store may hold. A code needs a signed-in user, but a session gets codes
/// without a password check, so the store is weighed, not counted; the oldest go first.
pub(crate) const CODES_BUDGET: u64 = 16 << 20;

/// About the bytes a stored code holds: its strings plus the entry's fixed cost. A code whose
/// lock is held (being redeemed) weighs the most a capped request can.
pub(crate) fn code_weight(grant: &Arc<Mutex<CodeGrant>>) -> u32 {
    let Ok(g) = grant.try_lock() else {
        return 8 << 10;
    };
    let a = &g.auth;
    let lists = g.scope.iter().chain(&g.resources).chain(&a.amr);
    let strings: usize = [&g.client, &g.redirect_uri, &g.challenge, &a.user, &a.acr]
        .into_iter()
        .chain(lists)
        .chain(g.nonce.iter())
        .chain(a.sid.iter())
        .map(String::len)
        .sum();
    let entries = g.scope.len() + g.resources.len() + a.amr.len();
    u32::try_from(512 + 24 * entries + strings).unwrap_or(u32::MAX)
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
