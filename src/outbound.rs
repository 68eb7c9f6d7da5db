//! Outbound listener: forward proxy and upstream ports → route → exchange → forward.
//!
//! Phases of one call, each a plain function: find the destination and its route (unknown hosts
//! are refused unless `unknown: passthrough`), take the subject from `Authorization: Bearer`,
//! get a token for the route's target from the cache or the IdP, REPLACE `Authorization`, drop
//! hop-by-hop headers and forward. An upstream 401 `invalid_token` drops the cached token and,
//! for a body-less idempotent request, retries once with a fresh exchange.
//!
//! `CONNECT` is refused unless `connect: passthrough`, which opens a blind TCP tunnel: nothing in
//! it is seen or rewritten, so TLS traffic through it carries whatever the app sent. A routed
//! request that asks to switch protocols (a WebSocket handshake) gets its token like any other
//! and, once the upstream answers `101`, is spliced to it ([`crate::http::upgrade`]).
//!
//! Everything the configuration shapes lives in one state that a reload replaces at once
//! ([`Outbound::prepare`], [`Outbound::install`]); each request runs on the state it started with.

mod forward;
mod reject;
mod state;

pub use state::{Outbound, Staged};

use crate::config::outbound::{Policy, Route, WithoutSubject};
use crate::exchange::cache::LastKey;
use crate::exchange::{ExchangeError, Issued};
use crate::http::{Body, BoxError};
use crate::server::{self, ConnInfo, Drained, Limits};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use reject::Reject;
use state::Active;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why the outbound state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The exchange client could not be built (no token endpoint, no issuer).
    #[error("outbound exchange client: {0}")]
    Exchange(#[from] ExchangeError),
    /// A route's `tls.ca_file` could not be read, or holds no certificate.
    #[error("outbound TLS roots in {}", path.display())]
    TlsRoots {
        /// The `tls.ca_file`.
        path: std::path::PathBuf,
        /// Why its certificates could not be used.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A route's `tls.cert_file` and `tls.key_file` could not be loaded as a pair.
    #[error("outbound client certificate")]
    ClientCert(#[source] crate::tls::TlsError),
    /// rustls refused the client configuration.
    #[error("outbound TLS configuration")]
    TlsConfig(#[source] rustls::Error),
}

/// Why a new outbound configuration was not applied; the old one stays active.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The change touches something only a restart applies.
    #[error("{0} changed; restart the sidecar to apply it")]
    NeedsRestart(String),
    /// The new state could not be built (a CA file unreadable, no token endpoint).
    #[error(transparent)]
    Build(#[from] Error),
}

/// Serves the forward-proxy listener (`HTTP_PROXY`) until `shutdown`, then drains. Connections
/// that `baton init-net` redirected here carry their original destination: an origin-form
/// request on one is routed by its `Host` header (the port the app dialed when `Host` names none)
/// as if it had been sent through the proxy.
pub async fn serve(
    state: Arc<Outbound>,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    info!(addr = ?listener.local_addr().ok(), "outbound proxy listening");
    let arrival = |conn: ConnInfo| match conn.original_dst {
        Some(dst) => Arrival::Captured(dst),
        None => Arrival::Proxy,
    };
    serve_arriving(state, listener, limits, arrival, shutdown).await
}

/// Serves the local port `ports[port]` of the config until `shutdown`, then drains.
pub async fn serve_port(
    state: Arc<Outbound>,
    port: usize,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    info!(addr = ?listener.local_addr().ok(), port, "outbound port listening");
    serve_arriving(
        state,
        listener,
        limits,
        move |_| Arrival::Port(port),
        shutdown,
    )
    .await
}

/// Serves requests that arrive as `arrival` says of their connection. Each connection remembers
/// the cache key of the subject token it last sent ([`LastKey`]).
async fn serve_arriving(
    state: Arc<Outbound>,
    listener: TcpListener,
    limits: Limits,
    arrival: impl Fn(ConnInfo) -> Arrival + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let per_connection = move |conn: ConnInfo| {
        let (c, arrival) = (Arc::new((state.clone(), LastKey::default())), arrival(conn));
        move |req: Request<Incoming>| {
            let c = c.clone();
            async move { proxy(&c.0, &c.1, boxed(req), arrival).await }
        }
    };
    server::serve_each(listener, limits, per_connection, shutdown).await
}

/// Handles one forward-proxy request (absolute-form, or `CONNECT`) as if it came on a connection
/// of its own. Never fails: every problem becomes a response.
pub async fn handle<B>(s: &Outbound, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    proxy(s, &LastKey::default(), boxed(req), Arrival::Proxy).await
}

/// Handles one request on the local port `ports[port]` (origin-form, fixed upstream and route)
/// as if it came on a connection of its own.
pub async fn handle_port<B>(s: &Outbound, port: usize, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    proxy(s, &LastKey::default(), boxed(req), Arrival::Port(port)).await
}

/// `req` with its body boxed, whatever body type it came with.
fn boxed<B>(req: Request<B>) -> Request<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    req.map(|b| b.map_err(Into::into).boxed())
}

/// A Transaction Token is the trust domain's: it goes to the upstreams the routes name and the
/// `txn_token_hosts`, never to another host nor to the IdP (which takes one only as a form
/// parameter). Its underscore twin goes with it.
fn drop_txn_token(headers: &mut HeaderMap) {
    headers.remove(crate::txn::HEADER);
    headers.remove("txn_token");
}

/// Where a request is headed, by the listener it arrived on.
#[derive(Clone, Copy)]
enum Arrival {
    /// The forward proxy: the destination is in the absolute-form URI.
    Proxy,
    /// A connection redirected by iptables: origin-form, originally aimed at this address.
    Captured(SocketAddr),
    /// The local port `ports[i]`: fixed upstream and route.
    Port(usize),
}

/// What the audit event of one hop says; never a token. Indexes and the shared [`Issued`], not
/// copies: a request whose audit event is filtered out costs no allocation for it.
struct Audit {
    /// The route's index in the configuration.
    route: Option<usize>,
    /// The token sent upstream, for its `sub` hash and `act` chain.
    issued: Option<Arc<Issued>>,
    cache: &'static str,
    exchange_ms: u64,
}

// No `tracing` span: an instrumented future is one more move of this kilobytes-large one per
// request. The audit event below carries what an operator needs, the request id and method among
// it. With OpenTelemetry on, the request runs in a boxed future of its own ([`traced`]).
async fn proxy(
    s: &Outbound,
    last: &LastKey,
    req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    match &s.tracing {
        None => proxy_plain::<false>(s, last, req, arrival).await,
        Some(t) => Box::pin(traced(s, t, last, req, arrival)).await,
    }
}

/// One request under its OpenTelemetry span `outbound`: a client span continuing the context the
/// app sent (`traceparent`), or the root of a new trace when the app sent none. The upstream gets
/// this span's context.
async fn traced(
    s: &Outbound,
    t: &Arc<crate::otel::Tracing>,
    last: &LastKey,
    mut req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    use crate::otel::FutureExt as _;
    use opentelemetry::KeyValue;
    let parent = crate::otel::extract(req.headers());
    let attributes = vec![KeyValue::new(
        "http.request.method",
        req.method().as_str().to_owned(),
    )];
    let cx = t.start_span(
        "outbound",
        opentelemetry::trace::SpanKind::Client,
        &parent,
        attributes,
    );
    crate::otel::inject(&cx, req.headers_mut());
    let rsp = proxy_plain::<true>(s, last, req, arrival)
        .with_context(cx.clone())
        .await;
    crate::otel::end(&cx, Some(rsp.status().as_u16()), false);
    rsp
}

/// [`proxy`]; `TRACED`: a span is current, and the outcome is noted on it.
async fn proxy_plain<const TRACED: bool>(
    s: &Outbound,
    last: &LastKey,
    mut req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    // The state this request runs on to its end, whatever a reload installs meanwhile.
    let a = s.active.load_full();
    let request_id = forward::request_id(req.headers_mut());
    let method = req.method().clone();
    let grpc = crate::http::grpc::is_grpc(req.headers());
    let mut audit = Audit {
        route: None,
        issued: None,
        cache: "none",
        exchange_ms: 0,
    };
    let rsp = match run(s, &a, last, req, arrival, &mut audit).await {
        Ok(rsp) => rsp,
        Err(reject) => reject.answer(grpc),
    };
    let route = audit.route.map(|i| &a.cfg.routes[i]);
    let issued = audit.issued.as_deref();
    let trace_id = if TRACED {
        note_outcome(route, &audit);
        crate::otel::current_trace_id()
    } else {
        String::new()
    };
    info!(
        target: "baton::audit",
        trace_id,
        // Visible ASCII only (`forward::request_id`), so never empty here.
        request_id = request_id.to_str().unwrap_or_default(),
        method = %method,
        route = route.map_or("", |r| r.name.as_str()),
        sub_hash = issued.map_or("", |i| i.sub_hash.as_str()),
        act_chain = issued.map_or("", |i| i.act_chain.as_str()),
        audience = route.and_then(|r| r.audience.as_deref()).unwrap_or(""),
        scope = route.and_then(|r| r.scope.as_deref()).unwrap_or(""),
        cache = audit.cache,
        exchange_ms = audit.exchange_ms,
        status = rsp.status().as_u16(),
        "outbound hop"
    );
    rsp
}

/// The route, audience and exchange-cache result of an outbound request on the current span.
fn note_outcome(route: Option<&Route>, audit: &Audit) {
    use opentelemetry::KeyValue;
    if let Some(r) = route {
        crate::otel::note(KeyValue::new("baton.route", r.name.clone()));
        if let Some(aud) = &r.audience {
            crate::otel::note(KeyValue::new("baton.audience", aud.clone()));
        }
        crate::otel::note(KeyValue::new("server.address", r.host.clone()));
        crate::otel::note(KeyValue::new("server.port", i64::from(r.port)));
    }
    crate::otel::note(KeyValue::new("baton.exchange.cache", audit.cache));
    if let Some(issued) = &audit.issued {
        crate::otel::note(KeyValue::new("enduser.id", issued.sub_hash.clone()));
    }
}

async fn run(
    s: &Outbound,
    a: &Active,
    last: &LastKey,
    mut req: Request<Body>,
    arrival: Arrival,
    audit: &mut Audit,
) -> Result<Response<Body>, Reject> {
    if req.method() == Method::CONNECT {
        return match a.cfg.connect {
            Policy::Deny => Err(Reject::Connect),
            // Boxed: a tunnel is once per connection, its future would size every request's.
            Policy::Passthrough => Box::pin(forward::tunnel(req, s.tunnel_idle))
                .await
                .map_err(Reject::Upstream),
        };
    }
    let (host, port_no, route) = match arrival {
        Arrival::Port(p) => {
            let p = &a.cfg.ports[p];
            let (host, port_no) = crate::config::outbound::split_authority(&p.upstream, 80)
                .ok_or_else(|| Reject::Upstream(format!("bad upstream {}", p.upstream)))?;
            (host, port_no, Some(p.route))
        }
        Arrival::Proxy | Arrival::Captured(_) => {
            let captured = match arrival {
                Arrival::Captured(dst) => Some(dst),
                _ => None,
            };
            let (host, port_no) = destination(&req, captured)?;
            let route = a
                .cfg
                .routes
                .iter()
                .position(|r| r.port == port_no && r.host.eq_ignore_ascii_case(&host));
            (host, port_no, route)
        }
    };
    if a.exchanger.is_idp(&host, port_no) {
        // The IdP authenticates calls to itself; exchanging for it would be circular.
        drop_txn_token(req.headers_mut());
        forward::prepare(&mut req, None, &host, port_no, false).map_err(Reject::Upstream)?;
        return a.upstream.send(req, None).await.map_err(Reject::Upstream);
    }
    let Some(route) = route else {
        return match a.cfg.unknown {
            Policy::Deny => Err(Reject::UnknownHost(format!("{host}:{port_no}"))),
            Policy::Passthrough => {
                req.headers_mut().remove(header::AUTHORIZATION);
                let inside = format!("{host}:{port_no}").to_ascii_lowercase();
                if !a.cfg.txn_token_hosts.contains(&inside) {
                    drop_txn_token(req.headers_mut());
                }
                forward::prepare(&mut req, None, &host, port_no, false)
                    .map_err(Reject::Upstream)?;
                a.upstream.send(req, None).await.map_err(Reject::Upstream)
            }
        };
    };
    let r = &a.cfg.routes[route];
    audit.route = Some(route);
    let subject = subject(req.headers(), r)?;
    let subject = match (subject, s.handles.as_deref()) {
        (Some(t), Some(h)) if t.bytes().starts_with(crate::confine::PREFIX.as_bytes()) => {
            Some(unconfine(h, &t)?)
        }
        (other, _) => other,
    };
    let subject = subject.as_ref().map(Subject::bytes);
    let key = last.key(subject, (a.generation, route), &a.targets[route]);
    let started = Instant::now();
    let (issued, lookup) = a.token(&s.metrics, route, key, subject).await?;
    audit.exchange_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    audit.cache = lookup.as_str();
    audit.issued = Some(issued.clone());

    let tls = r.tls.is_some();
    if crate::http::upgrade::marked(&req) {
        let upgrade = crate::http::upgrade::asked(&req);
        if !upgrade.is_empty() {
            // Boxed: rare, and its future would size every request's.
            let to = (host.as_str(), port_no, route);
            return Box::pin(switch(s, a, req, upgrade, &issued, to, tls)).await;
        }
    }
    let replay = forward::replayable(&req);
    forward::prepare(&mut req, Some(&issued.authorization), &host, port_no, tls)
        .map_err(Reject::Upstream)?;
    prove(a, &mut req, &issued, &host, port_no, tls)?;
    let rsp = a
        .upstream
        .send(req, Some(route))
        .await
        .map_err(Reject::Upstream)?;
    if !forward::says_invalid_token(&rsp) {
        return Ok(rsp);
    }
    // The upstream refused a token we cached: drop it, and retry once with a fresh one when
    // the request can be sent again safely.
    a.cache.invalidate(&key).await;
    let Some(mut again) = replay else {
        return Ok(rsp);
    };
    warn!(route = %r.name, "upstream answered invalid_token; retrying with a fresh exchange");
    let (issued, _) = a.token(&s.metrics, route, key, subject).await?;
    audit.cache = "miss";
    audit.issued = Some(issued.clone());
    forward::prepare(&mut again, Some(&issued.authorization), &host, port_no, tls)
        .map_err(Reject::Upstream)?;
    prove(a, &mut again, &issued, &host, port_no, tls)?;
    a.upstream
        .send(again, Some(route))
        .await
        .map_err(Reject::Upstream)
}

/// A routed request that asks to switch protocols (a WebSocket handshake) with its exchanged
/// token: the ask goes on with it over a connection of its own, and a `101` splices the two
/// connections (closed when idle like a CONNECT tunnel). A refused token is not retried here:
/// the client sees the `401` and may ask again.
async fn switch(
    s: &Outbound,
    a: &Active,
    mut req: Request<Body>,
    upgrade: Vec<http::HeaderValue>,
    issued: &Issued,
    (host, port_no, route): (&str, u16, usize),
    tls: bool,
) -> Result<Response<Body>, Reject> {
    let switch = crate::http::upgrade::Switch::take(&mut req);
    forward::prepare(&mut req, Some(&issued.authorization), host, port_no, tls)
        .map_err(Reject::Upstream)?;
    prove(a, &mut req, issued, host, port_no, tls)?;
    crate::http::upgrade::ask_again(req.headers_mut(), upgrade);
    let mut rsp = a
        .upstream
        .send_upgradable(req, route)
        .await
        .map_err(Reject::Upstream)?;
    switch.answer(&mut rsp, s.tunnel_idle);
    Ok(rsp)
}

/// The proof of a call with a DPoP-bound token (RFC 9449 §7): fresh `jti` and `iat`, `htm`,
/// `htu` (the upstream as the route names it, and the path), `ath`; signed with the sidecar's
/// key. A `DPoP` header from the app never goes on: a proof is made for one hop by its sender.
fn prove(
    a: &Active,
    req: &mut Request<Body>,
    issued: &Issued,
    host: &str,
    port: u16,
    tls: bool,
) -> Result<(), Reject> {
    req.headers_mut().remove(crate::dpop::HEADER);
    let Some(ath) = &issued.ath else {
        return Ok(());
    };
    let scheme = if tls { "https" } else { "http" };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let htu = format!("{scheme}://{host}:{port}{}", req.uri().path());
    // The key the token is bound to, even if the sidecar's key has rotated since.
    let holder = issued.key.clone().unwrap_or_else(|| a.exchanger.holder());
    let proof = holder
        .proof_ath(
            req.method().as_str(),
            &htu,
            Some(ath),
            None,
            crate::jwt::unix_now(),
        )
        .map_err(|e| Reject::Upstream(format!("DPoP proof: {e}")))?;
    let value = HeaderValue::try_from(proof)
        .map_err(|_| Reject::Upstream("DPoP proof is not a header value".into()))?;
    req.headers_mut().insert(crate::dpop::HEADER, value);
    Ok(())
}

/// Destination `host`, `port` of an absolute-form request (RFC 9112 §3.2.2), or of an
/// origin-form request on a connection redirected from `captured`: the `Host` header names the
/// destination (and so the route), the dialed port fills in a `Host` without one; with no `Host`
/// the original address itself is the destination.
fn destination(req: &Request<Body>, captured: Option<SocketAddr>) -> Result<(String, u16), Reject> {
    use crate::config::outbound::{split_authority, split_parsed};
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority(), captured) {
        (Some("http"), Some(a), _) => split_parsed(a, 80).ok_or(Reject::NotAbsolute),
        (None, None, Some(dst)) => Ok(req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| split_authority(h, dst.port()))
            .unwrap_or_else(|| (dst.ip().to_string(), dst.port()))),
        _ => Err(Reject::NotAbsolute),
    }
}

