//! Inbound listener: canonical path → bearer → verify → route rules → claims header → app.
//!
//! The path is made canonical before anything looks at it ([`crate::http::path`]): the reserved
//! `/_baton/` paths, the routes and the app all see that one spelling, or the request is
//! refused with 400. Phases are plain functions ([`rules`] is pure, [`forward`] does the I/O);
//! every refusal is a [`Reject`] mapped to a status and challenge in one `match`. The route table, mode and app
//! address live behind a swap so a reload (SIGHUP or file change) never drops a connection.
//! A request that asks to switch protocols (a WebSocket handshake) is admitted like any other
//! and, once the app answers `101`, spliced to it ([`crate::http::upgrade`]). With
//! `app_protocol: http2` each request is a stream on one HTTP/2 connection to the app, bodies
//! and trailers streaming both ways; a gRPC call is refused in the form its client reads
//! ([`crate::http::grpc`]).

pub mod browser;
pub mod dpop;
pub mod forward;
pub mod issuers;
pub mod login;
pub mod reject;
pub mod rules;
pub mod txn;

pub use reject::Reject;

use crate::config::login::RESERVED_PREFIX;
use crate::config::{AppProtocol, Config, ConfigErrors, DpopMode, Mode, Route};
use crate::http::path::{self, PathRules};
use crate::http::pool::Pool;
use crate::http::pool::h2::H2Pool;
use crate::http::{Body, BoxError};
use crate::jwt::jwks::{Jwks, LastToken, Verifier, VerifyFailure};
use crate::jwt::{Rules, Verified, unix_now};
use crate::server::{self, Drained, Limits};
use crate::telemetry::{Metrics, Outcome};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

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
}

/// The part of the configuration a reload may change.
struct Active {
    config: Config,
    hint: String,
    /// `config.app` as a URI authority, made once rather than formatted per request.
    app_authority: http::uri::Authority,
    /// Keep-alive connections to `config.app`, kept across reloads that keep the address.
    app: Arc<Pool>,
    /// The HTTP/2 connection to `config.app` when `app_protocol: http2`, kept across reloads
    /// that keep the address and the protocol.
    app_h2: Option<Arc<H2Pool>>,
    /// Per route (same order as `config.routes`), the counter of the requests it forwards
    /// (`outcome="allowed"`, or `"public"`), looked up once: a forwarded request hashes no labels.
    forwarded: Vec<Counter>,
}

impl Active {
    fn new(config: &Config, metrics: &Metrics, previous: Option<&Active>) -> Self {
        let hint = format!(
            "This service requires an access token for audience \"{aud}\" from {iss}.\n\
             Send it as `Authorization: Bearer <token>` (RFC 6750 §2.1).\n\
             Get one from the token endpoint listed at {disco}, e.g. with client_credentials\n\
             or the authorization code flow; tokens in the query string are refused.\n",
            aud = config.audience,
            iss = config.issuer,
            disco = format_args!(
                "{}/.well-known/openid-configuration",
                config.issuer.trim_end_matches('/')
            ),
        );
        let app_authority = http::uri::Authority::try_from(config.app.to_string())
            .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1"));
        let forwarded = config
            .routes
            .iter()
            .map(|r| metrics.inbound_counter(&r.name, passing_outcome(r)))
            .collect();
        let app_h2 = match (config.inbound.app_protocol, previous) {
            (AppProtocol::Http1, _) => None,
            (AppProtocol::Http2, Some(p))
                if p.config.app == config.app
                    && p.app_h2.as_ref().map(|h| h.idle()) == Some(config.limits.idle_timeout) =>
            {
                p.app_h2.clone()
            }
            // A connection to the app with no stream in flight closes after `idle_timeout`, as
            // the listener's own connections do.
            (AppProtocol::Http2, _) => H2Pool::new(
                config.app.to_string(),
                APP_CONNECT_TIMEOUT,
                config.limits.idle_timeout,
            )
            .map(Arc::new),
        };
        Self {
            config: config.clone(),
            hint,
            app_authority,
            forwarded,
            app_h2,
            app: match previous {
                Some(p) if p.config.app == config.app => p.app.clone(),
                _ => Arc::new(Pool::new(config.app.to_string(), APP_CONNECT_TIMEOUT)),
            },
        }
    }
}

/// The outcome a request that `route` forwards is counted under.
fn passing_outcome(route: &Route) -> &'static str {
    match route.access {
        crate::config::Access::Public => "public",
        crate::config::Access::Token(_) => "allowed",
    }
}

