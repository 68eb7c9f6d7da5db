//! `GET /authorize` (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2), in three steps:
//!
//! 1. the client and its exact redirect URI (`request::client`): an error page, never a
//!    redirect, when either is wrong;
//! 2. the rest of the request (`request::parse`, bounded by `params`): errors go back to
//!    the client with `state`;
//! 3. the login session decides (OIDC Core §3.1.2.1): a session that already proves the
//!    factors `acr_values` needs, is fresh enough for `max_age`, belongs to the `id_token_hint`
//!    user and is not overridden by `prompt=login` gets a code at once; a session missing only
//!    the one-time code gets only the code page (step-up); otherwise the login form.
//!    `prompt=none` never shows a page: `login_required` or `interaction_required` go back with
//!    `state`.
//!
//! `prompt=consent` asks nothing: every client is registered by the operator, whose
//! configuration is the consent, so there is no consent page and never a `consent_required`.
//! Unknown `prompt` values are ignored. A shown page carries the request sealed
//! ([`Pending`]) for the pages of [`super::login`], bound to the browser's pre-login cookie.

mod params;
mod request;

use super::authn::Session;
use super::errors::AuthorizeError;
use super::pages::{self, Asking, Problem, error_page};
use super::pending::{self, Pending};
use super::state::Idp;
use super::{browser, code, session};
use crate::http::{Body, Form};
use http::{HeaderMap, Response, StatusCode, header};
use request::Asked;
use tracing::info;

/// The authorization endpoint: the request's query and headers.
pub async fn authorize(idp: &Idp, query: &str, headers: &HeaderMap, now: u64) -> Response<Body> {
    let q = Form::parse(query.as_bytes());
    let (client, redirect_uri) = match request::client(idp, &q) {
        Ok(c) => c,
        Err(detail) => return error_page(&idp.config.branding, Problem::BadSignInLink(detail)),
    };
    let state = request::state(&q);
    let back = |e: AuthorizeError| e.response(&idp.config.issuer, &redirect_uri, state.as_deref());
    let asked = match request::parse(idp, client, &q, now) {
        Ok(a) => a,
        Err(e) => return back(e),
    };
    let Ok(current) = session::current(idp, headers, now).await else {
        return super::errors::unavailable();
    };
    let current = current
        .map(|(_, s)| s)
        .filter(|s| asked.session.may_answer(&s.user, s.auth_time(), now));
    let binding = browser::binding(headers, &idp.config.issuer);
    let pending = Pending {
        client: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        nonce: asked.nonce.map(str::to_owned),
        challenge: asked.challenge.to_owned(),
        scope: asked.scope.clone(),
        resources: asked.resources.clone(),
        needed: asked.needed.clone(),
        user: current.as_ref().map(|s| s.user.clone()),
        browser: browser::binding_hash(&binding),
        expires_at: now + pending::TTL,
        dpop_jkt: asked.dpop_jkt.map(str::to_owned),
    };
    answer(idp, &asked, current, &pending, &binding, now)
        .await
        .unwrap_or_else(back)
}

/// Step 3: a code through the session, the page the request needs, or a refusal.
async fn answer(
    idp: &Idp,
    asked: &Asked<'_>,
    current: Option<Session>,
    pending: &Pending,
    binding: &str,
    now: u64,
) -> Result<Response<Body>, AuthorizeError> {
    let client = &pending.client;
    match current {
        Some(s) if s.has(&pending.needed) => {
            info!(client_id = %client, "signed in through the session");
            let auth = s.authentication(&idp.config.acr);
            Ok(code::redirect(idp, pending, auth, now, &[]).await)
        }
        Some(_) if asked.session.prompt_none() => Err(AuthorizeError::new(
            "interaction_required",
            "a stronger authentication is needed",
        )),
        Some(s) if !can_otp(idp, &s.user) => Err(AuthorizeError::no_otp()),
        Some(_) => {
            info!(client_id = %client, "step-up: one-time code asked");
            show(idp, pending, binding, pages::one_time_code)
        }
        None if asked.session.prompt_none() => Err(AuthorizeError::new(
            "login_required",
            "the user is not signed in",
        )),
        None => {
            info!(client_id = %client, "login form shown");
            show(idp, pending, binding, pages::sign_in)
        }
    }
}

/// `page` with the sealed request, setting the browser's pre-login cookie.
fn show(
    idp: &Idp,
    pending: &Pending,
    binding: &str,
    page: fn(&Asking, &str, Option<&str>, StatusCode) -> Response<Body>,
) -> Result<Response<Body>, AuthorizeError> {
    let sealed = pending
        .seal(&idp.sealer)
        .ok_or_else(|| AuthorizeError::request("the request is too large"))?;
    let mut rsp = page(
        &Asking::of(&idp.config, pending),
        &sealed,
        None,
        StatusCode::OK,
    );
    rsp.headers_mut().append(
        header::SET_COOKIE,
        browser::set_binding(&idp.config.issuer, binding),
    );
    Ok(rsp)
}

/// Whether `user` has a TOTP secret.
fn can_otp(idp: &Idp, user: &str) -> bool {
    idp.config
        .users
        .get(user)
        .is_some_and(|u| u.totp_secret.is_some())
}
