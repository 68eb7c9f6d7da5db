//! The browser phases of a `login: browser` route, on either side of admission: before it, a
//! live session's access token becomes the bearer (or a navigation without one is sent to sign
//! in); after it, an RFC 9470 challenge, the sidecar's own or the app's, becomes a step-up at
//! the IdP, and a token the rules refuse ends the session and signs in again (`refuse`).

use super::active::Active;
use super::login::{self, Login};
use super::{Inbound, Reject};
use crate::config::Route;
use crate::http::Body;
use http::{HeaderMap, Request, Response};

/// A browser navigation on a `login: browser` route that carries a session.
pub struct Navigation {
    session: login::Browser,
    return_to: String,
    /// The request's `Cookie` headers (pre-login cookies to bound at a step-up).
    cookies: HeaderMap,
}

/// The phase before admission, for a sidecar with `login:` configured. On a `login: browser`
/// route a request with its own `Authorization` is an API call and passes untouched; otherwise
/// a live session's access token becomes the bearer, a navigation without one is sent to sign
/// in (`Err`: the redirect), and an API call without one goes on to the usual 401. On every
/// route the sidecar's own cookies are removed: the app gets the bearer, never the session.
pub async fn before<B>(
    s: &Inbound,
    l: &Login,
    route: Option<&Route>,
    req: &mut Request<B>,
    now: u64,
) -> Result<Option<Navigation>, Response<Body>> {
    let navigation = match route {
        Some(r) if r.browser_login => session_bearer(s, l, req, now).await?,
        _ => None,
    };
    crate::http::cookie::strip(req.headers_mut(), crate::http::cookie::PREFIX);
    Ok(navigation)
}

/// See [`before`]: the session's token set as the bearer.
async fn session_bearer<B>(
    s: &Inbound,
    l: &Login,
    req: &mut Request<B>,
    now: u64,
) -> Result<Option<Navigation>, Response<Body>> {
    if req.headers().contains_key(http::header::AUTHORIZATION) {
        return Ok(None);
    }
    let navigation = login::challenge::is_navigation(req.method(), req.headers());
    let return_to = login::challenge::return_path(req.uri());
    match l.session(&s.verifier, req.headers(), now).await {
        Some((session, token)) => {
            let bearer = http::HeaderValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| Reject::Internal.into_response("", ""))?;
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer);
            let cookies = req
                .headers()
                .get_all(http::header::COOKIE)
                .iter()
                .map(|v| (http::header::COOKIE, v.clone()))
                .collect();
            Ok(navigation.then_some(Navigation {
                session,
                return_to,
                cookies,
            }))
        }
        None if navigation => Err(l.start(req.headers(), &return_to, None, now).await),
        None => Ok(None),
    }
}

impl Navigation {
    /// The answer to a navigation the sidecar refused, when it is not the standard refusal: a
    /// step-up challenge becomes a redirect to the IdP (unless this session just stepped up for
    /// it), and a refused token ends the session and signs in again.
    pub async fn refused(&self, l: &Login, reject: &Reject, now: u64) -> Option<Response<Body>> {
        match reject {
            Reject::StepUp {
                acr_values,
                max_age,
            } => {
                let c = login::challenge::StepUp {
                    acr_values: acr_values.clone(),
                    max_age: *max_age,
                };
                l.step_up(&self.session, &c, &self.cookies, &self.return_to, now)
                    .await
            }
            Reject::InvalidToken(_) => {
                l.forget(&self.session);
                Some(l.start(&self.cookies, &self.return_to, None, now).await)
            }
            _ => None,
        }
    }

    /// The redirect to step up when the app (or a hop behind it) answered this navigation with
    /// an RFC 9470 challenge; `None` to pass the app's answer on.
    pub async fn answered<B>(
        &self,
        l: &Login,
        rsp: &Response<B>,
        now: u64,
    ) -> Option<Response<Body>> {
        let c = login::challenge::step_up(rsp)?;
        l.step_up(&self.session, &c, &self.cookies, &self.return_to, now)
            .await
    }
}

/// What [`refuse`] needs of the request it answers.
pub(super) struct Refusal<'a> {
    pub(super) s: &'a Inbound,
    pub(super) active: &'a Active,
    pub(super) navigation: Option<&'a Navigation>,
    pub(super) grpc: bool,
    pub(super) now: u64,
}

/// The answer to a request refused in enforce mode: the standard refusal, or on a browser
/// navigation the sign-in or step-up that [`Navigation::refused`] makes of it.
pub(super) async fn refuse(ctx: Refusal<'_>, reject: Reject) -> Response<Body> {
    if let (Some(l), Some(n)) = (&ctx.s.login, ctx.navigation)
        && let Some(rsp) = n.refused(l, &reject, ctx.now).await
    {
        return rsp;
    }
    let active = ctx.active;
    reject.answer(&active.config.audience, &active.hint, ctx.grpc)
}
