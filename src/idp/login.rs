//! The login and one-time-code forms: `POST /login` checks the password against the user's argon2
//! hash and starts a login session; `POST /otp` checks an RFC 6238 code (once per step) and adds
//! the `otp` factor to it. When the session proves what the request needs, a
//! code ([`super::code`]) goes back to the client.
//!
//! Before any check, each POST passes, in order: the origin check and the pre-login cookie of
//! [`super::browser`] (login CSRF), the opening of the sealed request ([`Pending`]), and the
//! failure counters of [`super::throttle`] (a throttled attempt is refused unchecked, 429 with
//! `Retry-After`). Passwords are checked in the bounded pool of [`super::password`] (503 with
//! `Retry-After` when it is full).

use super::browser::{self, Device};
use super::config::{Factor, User};
use super::errors::AuthorizeError;
use super::form::read_form;
use super::pages::{self, Asking, Problem, error_page, one_time_code, sign_in};
use super::pending::Pending;
use super::state::Idp;
use super::store::StoreError;
use super::throttle::{Key, Peer, Refused};
use super::{code, errors, session, totp};
use crate::http::{Body, BoxError};
use crate::page::strings;
use crate::page::strings::fill_text;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tracing::info;

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

/// A login page: who asks, the sealed request, an alert and a status.
type Page = fn(&Asking, &str, Option<&str>, StatusCode) -> Response<Body>;

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
    let sealed = s.field("request");
    let (username, password) = (s.field("username"), s.field("password"));
    let user = idp.config.users.get(username);
    let device = browser::device(&idp.sealer, &s.headers, &idp.config.issuer, now);
    let keys = counters(
        username,
        user.is_some(),
        Factor::Pwd,
        device.as_ref(),
        s.peer,
    );
    let asking = Asking::of(&idp.config, &s.pending);
    let attempt = match idp.throttle.attempt(&keys, now).await {
        Ok(a) => a,
        Err(Refused::Wait(wait)) => return throttled(idp, sign_in, &asking, sealed, wait),
        Err(Refused::Unavailable) => return errors::unavailable(),
    };
    // An unknown user is checked against a decoy hash: the same pool, the same time.
    let ok = match idp
        .passwords
        .check(user.map(|u| &u.password_hash), password)
        .await
    {
        Ok(ok) => ok,
        Err(_busy) => {
            attempt.abandoned().await;
            idp.metrics.login("busy");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let busy = strings().busy;
            return retry_later(sign_in, &asking, sealed, status, busy, 1);
        }
    };
    if !ok {
        attempt.failed();
        idp.metrics.login("invalid_credentials");
        let alert = Some(strings().wrong_password);
        return sign_in(&asking, sealed, alert, StatusCode::UNAUTHORIZED);
    }
    attempt.succeeded().await;
    idp.metrics.login("ok");
    signed_in(idp, s.pending.clone(), username, user, device, now).await
}

/// After the password: a new login session and a trusted browser; then a code, or the
/// one-time-code page when the request needs that factor too.
async fn signed_in(
    idp: &Idp,
    mut pending: Pending,
    username: &str,
    user: Option<&User>,
    device: Option<Device>,
    now: u64,
) -> Response<Body> {
    let issuer = &idp.config.issuer;
    info!(client_id = %pending.client, "user signed in");
    let Ok((cookie, started)) = session::start(idp, username, Factor::Pwd, now).await else {
        return errors::unavailable();
    };
    let trusted = browser::remember(&idp.sealer, issuer, device, username, Factor::Pwd, now);
    let cookies = [cookie, trusted];
    if !pending.needed.contains(&Factor::Otp) {
        let auth = started.authentication(&idp.config.acr);
        return code::redirect(idp, &pending, auth, now, &cookies).await;
    }
    let mut rsp = if user.is_none_or(|u| u.totp_secret.is_none()) {
        let state = pending.state.as_deref();
        AuthorizeError::no_otp().response(issuer, &pending.redirect_uri, state)
    } else {
        pending.user = Some(username.to_owned());
        let Some(sealed) = pending.seal(&idp.sealer) else {
            return error_page(&idp.config.branding, Problem::RequestTooLarge);
        };
        one_time_code(
            &Asking::of(&idp.config, &pending),
            &sealed,
            None,
            StatusCode::OK,
        )
    };
    pages::set_cookies(&mut rsp, &cookies);
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
    let Ok(current) = session::current(idp, &s.headers, now).await else {
        return errors::unavailable();
    };
    let user = s.pending.user.clone();
    let session = current.filter(|(_, c)| user.as_ref() == Some(&c.user));
    let (Some(user), Some((sid, session))) = (user, session) else {
        return error_page(&idp.config.branding, Problem::CodeFormInvalid);
    };
    let device = browser::device(&idp.sealer, &s.headers, issuer, now);
    let keys = counters(&user, true, Factor::Otp, device.as_ref(), s.peer);
    let asking = Asking::of(&idp.config, &s.pending);
    let attempt = match idp.throttle.attempt(&keys, now).await {
        Ok(a) => a,
        Err(Refused::Wait(wait)) => return throttled(idp, one_time_code, &asking, sealed, wait),
        Err(Refused::Unavailable) => return errors::unavailable(),
    };
    let ok = match code_ok(idp, &user, s.field("code"), now).await {
        Ok(ok) => ok,
        Err(_) => {
            attempt.abandoned().await;
            return errors::unavailable();
        }
    };
    if !ok {
        attempt.failed();
        idp.metrics.login("invalid_otp");
        let alert = Some(strings().wrong_code);
        return one_time_code(&asking, sealed, alert, StatusCode::UNAUTHORIZED);
    }
    attempt.succeeded().await;
    idp.metrics.login("ok");
    info!(client_id = %s.pending.client, "one-time code accepted");
    let trusted = browser::remember(&idp.sealer, issuer, device, &user, Factor::Otp, now);
    let Ok(session) = session::add(idp, &sid, session, Factor::Otp, now).await else {
        return errors::unavailable();
    };
    let auth = session.authentication(&idp.config.acr);
    code::redirect(idp, &s.pending, auth, now, &[trusted]).await
}

