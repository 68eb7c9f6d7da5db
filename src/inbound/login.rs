//! Edge browser sign-in for routes marked `login: browser`: the sidecar is the
//! OAuth client (authorization code + PKCE S256, `state`, `nonce`; OIDC Core §3.1), keeps the
//! tokens in a server-side [`session`] behind an encrypted [`cookie`], refreshes them before
//! they expire (RFC 6749 §6), and sends the browser back to the IdP with `acr_values` and
//! `id_token_hint` when the app relays an RFC 9470 step-up challenge from anywhere in the chain.
//!
//! Reserved paths on the inbound listener: [`CALLBACK_PATH`] (the redirect URI) and
//! [`LOGOUT_PATH`]. Nothing here ever logs or answers with a token, code or cookie value.
//!
//! Each sign-in in progress has its own pre-login cookie, named after a hash of its `state`, so
//! parallel sign-ins (two tabs) both complete; at most [`MAX_PENDING`] are kept per browser.
//!
//! Logout is POST-only: a GET shows a button. A POST must carry the page's CSRF token (the
//! session id sealed for [`cookie::LOGOUT`]) or come from this origin (`Origin` or
//! `Sec-Fetch-Site: same-origin`), so a link or form on another site cannot sign users out
//! (logout CSRF), and through them end their IdP session.

mod callback;
pub mod challenge;
mod logout;
pub mod session;
mod sign_in;
mod signed_in;

use crate::config::login::{CALLBACK_PATH, LOGOUT_PATH, Login as Settings};
use crate::config::outbound::Outbound as OutboundConfig;
use crate::exchange::{ExchangeError, Exchanger};
use crate::http::cookie::{self, Sealer};
use crate::http::{Body, BoxError, Form, text};
use crate::jwt::jwks::{Jwks, Verifier};
use crate::jwt::{Kind, Rules};
use crate::telemetry::Metrics;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use session::{Session, SessionId, Sessions};
use sign_in::login_cookie;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};
use tracing::{info, warn};
use url::Url;

/// How long a started sign-in may take before its pre-login cookie is refused, seconds.
const LOGIN_TTL: u64 = 600;
/// ID tokens kept verified at most (one per live session is plenty).
const ID_CACHE: u64 = 10_000;
/// Sign-ins in progress kept per browser (pre-login cookies); the oldest is dropped beyond it.
pub const MAX_PENDING: usize = 4;

/// Why the edge login could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token-endpoint client could not be built.
    #[error("edge login: {0}")]
    Client(#[from] ExchangeError),
    /// The HTTP client for discovery could not be built.
    #[error("edge login: build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The IdP endpoints the browser is sent to (OIDC Discovery §3).
#[derive(Debug, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: Url,
    end_session_endpoint: Option<Url>,
}

/// A browser request that carries a live session.
pub struct Browser {
    id: SessionId,
    session: Arc<Mutex<Session>>,
}

/// The edge login of one sidecar.
pub struct Login {
    settings: Settings,
    issuer: String,
    client_id: String,
    sealer: Sealer,
    client: Exchanger,
    id_verifier: Verifier,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
    used_states: moka::sync::Cache<[u8; 32], ()>,
    sessions: Sessions,
    metrics: Arc<Metrics>,
}

impl Login {
    /// Builds the login for `settings`, signing in as `outbound.client` at `issuer`; ID tokens
    /// are verified with the same `jwks` as access tokens.
    pub fn new(
        settings: &Settings,
        issuer: &str,
        outbound: &OutboundConfig,
        jwks: Arc<Jwks>,
        metrics: Arc<Metrics>,
    ) -> Result<Login, Error> {
        let client_id = outbound.client.client_id.clone();
        let mut rules = Rules::access(issuer, client_id.clone());
        rules.kind = Kind::Id;
        let client = Exchanger::new(outbound, Some(issuer))?;
        Ok(Login {
            settings: settings.clone(),
            issuer: issuer.to_owned(),
            sealer: Sealer::new(settings.cookie_key),
            // The IdP's discovery and userinfo go on the token endpoint's client.
            http: client.http().clone(),
            client,
            id_verifier: Verifier::new(jwks, rules, ID_CACHE, metrics.clone()),
            endpoints: OnceCell::new(),
            used_states: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(LOGIN_TTL))
                .build(),
            sessions: Sessions::new(settings.max_sessions, settings.session_ttl),
            client_id,
            metrics,
        })
    }

    async fn endpoints(&self) -> Option<&Endpoints> {
        let found = self
            .endpoints
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let rsp = self.http.get(&url).send().await.map_err(|e| {
                    warn!(error = %e.without_url(), "edge login: discovery failed");
                })?;
                let e: Endpoints = rsp.json().await.map_err(|e| {
                    warn!(error = %e.without_url(), "edge login: discovery unreadable");
                })?;
                if e.issuer != self.issuer {
                    warn!("edge login: discovery names another issuer");
                    return Err(());
                }
                Ok(e)
            })
            .await;
        found.ok()
    }

    /// Answers the reserved paths: the callback, logout; anything else under `/_baton/` is 404.
    pub async fn reserved<B>(&self, access: &Verifier, req: Request<B>, now: u64) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        match (req.method(), req.uri().path()) {
            (&Method::GET, CALLBACK_PATH) => match self.callback(access, &req, now).await {
                Ok(rsp) => rsp,
                Err(e) => {
                    self.metrics.login("callback_error");
                    info!(reason = %e, "edge login: callback refused");
                    let mut rsp = text(e.status(), format!("sign-in failed: {e}\n"));
                    let q = Form::parse(req.uri().query().unwrap_or("").as_bytes());
                    if let Ok(Some(state)) = q.one("state") {
                        rsp.headers_mut()
                            .append(header::SET_COOKIE, self.clear(&login_cookie(state), "/"));
                    }
                    rsp
                }
            },
            (&Method::GET, LOGOUT_PATH) => self.logout_page(req.headers()),
            (&Method::POST, LOGOUT_PATH) => self.logout(req).await,
            (_, CALLBACK_PATH | LOGOUT_PATH) => {
                let mut rsp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                let allow = if req.uri().path() == LOGOUT_PATH {
                    "GET, POST"
                } else {
                    "GET"
                };
                rsp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                rsp
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        let v = cookie::read(headers, cookie::SESSION)?;
        self.sealer.open(cookie::SESSION, v)?.try_into().ok()
    }

    fn clear(&self, name: &str, path: &str) -> HeaderValue {
        cookie::set(name, "", path, 0, self.settings.secure())
    }
}

fn redirect(location: &str) -> Response<Body> {
    crate::http::redirect(StatusCode::FOUND, location)
}

fn unavailable() -> Response<Body> {
    let mut rsp = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the identity provider is unavailable; retry later\n",
    );
    rsp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    rsp
}
