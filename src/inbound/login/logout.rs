//! Signing out: a page with a button, and a POST that must carry the page's CSRF token or come
//! from this origin before it ends the session and sends the browser to the IdP's logout.

use super::session::SessionId;
use super::{Login, redirect};
use crate::config::login::LOGOUT_PATH;
use crate::http::cookie;
use crate::http::{Body, BoxError, Form, read_limited, text};
use crate::secret::{Token, constant_time_eq};
use http::{HeaderMap, Request, Response, StatusCode, header};
use tracing::info;

/// Largest logout form read, bytes.
const MAX_LOGOUT_FORM: usize = 1024;

impl Login {
    /// The live session named by the request's cookie.
    fn live_session(&self, headers: &HeaderMap) -> Option<SessionId> {
        self.session_id(headers)
            .filter(|id| self.sessions.get(id).is_some())
    }

    /// `GET /_baton/logout`: a page with a sign-out button (POST with a CSRF token). Never signs
    /// out by itself. Without a session there is nothing to end: back to the post-logout path.
    pub(super) fn logout_page(&self, headers: &HeaderMap) -> Response<Body> {
        let Some(id) = self.live_session(headers) else {
            return self.signed_out(&self.settings.post_logout_path);
        };
        let csrf = self.sealer.seal(cookie::LOGOUT, &id);
        // No `form-action` in its policy: Chromium applies it to the redirect after the POST.
        crate::page::app_sign_out(LOGOUT_PATH, &csrf)
    }

    /// `POST /_baton/logout`: with the page's CSRF token or from this origin, ends the session,
    /// clears the cookie, and sends the browser to the IdP's `end_session_endpoint` (OIDC
    /// RP-Initiated Logout 1.0 §2) with `id_token_hint`, `client_id` and
    /// `post_logout_redirect_uri`, when discovery has one, else to the post-logout path.
    /// The origin rule comes first, session or not: a cross-site POST carries no `SameSite=Lax`
    /// cookie, and answering it with a cookie-clearing redirect would sign the browser out of
    /// this site all the same.
    pub(super) async fn logout<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        let id = self.session_id(req.headers());
        if !self.logout_allowed(req, id.as_ref()).await {
            self.metrics.login("logout_refused");
            info!("edge login: logout refused (no CSRF token, another origin)");
            return text(
                StatusCode::FORBIDDEN,
                format!("sign-out refused: use the sign-out button at {LOGOUT_PATH}\n"),
            );
        }
        let live = id.and_then(|id| self.sessions.remove(&id));
        let Some(session) = live else {
            return self.signed_out(&self.settings.post_logout_path);
        };
        let hint = session.lock().await.id_token.clone();
        self.metrics.login("logout");
        info!("edge login: signed out");
        let target = self.after_logout(&hint).await;
        self.signed_out(&target)
    }

    /// Whether a logout POST may proceed: from this origin, or with the CSRF token of session
    /// `id` in its form.
    async fn logout_allowed<B>(&self, req: Request<B>, id: Option<&SessionId>) -> bool
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        self.same_origin(req.headers()) || {
            let form = read_limited(req.into_body(), MAX_LOGOUT_FORM)
                .await
                .unwrap_or_default();
            let form = Form::parse(&form);
            let opened = form
                .one("csrf")
                .ok()
                .flatten()
                .and_then(|t| self.sealer.open(cookie::LOGOUT, t));
            matches!((opened, id), (Some(o), Some(id)) if constant_time_eq(&o, id))
        }
    }

    /// Where the browser goes once signed out here: the IdP's `end_session_endpoint` with
    /// `hint`, when discovery has one, else the post-logout path.
    async fn after_logout(&self, hint: &Token) -> String {
        let end_session = self
            .endpoints()
            .await
            .and_then(|e| e.end_session_endpoint.clone());
        let Some(mut url) = end_session else {
            return self.settings.post_logout_path.clone();
        };
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("id_token_hint", hint.expose())
            .append_pair(
                "post_logout_redirect_uri",
                &self.settings.post_logout_redirect_uri(),
            );
        url.to_string()
    }

    /// Whether the browser says the request comes from a page of this origin: `Sec-Fetch-Site:
    /// same-origin`, or an `Origin` equal to `external_url`'s (neither can be set by a page).
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin");
        let origin = headers.get(header::ORIGIN).is_some_and(|v| {
            v.as_bytes()
                == self
                    .settings
                    .external_url
                    .origin()
                    .ascii_serialization()
                    .as_bytes()
        });
        site || origin
    }

    /// A redirect to `location` that clears the session cookie.
    fn signed_out(&self, location: &str) -> Response<Body> {
        let mut rsp = redirect(location);
        rsp.headers_mut()
            .append(header::SET_COOKIE, self.clear(cookie::SESSION, "/"));
        rsp
    }
}
