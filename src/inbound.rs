//! Inbound listener: canonical path → bearer → verify → route rules → claims header → app.
//!
//! The path is made canonical before anything looks at it ([`crate::http::path`]): the reserved
//! `/_baton/` paths, the routes and the app all see that one spelling, or the request is
//! refused with 400. Phases are plain functions (`admit` decides whether a request passes,
//! [`rules`] is pure, [`forward`] does the I/O, `send` prepares the request the app gets,
//! `outcome` counts how each request ended); every refusal is a [`Reject`] mapped to a status and challenge in one `match`. The route
//! table, mode and app address live behind a swap (`active`) so a reload (SIGHUP or file
//! change) never drops a connection; with OpenTelemetry on, `trace` holds the spans' hooks.
//! A request that asks to switch protocols (a WebSocket handshake) is admitted like any other
//! and, once the app answers `101`, spliced to it ([`crate::http::upgrade`]). With
//! `app_protocol: http2` each request is a stream on one HTTP/2 connection to the app, bodies
//! and trailers streaming both ways; a gRPC call is refused in the form its client reads
//! ([`crate::http::grpc`]).

mod active;
mod admit;
pub mod browser;
pub mod dpop;
pub mod forward;
pub mod issuers;
pub mod login;
mod outcome;
pub mod peer;
pub mod reject;
pub mod rules;
mod send;
mod trace;
pub mod txn;

pub use active::{ReloadError, reload_from};
pub use reject::Reject;

use crate::config::login::RESERVED_PREFIX;
use crate::config::{Config, Mode, Route};
use crate::http::path::{self, PathRules};
use crate::http::{Body, BoxError};
use crate::jwt::jwks::{Jwks, LastToken, Verifier};
use crate::jwt::{Rules, Verified, unix_now};
use crate::server::{self, Drained, Limits};
use crate::telemetry::Metrics;
use active::Active;
use admit::Admitted;
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response};
use outcome::{forwarded, refused};
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::info;

/// Verified tokens kept in the cache at most.
const VERIFY_CACHE_CAPACITY: u64 = 100_000;

/// Time allowed to open a connection to the app.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The inbound listener's state.
pub struct Inbound {
    /// The primary issuer's verifier.
    verifier: Verifier,
    /// The foreign issuers' verifiers, each on its own key set.
    foreign: Vec<issuers::Foreign>,
    metrics: Arc<Metrics>,
    limits: Limits,
    active: RwLock<Arc<Active>>,
    /// Browser sign-in for `login: browser` routes, when `login:` is configured.
    login: Option<login::Login>,
    /// DPoP proofs: checks and the bounded replay store.
    dpop: crate::dpop::Verifier,
    /// The handles given to the app under `inbound.confine_token`, shared with the outbound side.
    handles: Option<Arc<crate::confine::Handles>>,
    /// The Transaction Token phase, when `txn_token:` is configured.
    txn: Option<txn::Phase>,
    /// Where spans go, when tracing is on.
    tracing: Option<Arc<crate::otel::Tracing>>,
    /// TLS on the listener, when `inbound.tls` is set.
    tls: Option<Arc<crate::tls::ReloadingAcceptor>>,
}

impl Inbound {
    /// Builds the listener state from `cfg`; `jwks` must have been started for `cfg.issuer`. The
    /// foreign issuers' key sets are started here, so this runs inside a Tokio runtime.
    ///
    /// Panics only when an HTTP client for the IdP cannot be built (no TLS backend), at start-up.
    pub fn new(cfg: &Config, jwks: Arc<Jwks>, metrics: Arc<Metrics>) -> Inbound {
        let mut rules = Rules::access(cfg.issuer.clone(), cfg.audience.clone());
        rules.algorithms = cfg.algorithms.clone();
        rules.leeway = cfg.leeway;
        let login = cfg.login.as_ref().map(|l| {
            login::Login::new(l, &cfg.issuer, &cfg.outbound, jwks.clone(), metrics.clone())
                .expect("the edge login client builds (rustls, issuer set)")
        });
        let txn = txn::Phase::new(cfg, jwks.clone(), metrics.clone())
            .expect("the Txn-Token client builds (rustls, issuer set)");
        let foreign = issuers::start(cfg, &metrics).expect("the JWKS clients build (rustls)");
        Inbound {
            foreign,
            login,
            dpop: crate::dpop::Verifier::new(cfg.dpop.window, cfg.dpop.replay_capacity),
            handles: None,
            tracing: None,
            tls: None,
            txn,
            verifier: Verifier::new(jwks, rules, VERIFY_CACHE_CAPACITY, metrics.clone()),
            limits: cfg.limits.clone(),
            active: RwLock::new(Arc::new(Active::new(cfg, &metrics, None))),
            metrics,
        }
    }

    /// Traces every request into `tracing` (module [`crate::otel`]).
    pub fn with_tracing(mut self, tracing: Arc<crate::otel::Tracing>) -> Self {
        self.tracing = Some(tracing);
        self
    }

