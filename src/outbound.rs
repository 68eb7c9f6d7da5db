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

mod audit;
mod destination;
mod forward;
mod reject;
mod state;
mod subject;

pub use state::{Outbound, Staged};

use crate::config::outbound::Policy;
use crate::exchange::cache::LastKey;
use crate::exchange::{ExchangeError, Issued};
use crate::http::{Body, BoxError};
use crate::server::{self, ConnInfo, Drained, Limits};
use audit::{Audit, proxy};
use bytes::Bytes;
use destination::Arrival;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use reject::Reject;
use state::Active;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use subject::Subject;
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

/// The pipeline of one request: a `CONNECT` is tunneled or refused; a call to the IdP, or to a
/// destination no route names (`unknown: passthrough`), goes on with no token; a routed call
/// goes on to [`routed`].
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
    let (host, port_no, route) = destination::find(a, &req, arrival)?;
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
    routed(s, a, last, req, (host, port_no, route), audit).await
}

/// The rest of the pipeline for a request on the route `route` to `host:port_no`: subject,
/// token from the cache or the IdP, forward; an upstream `invalid_token` drops the cached token
/// and, for a request that can be sent again, retries once with a fresh one.
async fn routed(
    s: &Outbound,
    a: &Active,
    last: &LastKey,
    mut req: Request<Body>,
    (host, port_no, route): (String, u16, usize),
    audit: &mut Audit,
) -> Result<Response<Body>, Reject> {
    let r = &a.cfg.routes[route];
    audit.route = Some(route);
    let subject = subject::of(req.headers(), r, s.handles.as_deref())?;
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
