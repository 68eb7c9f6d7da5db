//! Forwarding: header rewriting (hop-by-hop, `Authorization`, `Host`), the upstream clients
//! (keep-alive HTTP/1.1 to configured plain-HTTP destinations; one hyper-util client with rustls
//! per `tls` route, trusting that route's roots only and presenting its client certificate, if
//! any; a plain one for the rest), replay for the
//! 401 retry, CONNECT tunnels.

mod tls;

use crate::config::outbound::Outbound as Config;
use crate::http::pool::Pool;
use crate::http::pool::h2::H2Pool;
use crate::http::splice::{Held, splice};
use crate::http::{Body, BoxError, REQUEST_ID, empty, new_request_id, strip_hop_by_hop};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;
use tls::TlsClient;
use tracing::debug;

/// How long a kept connection to an upstream may stay with nothing in flight before it is
/// closed: HTTP/1.1 connections in the clients' pools and HTTP/2 connections alike.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// Time allowed to open a CONNECT tunnel's upstream connection.
const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The clients upstream calls go through.
pub(super) struct Upstream {
    /// Keep-alive connections to each plain-HTTP destination the configuration names (route
    /// hosts and `ports` upstreams): the hot path of a chain. Shared with the state a reload
    /// replaces when the destination stays.
    plain: Vec<Arc<Pool>>,
    /// Per route (config order), the HTTPS client of a `tls` route, trusting exactly that
    /// route's roots: a certificate another route's `ca_file` vouches for is refused here.
    tls: Vec<Option<TlsClient>>,
    /// The HTTP/2 connection to each of the same plain destinations, for the app's HTTP/2 calls
    /// (gRPC); opened at the first such call.
    plain_h2: Vec<Arc<H2Pool>>,
    /// Per route (config order), the HTTPS client of a `tls` route for HTTP/2 calls: the same
    /// trust, `h2` alone offered in ALPN.
    tls_h2: Vec<Option<TlsClient>>,
    /// Everything else, plain HTTP only: the IdP and passthrough hosts.
    client: Client<HttpConnector, Body>,
    /// Everything else over HTTP/2 with prior knowledge (passthrough hosts called over h2c).
    client_h2: Client<HttpConnector, Body>,
    /// What every connection may take to open (`outbound.connect_timeout`).
    connect_timeout: Duration,
}

impl Upstream {
    /// The clients for `cfg`, keeping `previous`'s keep-alive pools to destinations both name.
    /// Reads every route's `tls.ca_file`; fails when one cannot be read or holds no certificate.
    pub(super) fn new(cfg: &Config, previous: Option<&Upstream>) -> Result<Self, super::Error> {
        let (tls, tls_h2) = tls::clients(cfg)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .build(connector(cfg.connect_timeout));
        let client_h2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .http2_only(true)
            .build(connector(cfg.connect_timeout));
        let plain_routes = cfg
            .routes
            .iter()
            .filter(|r| r.tls.is_none())
            .map(|r| authority(&r.host, r.port));
        let plain_ports = cfg
            .ports
            .iter()
            .filter(|p| cfg.routes.get(p.route).is_some_and(|r| r.tls.is_none()))
            .filter_map(|p| crate::config::outbound::split_authority(&p.upstream, 80))
            .map(|(host, port)| authority(&host, port));
        let mut plain: Vec<Arc<Pool>> = Vec::new();
        for dest in plain_routes.chain(plain_ports) {
            if plain.iter().any(|p| p.dest().eq_ignore_ascii_case(&dest)) {
                continue;
            }
            let kept = previous
                .filter(|u| u.connect_timeout == cfg.connect_timeout)
                .into_iter()
                .flat_map(|u| &u.plain)
                .find(|p| p.dest().eq_ignore_ascii_case(&dest));
            plain.push(match kept {
                Some(p) => p.clone(),
                None => Arc::new(Pool::new(dest, cfg.connect_timeout)),
            });
        }
        let plain_h2 = plain
            .iter()
            .filter_map(|p| {
                let kept = previous
                    .filter(|u| u.connect_timeout == cfg.connect_timeout)
                    .into_iter()
                    .flat_map(|u| &u.plain_h2)
                    .find(|h| h.dest().eq_ignore_ascii_case(p.dest()));
                match kept {
                    Some(h) => Some(h.clone()),
                    None => H2Pool::new(p.dest(), cfg.connect_timeout, UPSTREAM_IDLE).map(Arc::new),
                }
            })
            .collect();
        Ok(Self {
            plain,
            plain_h2,
            tls,
            tls_h2,
            client,
            client_h2,
            connect_timeout: cfg.connect_timeout,
        })
    }