    /// Serves the listener over TLS with `tls` (`inbound.tls`); without it, plain TCP.
    pub fn with_tls(mut self, tls: crate::tls::ReloadingAcceptor) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Shares `handles` with the outbound side: `inbound.confine_token` gives the app handles
    /// from it (without a store the token itself goes on).
    pub fn with_handles(mut self, handles: Arc<crate::confine::Handles>) -> Self {
        self.handles = Some(handles);
        self
    }

    /// The key set of the foreign issuer named `name`.
    pub fn foreign_jwks(&self, name: &str) -> Option<&Arc<Jwks>> {
        self.foreign
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.verifier.jwks())
    }

    /// The active configuration, secrets redacted, as JSON (for the admin `/config`).
    pub fn config(&self) -> serde_json::Value {
        self.active().config.redacted.clone()
    }

    /// Whether the admin `/config` answers clients that are not on loopback
    /// (`admin.expose_config`; reloadable).
    pub fn expose_config(&self) -> bool {
        self.active().config.admin.expose_config
    }

    fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serves the inbound listener on an already bound `listener` until `shutdown` resolves: over
/// TLS when the state has it ([`Inbound::with_tls`]), each connection's verified peer
/// ([`peer::Peer`]) then handed to its requests.
pub async fn serve(
    state: Arc<Inbound>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let limits = state.limits.clone();
    let tls = state.tls.clone();
    let per_connection = move |info: server::ConnInfo, tls_peer: Option<peer::Peer>| {
        let peer = state.txn.as_ref().is_some_and(txn::Phase::wants_peer);
        let conn = Arc::new((state.clone(), LastToken::default()));
        move |mut req: Request<hyper::body::Incoming>| {
            if peer {
                req.extensions_mut().insert(info);
            }
            // A connection kept open past its client certificate's end has no peer any more.
            if let Some(p) = tls_peer.as_ref().filter(|p| p.valid_at(unix_now())) {
                req.extensions_mut().insert(p.clone());
            }
            let conn = conn.clone();
            async move { handle_on(&conn.0, &conn.1, req).await }
        }
    };
    match tls {
        None => {
            let make = move |info| per_connection(info, None);
            server::serve_each(listener, limits, make, shutdown).await
        }
        Some(tls) => {
            let make = move |info, conn: &rustls::ServerConnection| {
                per_connection(info, peer::Peer::of(conn))
            };
            server::serve_tls_each(listener, move || tls.current(), limits, make, shutdown).await
        }
    }
}

/// Handles one request without a socket, as if it came on a connection of its own.
pub async fn handle<B>(s: &Inbound, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    handle_on(s, &LastToken::default(), req).await
}

/// Handles one request that came on the connection `last` belongs to, phase by phase: the
/// canonical path, the sidecar's reserved paths, the route, the browser session
/// ([`browser::before`]), admission ([`admit::admit`]) and what the mode makes of it
/// ([`under_mode`]), the Transaction Token, the app, then a step-up the app asked for
/// ([`step_up_instead`]); a refusal at any phase is answered by [`browser::refuse`].
/// No `tracing` span: an instrumented future is one more move of this kilobytes-large one per
/// request; the events name the method themselves, and at the default `info` level a request
/// that passes logs nothing. With OpenTelemetry on, the request runs in a boxed future of its
/// own ([`trace::traced`]).
pub async fn handle_on<B>(s: &Inbound, last: &LastToken, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    match &s.tracing {
        None => handle_plain::<B, false>(s, last, req).await,
        Some(t) => Box::pin(trace::traced(s, t, last, req)).await,
    }
}

/// [`handle_on`]; `TRACED`: a span is current, and the hooks annotate it.
async fn handle_plain<B, const TRACED: bool>(
    s: &Inbound,
    last: &LastToken,
    mut req: Request<B>,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let active = s.active();
    let cfg = &active.config;
    let grpc = crate::http::grpc::is_grpc(req.headers());
    if let Err(reject) = canonical_path(&cfg.inbound.paths, &mut req) {
        refused::<TRACED>(s, "none", reject.outcome());
        info!(method = %req.method(), outcome = reject.outcome(), reason = %reject, "refused");
        return reject.answer(&cfg.audience, &active.hint, grpc);
    }
    let now = unix_now();
    let method = req.method().clone();
    if let Some(l) = &s.login
        && req.uri().path().starts_with(RESERVED_PREFIX)
    {
        return Box::pin(l.reserved(&s.verifier, req, now)).await;
    }
    let found = rules::find_route(&cfg.routes, req.method(), req.uri().path());
    let route = found.map(|(_, r)| r);
    let name = route.map_or("none", |r| r.name.as_str());
    let navigation = match browser_session::<B, TRACED>(s, route, name, &mut req, now).await {
        Ok(n) => n,
        Err(rsp) => return rsp,
    };
    let verdict = admit::admit::<B, TRACED>(s, last, route, cfg, &req, now).await;
    // A proof is for this hop only.
    req.headers_mut().remove(crate::dpop::HEADER);
    let (claims, outcome) = match under_mode(verdict, cfg.mode, &method, name) {
        Ok(passed) => passed,
        Err(reject) => {
            let ctx = browser::Refusal {
                s,
                active: &active,
                navigation: navigation.as_ref(),
                grpc,
                now,
            };
            // Boxed: a refusal's future would size every request's.
            return Box::pin(refuse_admission::<TRACED>(ctx, &method, name, reject)).await;
        }
    };
    if let Some(t) = &s.txn
        && let Err(e) = Box::pin(t.run(&mut req, claims.as_deref(), cfg.mode)).await
    {
        refused::<TRACED>(s, name, e.outcome());
        info!(%method, route = name, outcome = e.outcome(), reason = %e, "refused");
        return e.into_response(&cfg.audience);
    }
    let sent = send::send::<B, TRACED>(s, &active, claims.as_deref(), req).await;
    if TRACED {
        trace::app_done(sent.as_ref().map(|r| r.status().as_u16()).ok());
    }
    let rsp = match sent {
        Ok(rsp) => rsp,
        Err(reject) => {
            refused::<TRACED>(s, name, reject.outcome());
            return reject.answer(&cfg.audience, &active.hint, grpc);
        }
    };
    forwarded::<TRACED>(s, &active, found, name, outcome, &method, rsp.status());
    let redirect = step_up_instead(s, navigation.as_ref(), &rsp, now).await;
    redirect.unwrap_or(rsp)
}

