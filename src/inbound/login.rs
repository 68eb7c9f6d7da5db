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

pub mod challenge;
pub mod session;

use crate::config::login::{CALLBACK_PATH, LOGOUT_PATH, Login as Settings};
use crate::config::outbound::Outbound as OutboundConfig;
use crate::exchange::{ExchangeError, Exchanger};
use crate::http::cookie::{self, Sealer};
use crate::http::{Body, BoxError, Form, read_limited, text};
use crate::jwt::jwks::{Jwks, Verifier, VerifyFailure};
use crate::jwt::{Kind, Rules, Verified};
use crate::secret::{Token, constant_time_eq};
use crate::telemetry::Metrics;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use challenge::StepUp;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use session::{Session, SessionId, Sessions};
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
/// Largest logout form read, bytes.
const MAX_LOGOUT_FORM: usize = 1024;

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

/// What the pre-login cookie carries, sealed: nothing of it is kept server-side until the
/// callback, so unauthenticated requests cost no memory.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    nonce: String,
    return_to: String,
    /// The challenge key when this sign-in is a step-up (loop bound).
    step_up: Option<String>,
    exp: u64,
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

    // === sign-in ===

    /// Sends the browser to the IdP's authorization endpoint (OIDC Core §3.1.2.1) and sets the
    /// sealed pre-login cookie. A step-up adds `acr_values`, `max_age` and `id_token_hint`.
    /// `cookies` are the request's headers: earlier pre-login cookies beyond [`MAX_PENDING`],
    /// expired or unreadable, are cleared.
    pub async fn start(
        &self,
        cookies: &HeaderMap,
        return_to: &str,
        step_up: Option<(&StepUp, &Token)>,
        now: u64,
    ) -> Response<Body> {
        let Some(ep) = self.endpoints().await else {
            return unavailable();
        };
        let pending = Pending {
            state: crate::secret::random_b64(16),
            verifier: crate::secret::random_b64(32),
            nonce: crate::secret::random_b64(16),
            return_to: challenge::safe_return(return_to).to_owned(),
            step_up: step_up.map(|(c, _)| c.key()),
            exp: now + LOGIN_TTL,
        };
        let pkce = URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[pending.verifier.as_bytes()]));
        let mut url = ep.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.settings.redirect_uri())
                .append_pair("scope", &self.settings.scope)
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair("code_challenge", &pkce)
                .append_pair("code_challenge_method", "S256");
            if let Some((c, hint)) = step_up {
                if let Some(acr) = &c.acr_values {
                    q.append_pair("acr_values", acr);
                }
                if let Some(age) = c.max_age {
                    q.append_pair("max_age", &age.to_string());
                }
                q.append_pair("id_token_hint", hint.expose());
            }
        }
        let sealed = serde_json::to_vec(&pending)
            .map(|p| self.sealer.seal(cookie::LOGIN, &p))
            .unwrap_or_default();
        self.metrics.login(if step_up.is_some() {
            "step_up"
        } else {
            "redirect"
        });
        let mut rsp = redirect(url.as_str());
        for stale in self.stale_logins(cookies, now) {
            rsp.headers_mut()
                .append(header::SET_COOKIE, self.clear(stale, "/"));
        }
        rsp.headers_mut().append(
            header::SET_COOKIE,
            cookie::set(
                &login_cookie(&pending.state),
                &sealed,
                "/",
                LOGIN_TTL,
                self.settings.secure(),
            ),
        );
        rsp
    }

    /// The pre-login cookies to clear before one more is set: unreadable or expired ones, and
    /// the oldest live ones so that at most [`MAX_PENDING`] remain with the new one.
    fn stale_logins<'a>(&self, headers: &'a HeaderMap, now: u64) -> Vec<&'a str> {
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (name, value) in cookie::with_prefix(headers, LOGIN_PREFIX, 64) {
            match self.open_pending(value) {
                Some(p) if p.exp >= now => live.push((p.exp, name)),
                _ => stale.push(name),
            }
        }
        live.sort_unstable();
        let excess = (live.len() + 1).saturating_sub(MAX_PENDING);
        stale.extend(live.into_iter().take(excess).map(|(_, name)| name));
        stale
    }

    fn open_pending(&self, value: &str) -> Option<Pending> {
        let plain = self.sealer.open(cookie::LOGIN, value)?;
        serde_json::from_slice(&plain).ok()
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

    async fn callback<B>(
        &self,
        access: &Verifier,
        req: &Request<B>,
        now: u64,
    ) -> Result<Response<Body>, Callback> {
        let q = Form::parse(req.uri().query().unwrap_or("").as_bytes());
        let one = |name| q.one(name).map_err(|_| Callback::Malformed);
        if let Some(error) = one("error")? {
            return Err(Callback::Idp(sanitize(error)));
        }
        let (Some(state), Some(code)) = (one("state")?, one("code")?) else {
            return Err(Callback::Malformed);
        };
        let pending = cookie::read(req.headers(), &login_cookie(state))
            .and_then(|v| self.open_pending(v))
            .ok_or(Callback::NoLoginCookie)?;
        if pending.exp < now {
            return Err(Callback::Expired);
        }
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(Callback::State);
        }
        // Single use: the first callback with this state wins, a replay is refused.
        let fresh = self
            .used_states
            .entry(crate::secret::sha256(&[state.as_bytes()]))
            .or_insert(())
            .is_fresh();
        if !fresh {
            return Err(Callback::Replayed);
        }
        let tokens = self
            .client
            .user_grant(vec![
                ("grant_type", "authorization_code".into()),
                ("code", code.to_owned()),
                ("redirect_uri", self.settings.redirect_uri()),
                ("code_verifier", pending.verifier.clone()),
            ])
            .await
            .map_err(Callback::Token)?;
        let (session, _) = self
            .verify_tokens(access, &tokens, Some(&pending.nonce))
            .await?;
        let session = Session {
            stepped: pending.step_up.map(|k| (k, now)),
            ..session
        };
        // A new id at every sign-in (no session fixation); the old session, if any, ends.
        if let Some(old) = self.session_id(req.headers()) {
            self.sessions.remove(&old);
        }
        let id = self.sessions.insert(session);
        self.metrics.login("signed_in");
        info!("edge login: signed in");
        let mut rsp = redirect(&pending.return_to);
        let h = rsp.headers_mut();
        h.append(header::SET_COOKIE, self.clear(&login_cookie(state), "/"));
        h.append(
            header::SET_COOKIE,
            cookie::set(
                cookie::SESSION,
                &self.sealer.seal(cookie::SESSION, &id),
                "/",
                self.settings.session_ttl.as_secs(),
                self.settings.secure(),
            ),
        );
        Ok(rsp)
    }

    /// Checks a token response: the ID token (signature, `iss`, `aud`, `exp`, and `nonce` at
    /// sign-in, OIDC Core §3.1.3.7) and the access token (the inbound rules), same subject.
    async fn verify_tokens(
        &self,
        access: &Verifier,
        tokens: &Value,
        nonce: Option<&str>,
    ) -> Result<(Session, Arc<Verified>), Callback> {
        let field = |name: &str| tokens.get(name).and_then(Value::as_str).map(Token::new);
        let at = field("access_token").ok_or(Callback::BadToken("no access token"))?;
        let id_token = field("id_token").ok_or(Callback::BadToken("no ID token"))?;
        let id = self
            .id_verifier
            .verify(&id_token)
            .await
            .map_err(|e| Callback::Verify("ID token", e))?;
        if let Some(nonce) = nonce {
            let got = id.claims.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !constant_time_eq(got.as_bytes(), nonce.as_bytes()) {
                return Err(Callback::BadToken("ID token nonce mismatch"));
            }
        }
        let verified = access
            .verify(&at)
            .await
            .map_err(|e| Callback::Verify("access token", e))?;
        if id.claims.get("sub") != verified.claims.get("sub") {
            return Err(Callback::BadToken(
                "ID and access token name different users",
            ));
        }
        let session = Session {
            access: at,
            access_exp: verified.exp,
            id_token,
            refresh: field("refresh_token"),
            stepped: None,
        };
        Ok((session, verified))
    }

    // === sessions ===

    fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        let v = cookie::read(headers, cookie::SESSION)?;
        self.sealer.open(cookie::SESSION, v)?.try_into().ok()
    }

    /// The browser's live session and its access token, refreshed first when it expires within
    /// the skew. A failed refresh ends the session (the browser signs in again).
    pub async fn session(
        &self,
        access: &Verifier,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<(Browser, Token)> {
        let id = self.session_id(headers)?;
        let session = self.sessions.get(&id)?;
        let mut s = session.lock().await;
        if s.needs_refresh(now, self.settings.refresh_skew.as_secs()) {
            match self.refresh(access, &s).await {
                Ok(fresh) => {
                    *s = Session {
                        stepped: s.stepped.take(),
                        ..fresh
                    };
                    self.metrics.login("refreshed");
                }
                Err(e) => {
                    self.metrics.login("refresh_failed");
                    info!(reason = %e, "edge login: refresh failed; session ended");
                    drop(s);
                    self.sessions.remove(&id);
                    return None;
                }
            }
        }
        let token = s.access.clone();
        drop(s);
        Some((Browser { id, session }, token))
    }

    async fn refresh(&self, access: &Verifier, s: &Session) -> Result<Session, Callback> {
        let refresh = s
            .refresh
            .as_ref()
            .ok_or(Callback::BadToken("no refresh token"))?;
        let mut tokens = self
            .client
            .user_grant(vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh.expose().to_owned()),
            ])
            .await
            .map_err(Callback::Token)?;
        // OIDC Core §12.2: the ID token may be omitted on refresh; keep the old one then.
        if tokens.get("id_token").is_none()
            && let Some(obj) = tokens.as_object_mut()
        {
            obj.insert("id_token".into(), Value::String(s.id_token.expose().into()));
        }
        let (mut fresh, _) = self.verify_tokens(access, &tokens, None).await?;
        if fresh.refresh.is_none() {
            fresh.refresh = s.refresh.clone();
        }
        Ok(fresh)
    }

    /// Ends the browser's session after its token was refused by the inbound rules.
    pub fn forget(&self, b: &Browser) {
        self.sessions.remove(&b.id);
    }

    /// After the app answered a browser navigation with an RFC 9470 challenge: a redirect to
    /// step up at the IdP, or `None` when this session just stepped up for the same challenge
    /// (the loop bound: the app's 401 is shown).
    pub async fn step_up(
        &self,
        b: &Browser,
        c: &StepUp,
        cookies: &HeaderMap,
        return_to: &str,
        now: u64,
    ) -> Option<Response<Body>> {
        let s = b.session.lock().await;
        if s.just_stepped(&c.key(), now) {
            info!("edge login: step-up already done for this challenge; showing the app's 401");
            return None;
        }
        let hint = s.id_token.clone();
        drop(s);
        Some(self.start(cookies, return_to, Some((c, &hint)), now).await)
    }

    // === logout ===

    /// The live session named by the request's cookie.
    fn live_session(&self, headers: &HeaderMap) -> Option<SessionId> {
        self.session_id(headers)
            .filter(|id| self.sessions.get(id).is_some())
    }

    /// `GET /_baton/logout`: a page with a sign-out button (POST with a CSRF token). Never signs
    /// out by itself. Without a session there is nothing to end: back to the post-logout path.
    fn logout_page(&self, headers: &HeaderMap) -> Response<Body> {
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
    async fn logout<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        let id = self.session_id(req.headers());
        let allowed = self.same_origin(req.headers()) || {
            let form = read_limited(req.into_body(), MAX_LOGOUT_FORM)
                .await
                .unwrap_or_default();
            let form = Form::parse(&form);
            let opened = form
                .one("csrf")
                .ok()
                .flatten()
                .and_then(|t| self.sealer.open(cookie::LOGOUT, t));
            matches!((opened, &id), (Some(o), Some(id)) if constant_time_eq(&o, id))
        };
        if !allowed {
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
        let target = match self
            .endpoints()
            .await
            .and_then(|e| e.end_session_endpoint.clone())
        {
            Some(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("client_id", &self.client_id);
                    q.append_pair("id_token_hint", hint.expose());
                    q.append_pair(
                        "post_logout_redirect_uri",
                        &self.settings.post_logout_redirect_uri(),
                    );
                }
                url.to_string()
            }
            None => self.settings.post_logout_path.clone(),
        };
        self.signed_out(&target)
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

    fn clear(&self, name: &str, path: &str) -> HeaderValue {
        cookie::set(name, "", path, 0, self.settings.secure())
    }
}