/// Why a new configuration was not applied; the old one stays active.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid.
    #[error("reload refused: {0}")]
    Invalid(#[from] ConfigErrors),
    /// The change touches something only a restart applies.
    #[error("reload refused: {0} changed; restart the sidecar to apply it")]
    NeedsRestart(&'static str),
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

    /// Applies a new configuration: routes, mode, claims header, the `inbound:` path and header
    /// rules, `admin.expose_config` and app address change at once for new requests; in-flight
    /// requests finish with the old ones. Issuers, audience, algorithms, leeway, JWKS settings,
    /// listeners and limits need a restart; which issuers a route accepts is a route rule.
    pub fn reload(&self, cfg: &Config) -> Result<(), ReloadError> {
        let previous = self.active();
        let old = &previous.config;
        let fixed: [(&'static str, bool); 11] = [
            (
                "dpop.window or dpop.replay_capacity",
                (old.dpop.window, old.dpop.replay_capacity)
                    != (cfg.dpop.window, cfg.dpop.replay_capacity),
            ),
            ("txn_token", old.txn_token != cfg.txn_token),
            ("login", old.login != cfg.login),
            ("issuer", old.issuer != cfg.issuer),
            ("audience", old.audience != cfg.audience),
            ("algorithms", old.algorithms != cfg.algorithms),
            ("leeway", old.leeway != cfg.leeway),
            ("jwks", old.jwks != cfg.jwks),
            // The primary's settings are the ones above; its name is a route label.
            ("issuers", old.issuers.get(1..) != cfg.issuers.get(1..)),
            ("listeners", old.listeners != cfg.listeners),
            (
                "limits",
                format!("{:?}", old.limits) != format!("{:?}", cfg.limits),
            ),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(ReloadError::NeedsRestart(field));
        }
        *self.active.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Active::new(cfg, &self.metrics, Some(&previous)));
        Ok(())
    }

    fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serves the inbound listener on an already bound `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<Inbound>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let limits = state.limits.clone();
    let per_connection = move |info: server::ConnInfo| {
        let peer = state.txn.as_ref().is_some_and(txn::Phase::wants_peer);
        let conn = Arc::new((state.clone(), LastToken::default()));
        move |mut req: Request<hyper::body::Incoming>| {
            if peer {
                req.extensions_mut().insert(info);
            }
            let conn = conn.clone();
            async move { handle_on(&conn.0, &conn.1, req).await }
        }
    };
    server::serve_each(listener, limits, per_connection, shutdown).await
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
/// ([`browser::before`]), admission ([`admit`]), the Transaction Token, then the app; a refusal
/// at any phase is answered by [`refuse`].
/// No `tracing` span: an instrumented future is one more move of this kilobytes-large one per
/// request; the events name the method themselves, and at the default `info` level a request
/// that passes logs nothing. With OpenTelemetry on, the request runs in a boxed future of its
/// own ([`traced`]).
pub async fn handle_on<B>(s: &Inbound, last: &LastToken, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    match &s.tracing {
        None => handle_plain::<B, false>(s, last, req).await,
        Some(t) => Box::pin(traced(s, t, last, req)).await,
    }
}

/// One request under its OpenTelemetry span `inbound` (a server span continuing the caller's
/// `traceparent`, or a new trace), which the handler's hooks annotate.
async fn traced<B>(
    s: &Inbound,
    t: &Arc<crate::otel::Tracing>,
    last: &LastToken,
    req: Request<B>,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    use crate::otel::FutureExt as _;
    use opentelemetry::KeyValue;
    let parent = crate::otel::extract(req.headers());
    // No `url.path`: a path can carry what a token would (a reset link, a signed URL); the
    // route's name (`baton.route`) says which rule the request met.
    let attributes = vec![KeyValue::new(
        "http.request.method",
        req.method().as_str().to_owned(),
    )];
    let cx = t
        .start_span(
            "inbound",
            opentelemetry::trace::SpanKind::Server,
            &parent,
            attributes,
        )
        .with_value(AppSpan(std::sync::Mutex::new(None)));
    let rsp = handle_plain::<B, true>(s, last, req)
        .with_context(cx.clone())
        .await;
    crate::otel::end(&cx, Some(rsp.status().as_u16()), true);
    rsp
}

/// The request's `baton.route`, `baton.outcome` and, for a refusal, `baton.refusal.reason`
/// on the current span.
fn note_outcome(route: &str, outcome: &'static str, refused: bool) {
    use opentelemetry::KeyValue;
    crate::otel::note(KeyValue::new("baton.route", route.to_owned()));
    crate::otel::note(KeyValue::new("baton.outcome", outcome));
    let verdict = if refused { "refused" } else { "forwarded" };
    crate::otel::note(KeyValue::new("baton.verdict", verdict));
    if refused {
        crate::otel::note(KeyValue::new("baton.refusal.reason", outcome));
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
        if TRACED {
            note_outcome("none", reject.outcome(), true);
        }
        s.metrics.inbound("none", reject.outcome());
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
    let navigation = match &s.login {
        // Boxed: rare, and its future would size every request's.
        Some(l) => match Box::pin(browser::before(s, l, route, &mut req, now)).await {
            Ok(n) => n,
            Err(rsp) => {
                if TRACED {
                    note_outcome(name, "login", true);
                }
                s.metrics.inbound(name, "login");
                return rsp;
            }
        },
        None => None,
    };
    let verdict = admit::<B, TRACED>(s, last, route, cfg, &req, now).await;
    // A proof is for this hop only.
    req.headers_mut().remove(crate::dpop::HEADER);
    // `outcome`: the refusal observe mode forwards anyway; `None` for a request that passed.
    let (claims, outcome) = match (verdict, cfg.mode) {
        (Ok(Admitted::Public), _) => (None, None),
        (Ok(Admitted::Token(v)), _) => (Some(v), None),
        (Err(denied), Mode::Enforce) => {
            if TRACED {
                note_outcome(name, denied.reject.outcome(), true);
            }
            s.metrics.inbound(name, denied.reject.outcome());
            info!(method = %req.method(), route = name, outcome = denied.reject.outcome(), reason = %denied.reject, "refused");
            let ctx = Refusal {
                s,
                active: &active,
                navigation: navigation.as_ref(),
                grpc,
                now,
            };
            return Box::pin(refuse(ctx, denied.reject)).await;
        }
        (Err(denied), Mode::Observe) => {
            info!(method = %req.method(), route = name, outcome = denied.reject.outcome(), reason = %denied.reject, "observe mode: forwarding anyway");
            (denied.verified, Some(denied.reject.outcome()))
        }
    };
    if let Some(t) = &s.txn
        && let Err(e) = Box::pin(t.run(&mut req, claims.as_deref(), cfg.mode)).await
    {
        if TRACED {
            note_outcome(name, e.outcome(), true);
        }
        s.metrics.inbound(name, e.outcome());
        info!(method = %req.method(), route = name, outcome = e.outcome(), reason = %e, "refused");
        return e.into_response(&cfg.audience);
    }
    let sent = send::<B, TRACED>(s, &active, claims.as_deref(), req).await;
    if TRACED {
        app_done(sent.as_ref().map(|r| r.status().as_u16()).ok());
    }
    let rsp = match sent {
        Ok(rsp) => rsp,
        Err(reject) => {
            if TRACED {
                note_outcome(name, reject.outcome(), true);
            }
            s.metrics.inbound(name, reject.outcome());
            return reject.answer(&cfg.audience, &active.hint, grpc);
        }
    };
    // `None`: the route's passing outcome, counted without a label lookup.
    let passing = || route.map_or("allowed", passing_outcome);
    if TRACED {
        note_outcome(name, outcome.unwrap_or_else(passing), false);
    }
    match (outcome, found) {
        (None, Some((i, _))) => {
            active.forwarded[i].inc();
        }
        (outcome, _) => s.metrics.inbound(name, outcome.unwrap_or_else(passing)),
    }
    debug!(
        %method,
        route = name,
        outcome = outcome.unwrap_or_else(passing),
        status = rsp.status().as_u16(),
        "forwarded"
    );
    if let (Some(l), Some(n)) = (&s.login, &navigation)
        && let Some(redirect) = Box::pin(n.answered(l, &rsp, now)).await
    {
        return redirect;
    }
    rsp
}

/// What [`refuse`] needs of the request it answers.
struct Refusal<'a> {
    s: &'a Inbound,
    active: &'a Active,
    navigation: Option<&'a browser::Navigation>,
    grpc: bool,
    now: u64,
}

/// The answer to a request refused in enforce mode: the standard refusal, or on a browser
/// navigation the sign-in or step-up that [`browser::Navigation::refused`] makes of it.
async fn refuse(ctx: Refusal<'_>, reject: Reject) -> Response<Body> {
    if let (Some(l), Some(n)) = (&ctx.s.login, ctx.navigation)
        && let Some(rsp) = n.refused(l, &reject, ctx.now).await
    {
        return rsp;
    }
    let active = ctx.active;
    reject.answer(&active.config.audience, &active.hint, ctx.grpc)
}

/// The last phase: the request prepared ([`prepare`]) and sent to the app over the pool its
/// protocol uses, or spliced when it switches protocols. `TRACED`: the `app` span starts here
/// and its context goes to the app.
async fn send<B, const TRACED: bool>(
    s: &Inbound,
    active: &Active,
    claims: Option<&Verified>,
    req: Request<B>,
) -> Result<Response<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if crate::http::upgrade::marked(&req) {
        // Boxed: rare, and its future would size every request's.
        return Box::pin(send_marked(s, active, claims, req)).await;
    }
    // Prepared here and sent by one future: see `Pool::send` on why not an `async fn`.
    let prepared = match prepare(s, active, claims, req) {
        Ok(mut req) if TRACED => {
            let method = req.method().as_str().to_owned();
            app_span(claims, method, req.headers_mut());
            Ok(req)
        }
        other => other,
    };
    match (prepared, &active.app_h2) {
        // Boxed: its future would size every HTTP/1.1 request's.
        (Ok(req), Some(h2)) => Box::pin(forward::to_app_h2(h2, req)).await,
        (Ok(req), None) => forward::to_app(&active.app, req).await,
        (Err(reject), _) => Err(reject),
    }
}

/// The slot of the current inbound span's `app` child, between its start and its end.
struct AppSpan(std::sync::Mutex<Option<opentelemetry::Context>>);

/// Starts the `app` client span (child of the current `inbound` span), puts its context in
/// `headers` as `traceparent` / `tracestate` for the app to continue, and notes the user
/// (`enduser.id`, a hash) on the inbound span.
fn app_span(verified: Option<&Verified>, method: String, headers: &mut http::HeaderMap) {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TraceContextExt as _;
    if let Some(sub) = verified.and_then(|v| v.claims.get("sub")?.as_str()) {
        crate::otel::note(crate::otel::enduser(sub));
    }
    let Some(cx) = crate::otel::child("app", opentelemetry::trace::SpanKind::Client, Vec::new())
    else {
        return;
    };
    cx.span()
        .set_attribute(KeyValue::new("http.request.method", method));
    crate::otel::inject(&cx, headers);
    opentelemetry::Context::map_current(|current| {
        if let Some(slot) = current.get::<AppSpan>() {
            *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx);
        }
    });
}

/// Ends the `app` span with the app's status (`None`: the app could not be reached).
fn app_done(status: Option<u16>) {
    opentelemetry::Context::map_current(|current| {
        let taken = current
            .get::<AppSpan>()
            .and_then(|slot| slot.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(cx) = taken {
            crate::otel::end(&cx, status, false);
        }
    });
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

/// A request that may pass.
enum Admitted {
    Public,
    Token(Arc<Verified>),
}

/// A refusal, with the verified token when verification itself succeeded (observe mode forwards
/// its claims).
struct Denied {
    reject: Reject,
    verified: Option<Arc<Verified>>,
}

impl From<Reject> for Denied {
    fn from(reject: Reject) -> Self {
        Denied {
            reject,
            verified: None,
        }
    }
}

async fn admit<B, const TRACED: bool>(
    s: &Inbound,
    last: &LastToken,
    route: Option<&Route>,
    cfg: &Config,
    req: &Request<B>,
    now: u64,
) -> Result<Admitted, Denied> {
    rules::refuse_query_token(req.uri().query())?;
    let route = route.ok_or(Reject::NoRoute)?;
    if route.access == crate::config::Access::Public {
        return Ok(Admitted::Public);
    }
    let (scheme, presented) = rules::presented(req.headers())?;
    let verifier = if s.foreign.is_empty() {
        &s.verifier
    } else {
        let token = rules::b64token(presented)?;
        issuers::pick(&s.verifier, &s.foreign, cfg, route, token.expose())?
    };
    let verified = match verifier.remembered(presented, last, now) {
        Some(hit) => {
            if TRACED {
                crate::otel::note(opentelemetry::KeyValue::new("baton.token.cache", "hit"));
            }
            hit
        }
        None => {
            if TRACED {
                crate::otel::note(opentelemetry::KeyValue::new("baton.token.cache", "miss"));
            }
            let token = rules::b64token(presented)?;
            verifier
                .verify_remember(&token, last)
                .await
                .map_err(|e| match e {
                    VerifyFailure::Token(e) => Reject::InvalidToken(e),
                    VerifyFailure::KeysUnavailable => Reject::KeysUnavailable,
                })?
        }
    };
    let mode = route.dpop.unwrap_or(cfg.dpop.mode);
    if verified.bound || scheme == rules::Scheme::Dpop || mode != DpopMode::Off {
        let claims = &verified.claims;
        dpop::admit(
            &s.dpop, &cfg.dpop, mode, scheme, presented, claims, req, now,
        )?;
    }
    match rules::authorize(&route.access, &verified.claims, now) {
        Ok(()) => Ok(Admitted::Token(verified)),
        Err(reject) => Err(Denied {
            reject,
            verified: Some(verified),
        }),
    }
}

/// Sends a request hyper marked as one that may ask to switch protocols: when it does ask
/// ([`crate::http::upgrade::asked`]), the ask goes to the app again and a `101` splices
/// ([`forward::switch`]); otherwise it goes as any request.
async fn send_marked<B>(
    s: &Inbound,
    active: &Active,
    verified: Option<&Verified>,
    req: Request<B>,
) -> Result<Response<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let upgrade = crate::http::upgrade::asked(&req);
    let mut req = prepare(s, active, verified, req)?;
    if upgrade.is_empty() {
        return forward::to_app(&active.app, req).await;
    }
    // Removed with the other hop-by-hop headers; this hop forwards the ask.
    crate::http::upgrade::ask_again(req.headers_mut(), upgrade);
    forward::switch(&active.app, req, s.limits.idle_timeout).await
}

/// The request as the app gets it: size checked, `Host` set, identity headers rewritten, body
/// limited.
fn prepare<B>(
    s: &Inbound,
    active: &Active,
    verified: Option<&Verified>,
    req: Request<B>,
) -> Result<Request<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let limit = s.limits.max_body_bytes;
    let declared = parts.headers.get(http::header::CONTENT_LENGTH);
    if declared
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return Err(Reject::BodyTooLarge(limit));
    }
    // HTTP/2 carries the host in :authority; the app speaks HTTP/1.1 and needs Host. A request
    // with neither gets the app's own `host:port`.
    if let http::header::Entry::Vacant(host) = parts.headers.entry(http::header::HOST) {
        let authority = parts.uri.authority().unwrap_or(&active.app_authority);
        host.insert(http::HeaderValue::from_str(authority.as_str()).map_err(|_| Reject::Internal)?);
    }
    let claims = match verified {
        Some(v) => Some(v.claims_header().ok_or(Reject::Internal)?),
        None => None,
    };
    let cfg = &active.config;
    // `TE: trailers` is hop-by-hop, yet an HTTP/2 app (gRPC) is told by it that the client takes
    // trailers: it is asked again on that hop when the client asked.
    let trailers = active.app_h2.is_some() && crate::http::asks_trailers(&parts.headers);
    forward::rewrite_headers(
        &mut parts.headers,
        &cfg.claims_header,
        claims,
        cfg.inbound.drop_underscore_headers,
    );
    if cfg.inbound.confine_token {
        // The app never holds a usable token: a verified one becomes a handle, and any other
        // (a public route's, one observe mode forwards unverified) does not reach it.
        match (
            &s.handles,
            verified,
            parts.headers.get(http::header::AUTHORIZATION),
        ) {
            (Some(handles), Some(v), Some(auth)) => {
                let handle = handles.issue(auth, v.exp).ok_or(Reject::Internal)?;
                parts.headers.insert(http::header::AUTHORIZATION, handle);
            }
            _ => {
                parts.headers.remove(http::header::AUTHORIZATION);
            }
        }
    }
    if trailers {
        parts
            .headers
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    txn::finish(&mut parts.headers, &mut parts.extensions);
    // A gRPC call to an HTTP/2 app is a stream of messages that may run long: the limit is per
    // message. Anything else (an HTTP/1.1 body that only says it is gRPC) has the total limit.
    let body = if active.app_h2.is_some()
        && parts.version == http::Version::HTTP_2
        && crate::http::grpc::is_grpc(&parts.headers)
    {
        let limited = crate::http::grpc::MessageLimit::new(body.map_err(Into::into).boxed(), limit);
        parts.extensions.insert(limited.tripped());
        limited.boxed()
    } else {
        Limited::new(body, limit).boxed()
    };
    Ok(Request::from_parts(parts, body))
}

// === reload ===

/// Reloads `path` into `state`, counting and logging the result; the old config stays on error.
pub fn reload_from(state: &Inbound, path: &Path) -> Result<(), ReloadError> {
    let result = Config::load(path)
        .map_err(ReloadError::from)
        .and_then(|cfg| state.reload(&cfg));
    let outcome = if result.is_ok() { "ok" } else { "error" };
    state
        .metrics
        .config_reloads
        .get_or_create(&Outcome { outcome })
        .inc();
    match &result {
        Ok(()) => info!(file = %path.display(), "configuration reloaded"),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "configuration reload refused; keeping the old one")
        }
    }
    result
}

#[cfg(test)]
mod tests;