    /// Sends `req` (absolute-form, from [`prepare`]) upstream, an `https` one with the trust of
    /// `route`; the answer streams back with its hop-by-hop headers removed.
    pub(super) async fn send(
        &self,
        req: Request<Body>,
        route: Option<usize>,
    ) -> Result<Response<Body>, String> {
        let mut rsp = self.send_on(req, route, false).await?;
        strip_hop_by_hop(rsp.headers_mut());
        Ok(rsp)
    }

    /// Sends a request that asks to switch protocols (the ask put back after [`prepare`]) on a
    /// connection that can switch and no other request shares; the answer comes back whole,
    /// for [`crate::http::upgrade::Switch::answer`].
    pub(super) async fn send_upgradable(
        &self,
        req: Request<Body>,
        route: usize,
    ) -> Result<Response<Body>, String> {
        self.send_on(req, Some(route), true).await
    }

    /// `req` on the keep-alive connections to a plain destination the configuration names (a
    /// connection of its own when `upgradable`), on `route`'s HTTPS client for an `https` URI,
    /// or on the general plain client. The two clients keep every HTTP/1 connection able to
    /// switch and never reuse one that did.
    async fn send_on(
        &self,
        req: Request<Body>,
        route: Option<usize>,
        upgradable: bool,
    ) -> Result<Response<Body>, String> {
        // A cheap clone (shared bytes): the error names the upstream after `req` is gone.
        let authority = req.uri().authority().cloned();
        let authority = authority.as_ref().map_or("?", |a| a.as_str());
        if req.version() == http::Version::HTTP_2 && !upgradable {
            // Boxed: rare next to HTTP/1.1 calls, and its future would size every request's.
            return Box::pin(self.send_h2(req, route, authority)).await;
        }
        let sent = if req.uri().scheme() == Some(&Scheme::HTTPS) {
            // Only a `tls` route sends https, with its own trust and nothing else's.
            let Some(client) = route.and_then(|r| self.tls.get(r)?.as_ref()) else {
                return Err(format!(
                    "upstream {authority}: no TLS settings for this call"
                ));
            };
            // Boxed: the TLS client's future is kilobytes and would size every request's.
            Box::pin(client.request(req))
                .await
                .map(|rsp| rsp.map(|b| b.map_err(Into::into).boxed()))
                .map_err(Into::into)
        } else {
            match self
                .plain
                .iter()
                .find(|p| p.dest().eq_ignore_ascii_case(authority))
            {
                // Boxed: rare, and its future would size every request's.
                Some(pool) if upgradable => Box::pin(pool.send_upgradable(req))
                    .await
                    .map(|rsp| rsp.map(|b| b.map_err(Into::into).boxed())),
                Some(pool) => pool.send(req).await,
                // Boxed: the client's future is large and would size every request's.
                None => Box::pin(self.client.request(req))
                    .await
                    .map(|rsp| rsp.map(|b| b.map_err(Into::into).boxed()))
                    .map_err(Into::into),
            }
        };
        sent.map_err(|e| format!("upstream {authority} unreachable: {e}"))
    }
}

impl Upstream {
    /// An HTTP/2 call (the app spoke HTTP/2, e.g. gRPC): over TLS with `h2` in ALPN on a `tls`
    /// route, else h2c with prior knowledge on the destination's one multiplexed connection.
    async fn send_h2(
        &self,
        mut req: Request<Body>,
        route: Option<usize>,
        authority: &str,
    ) -> Result<Response<Body>, String> {
        // HTTP/2 carries the host as `:authority`, which the URI holds.
        req.headers_mut().remove(header::HOST);
        let sent = if req.uri().scheme() == Some(&Scheme::HTTPS) {
            let Some(client) = route.and_then(|r| self.tls_h2.get(r)?.as_ref()) else {
                return Err(format!(
                    "upstream {authority}: no TLS settings for this call"
                ));
            };
            client
                .request(req)
                .await
                .map(|rsp| rsp.map(|b| b.map_err(Into::into).boxed()))
                .map_err(Into::into)
        } else {
            match self
                .plain_h2
                .iter()
                .find(|p| p.dest().eq_ignore_ascii_case(authority))
            {
                Some(pool) => pool.send(req).await,
                None => self
                    .client_h2
                    .request(req)
                    .await
                    .map(|rsp| rsp.map(|b| b.map_err(Into::into).boxed()))
                    .map_err(Into::into),
            }
        };
        sent.map_err(|e: BoxError| format!("upstream {authority} unreachable over HTTP/2: {e}"))
    }
}

/// The TCP connector every upstream client uses.
fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}