/// Whether `code` is `user`'s current one-time code, used for the first time.
async fn code_ok(idp: &Idp, user: &str, code: &str, now: u64) -> Result<bool, StoreError> {
    let secret = idp
        .config
        .users
        .get(user)
        .and_then(|u| u.totp_secret.as_ref());
    let step = secret.and_then(|sec| totp::check(sec, code, now));
    match step {
        Some(st) => idp.store.first_otp_use(format!("{user}:{st}")).await,
        None => Ok(false),
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
    let theme = &idp.config.branding;
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
        return Err(error_page(theme, Problem::SignInOtherSite));
    }
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let (parts, form) = read_form(req)
        .await
        .map_err(|_| error_page(theme, Problem::FormUnreadable))?;
    let sealed = form.one("request").ok().flatten().unwrap_or("");
    let Some(pending) = Pending::open(&idp.sealer, sealed, now) else {
        return Err(error_page(theme, Problem::SignInExpired));
    };
    if !browser::bound(&parts.headers, issuer, &pending) {
        info!(client_id = %pending.client, "login form without its browser's cookie refused");
        idp.metrics.login("unbound");
        return Err(error_page(theme, Problem::SignInOtherBrowser));
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

/// An attempt refused unchecked by the throttle: `page` again, 429 with `Retry-After`.
fn throttled(idp: &Idp, page: Page, asking: &Asking, sealed: &str, wait: u64) -> Response<Body> {
    idp.metrics.login("throttled");
    let status = StatusCode::TOO_MANY_REQUESTS;
    let alert = fill_text(strings().throttled, &[("wait", &how_long(wait))]);
    retry_later(page, asking, sealed, status, &alert, wait)
}

/// `secs` in words, rounded up: seconds up to 90, minutes up to 90, then hours.
fn how_long(secs: u64) -> String {
    let s = strings();
    let (unit, n) = match secs {
        ..=1 => (s.one_second, 1),
        n @ ..=90 => (s.seconds, n),
        n @ ..=5400 => (s.minutes, n.div_ceil(60)),
        n => (s.hours, n.div_ceil(3600)),
    };
    fill_text(unit, &[("n", &n.to_string())])
}

/// `page` with an alert, `status` and a `Retry-After` of `wait` seconds.
fn retry_later(
    page: Page,
    asking: &Asking,
    sealed: &str,
    status: StatusCode,
    alert: &str,
    wait: u64,
) -> Response<Body> {
    let mut rsp = page(asking, sealed, Some(alert), status);
    rsp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    rsp
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_are_said_in_words_rounded_up() {
        let said: Vec<String> = [0, 30, 90, 91, 900, 5400, 5401, 86_400]
            .into_iter()
            .map(super::how_long)
            .collect();
        assert_eq!(
            said,
            [
                "1 second",
                "30 seconds",
                "90 seconds",
                "2 minutes",
                "15 minutes",
                "90 minutes",
                "2 hours",
                "24 hours"
            ]
        );
    }
}