/// The subject token from `Authorization: Bearer` (RFC 6750 §2.1) or `DPoP` (RFC 9449 §7.1: a
/// bound token the inbound listener checked, passed on by the app), or `None` when the route
/// allows `client_credentials`.
fn subject(headers: &HeaderMap, route: &Route) -> Result<Option<Subject>, Reject> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Reject::BadAuthorization(
            "more than one Authorization header",
        ));
    }
    let token = match first {
        None => None,
        Some(v) => {
            let bytes = v.as_bytes();
            let space = bytes.iter().position(|&b| b == b' ');
            let scheme = &bytes[..space.unwrap_or(bytes.len())];
            let after = space.map_or(bytes.len(), |i| i + 1);
            let rest = &bytes[after..];
            let start = after + (rest.len() - rest.trim_ascii_start().len());
            let token = rest.trim_ascii();
            let known =
                scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"dpop");
            if !known || token.is_empty() {
                return Err(Reject::BadAuthorization(
                    "only `Authorization: Bearer <token>` (or `DPoP <token>`) is propagated",
                ));
            }
            // Visible ASCII only, checked without a branch per byte so that it vectorizes: it
            // runs over the whole token on every request.
            let visible = token
                .iter()
                .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
            if !visible {
                return Err(Reject::BadAuthorization("the token is not visible ASCII"));
            }
            Some(Subject {
                value: v.clone(),
                token: start..start + token.len(),
            })
        }
    };
    match (token, route.without_subject) {
        (Some(t), _) => Ok(Some(t)),
        (None, WithoutSubject::ClientCredentials) => Ok(None),
        (None, WithoutSubject::Deny) => Err(Reject::NoSubject(route.name.clone())),
    }
}