/// The browser-session phase, for a sidecar with `login:` configured ([`browser::before`]): the
/// navigation a session carries, if any; `Err` is the answer to send instead (the redirect to
/// sign in), counted on `route` (`name`) as `login`.
async fn browser_session<B, const TRACED: bool>(
    s: &Inbound,
    route: Option<&Route>,
    name: &str,
    req: &mut Request<B>,
    now: u64,
) -> Result<Option<browser::Navigation>, Response<Body>> {
    let Some(l) = &s.login else {
        return Ok(None);
    };
    // Boxed: rare, and its future would size every request's.
    let navigation = Box::pin(browser::before(s, l, route, req, now)).await;
    if navigation.is_err() {
        refused::<TRACED>(s, name, "login");
    }
    navigation
}

/// What the mode makes of admission's verdict on a request to `method` on `route`: a request
/// that passed goes on with its token's claims (`None` on a public route) and no refusal. A
/// refused one is refused in enforce mode (`Err`); in observe mode it goes on with the claims
/// verification gave, if it got that far, and the outcome word of the refusal it forwards
/// anyway (logged here).
fn under_mode(
    verdict: Result<Admitted, admit::Denied>,
    mode: Mode,
    method: &Method,
    route: &str,
) -> Result<(Option<Arc<Verified>>, Option<&'static str>), Reject> {
    match (verdict, mode) {
        (Ok(Admitted::Public), _) => Ok((None, None)),
        (Ok(Admitted::Token(v)), _) => Ok((Some(v), None)),
        (Err(denied), Mode::Enforce) => Err(denied.reject),
        (Err(denied), Mode::Observe) => {
            let reject = denied.reject;
            info!(%method, route, outcome = reject.outcome(), reason = %reject, "observe mode: forwarding anyway");
            Ok((denied.verified, Some(reject.outcome())))
        }
    }
}

/// The answer to a request enforce mode refuses after admission, on `route`: counted, logged,
/// and answered by [`browser::refuse`].
async fn refuse_admission<const TRACED: bool>(
    ctx: browser::Refusal<'_>,
    method: &Method,
    route: &str,
    reject: Reject,
) -> Response<Body> {
    refused::<TRACED>(ctx.s, route, reject.outcome());
    info!(%method, route, outcome = reject.outcome(), reason = %reject, "refused");
    browser::refuse(ctx, reject).await
}

/// After the app answered a browser navigation with an RFC 9470 challenge, the redirect to
/// step up that the client gets instead of `rsp` ([`browser::Navigation::answered`]); `None`
/// to pass the app's answer on.
async fn step_up_instead(
    s: &Inbound,
    navigation: Option<&browser::Navigation>,
    rsp: &Response<Body>,
    now: u64,
) -> Option<Response<Body>> {
    match (&s.login, navigation) {
        (Some(l), Some(n)) => Box::pin(n.answered(l, rsp, now)).await,
        _ => None,
    }
}

/// The first phase: the request's path made canonical ([`crate::http::path`]), in observe mode
/// too. A canonical path is left as it is (no allocation); another is replaced, the query kept;
/// a path without a canonical form is refused.
fn canonical_path<B>(rules: &PathRules, req: &mut Request<B>) -> Result<(), Reject> {
    let path = match path::canonical(req.uri().path(), rules) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(p)) => p,
        Err(e) => return Err(Reject::BadPath(e)),
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    let target = match parts.path_and_query.as_ref().and_then(|pq| pq.query()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    // The canonical form holds only characters a path may carry: these cannot fail.
    parts.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| Reject::Internal)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Reject::Internal)?;
    Ok(())
}

#[cfg(test)]
mod tests;