/// Why a callback was refused. `Display` carries no token, code or state.
#[derive(Debug, thiserror::Error)]
enum Callback {
    #[error("the identity provider answered {0}")]
    Idp(String),
    #[error("the callback lacks state or code, or repeats them")]
    Malformed,
    #[error(
        "no sign-in with this state was started in this browser (missing, expired or unreadable login cookie)"
    )]
    NoLoginCookie,
    #[error("the sign-in took too long; start again")]
    Expired,
    #[error("state does not match the sign-in started in this browser")]
    State,
    #[error("this sign-in response was already used")]
    Replayed,
    #[error("the token endpoint refused: {0}")]
    Token(ExchangeError),
    #[error("{0} did not verify: {1}")]
    Verify(&'static str, VerifyFailure),
    #[error("{0}")]
    BadToken(&'static str),
}

impl Callback {
    fn status(&self) -> StatusCode {
        match self {
            Callback::Token(ExchangeError::Unavailable { .. }) => StatusCode::BAD_GATEWAY,
            Callback::Verify(_, VerifyFailure::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
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

/// An OAuth error code kept to its RFC 6749 §5.2 characters, safe to log and show.
fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// The pre-login cookie names start with this.
const LOGIN_PREFIX: &str = "baton-login-";

/// The pre-login cookie of the sign-in with `state`: [`LOGIN_PREFIX`] + 8 hex digits of its hash.
fn login_cookie(state: &str) -> String {
    let h = crate::secret::sha256(&[state.as_bytes()]);
    format!(
        "{LOGIN_PREFIX}{:02x}{:02x}{:02x}{:02x}",
        h[0], h[1], h[2], h[3]
    )
}