/// The token a handle stands for, as a subject; an unknown or expired handle is refused.
fn unconfine(handles: &crate::confine::Handles, handle: &Subject) -> Result<Subject, Reject> {
    let unknown = || Reject::BadAuthorization("unknown or expired token handle");
    let name = std::str::from_utf8(handle.bytes()).map_err(|_| unknown())?;
    let value = handles
        .redeem(name, crate::jwt::unix_now())
        .ok_or_else(unknown)?;
    let start = value
        .as_bytes()
        .iter()
        .position(|&b| b == b' ')
        .map_or(0, |i| i + 1);
    let end = value.as_bytes().len();
    Ok(Subject {
        value,
        token: start..end,
    })
}

/// A subject token, where it sits in the `Authorization` value it came in: a cache hit needs
/// neither a copy of it nor a `str` (the value is shared, not copied, with the request).
struct Subject {
    value: HeaderValue,
    token: std::ops::Range<usize>,
}

impl Subject {
    /// The token's bytes, visible ASCII.
    fn bytes(&self) -> &[u8] {
        &self.value.as_bytes()[self.token.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_the_one_bearer_token_in_visible_ascii() {
        let route = Route {
            name: "b".into(),
            host: "service-b".into(),
            port: 80,
            audience: None,
            resources: Vec::new(),
            scope: None,
            requested_lifetime: None,
            without_subject: WithoutSubject::Deny,
            tls: None,
            dpop: false,
        };
        let subject_of = |values: &[&'static [u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(
                    header::AUTHORIZATION,
                    HeaderValue::from_bytes(v).expect("value"),
                );
            }
            subject(&h, &route).map(|t| t.map(|t| String::from_utf8_lossy(t.bytes()).into_owned()))
        };
        let token = |t: &str| Some(Some(t.to_owned()));
        assert_eq!(subject_of(&[b"Bearer a.b.c"]).ok(), token("a.b.c"));
        assert_eq!(
            subject_of(&[b"bearer  a.b-c_~+/= "]).ok(),
            token("a.b-c_~+/=")
        );
        for refused in [
            &b"Basic dXNlcg=="[..],
            b"Bearer",
            b"Bearer   ",
            b"Bearer a b",
            b"Bearer a\tb",
            b"Bearer caf\xc3\xa9",
        ] {
            assert!(
                matches!(subject_of(&[refused]), Err(Reject::BadAuthorization(_))),
                "{refused:?}"
            );
        }
        assert!(matches!(
            subject_of(&[b"Bearer a", b"Bearer b"]),
            Err(Reject::BadAuthorization(_))
        ));
        assert!(matches!(subject_of(&[]), Err(Reject::NoSubject(_))));
    }
}