/// `host:port` as a URI authority (IPv6 literals in brackets). Pushed, not `format!`ted: the
/// formatting machinery cost each forwarded request about 850 instructions.
fn authority(host: &str, port: u16) -> String {
    let v6 = host.contains(':');
    let mut s = String::with_capacity(host.len() + 8);
    if v6 {
        s.push('[');
    }
    s.push_str(host);
    if v6 {
        s.push(']');
    }
    s.push(':');
    s.push_str(itoa::Buffer::new().format(port));
    s
}

/// Points `req` at `host:port` (https when `tls`), sets `Host`, strips hop-by-hop headers and,
/// when `authorization` is given, REPLACES `Authorization` with it.
pub(super) fn prepare(
    req: &mut Request<Body>,
    authorization: Option<&HeaderValue>,
    host: &str,
    port: u16,
    tls: bool,
) -> Result<(), String> {
    let authority = authority(host, port);
    let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
    let uri = req.uri();
    // The usual forward-proxy request is already aimed there (absolute-form, same scheme and
    // authority): it keeps its URI, with no new URI parsed and no path copied.
    let aimed = uri.scheme() == Some(&scheme)
        && uri.authority().is_some_and(|a| a.as_str() == authority)
        && uri
            .path_and_query()
            .is_some_and(|p| p.as_str().starts_with('/'));
    if !aimed {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *req.uri_mut() = Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| format!("build upstream URI: {e}"))?;
    }
    // An HTTP/2 call stays one (gRPC needs it end to end); any other goes as HTTP/1.1.
    let h2 = req.version() == http::Version::HTTP_2;
    if !h2 {
        *req.version_mut() = http::Version::HTTP_11;
    }
    let trailers = h2 && crate::http::asks_trailers(req.headers());
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if trailers {
        // Hop-by-hop, but asked again on this hop: a gRPC server reads it.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // The string's own buffer becomes the header's: no copy.
    let host_value = HeaderValue::from_maybe_shared(Bytes::from(authority.into_bytes()))
        .map_err(|_| format!("bad upstream host {host}:{port}"))?;
    headers.insert(header::HOST, host_value);
    if let Some(value) = authorization {
        // insert() replaces every earlier value: the inbound token never goes further.
        headers.insert(header::AUTHORIZATION, value.clone());
    }
    Ok(())
}

/// A copy of `req` to send again after an upstream 401, if that is safe: an idempotent method
/// (RFC 9110 §9.2.2) and no body.
pub(super) fn replayable(req: &Request<Body>) -> Option<Request<Body>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// True when the upstream rejected the token as `invalid_token` (RFC 6750 §3.1): a 401, or a
/// gRPC `UNAUTHENTICATED` answered trailers-only, with that challenge.
pub(super) fn says_invalid_token(rsp: &Response<Body>) -> bool {
    let unauthenticated = rsp.status() == StatusCode::UNAUTHORIZED
        || (rsp.status() == StatusCode::OK
            && rsp
                .headers()
                .get(crate::http::grpc::GRPC_STATUS)
                .is_some_and(|v| v == "16"));
    unauthenticated
        && rsp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.as_bytes().windows(13).any(|w| w == b"invalid_token"))
}

/// The request's `x-request-id` when it is fit for the audit log (1 to 128 visible ASCII
/// characters), or a fresh one set on the request so the next hop sees it. One lookup by name,
/// not two: hashing the custom name costs more than the rest.
pub(super) fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let fit = |v: &HeaderValue| {
        !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic)
    };
    match headers.entry(REQUEST_ID) {
        header::Entry::Occupied(given) if fit(given.get()) => given.get().clone(),
        header::Entry::Occupied(mut unfit) => {
            let id = new_request_id();
            // Replaces every value the request carried under the name.
            unfit.insert(id.clone());
            id
        }
        header::Entry::Vacant(absent) => absent.insert(new_request_id()).clone(),
    }
}

/// `CONNECT host:port` with `connect: passthrough`: a blind TCP tunnel, nothing rewritten. It
/// closes when either side closes it, when no byte has moved either way for `idle` (the
/// listener's idle timeout, which stops applying to a connection once it is a tunnel), or when
/// the listener drains; until then it keeps its place under `limits.max_connections`.
pub(super) async fn tunnel(
    mut req: Request<Body>,
    idle: Duration,
) -> Result<Response<Body>, String> {
    let authority = req
        .uri()
        .authority()
        .map(ToString::to_string)
        .ok_or("CONNECT needs host:port")?;
    let connect = tokio::net::TcpStream::connect(authority.as_str());
    let upstream = tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("tunnel to {authority} timed out"))?
        .map_err(|e| format!("tunnel to {authority}: {e}"))?;
    let held = req.extensions_mut().remove::<Held>();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ended = splice(TokioIo::new(upgraded), upstream, idle, held).await;
                debug!(authority, ?ended, "tunnel closed");
            }
            Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Ok(Response::new(empty()))
}

#[cfg(test)]
mod tests;
