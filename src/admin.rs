//! Admin listener: `/healthz`, `/readyz`, `/metrics`, `/config`, and in capture mode the app's
//! own probes under `/app-health/` ([`probe`]; a flood of them shares a few checks of the app).
//!
//! The listener binds the pod's address by default (kubelet probes and metric scrapers come from
//! outside the pod), so `/config`, which lists routes, public paths and hosts, answers loopback
//! clients only unless `admin.expose_config` says otherwise (`kubectl port-forward` arrives on
//! loopback).
//!
//! `/readyz` is 503 until the JWKS readiness latch drops (first key load), while the keys are
//! older than the stale window (the IdP unreachable too long: every token would get 503), and
//! again once shutdown begins, so load balancers stop sending traffic before the listeners close.

pub mod probe;

use crate::http::{Body, full, json, text};
use crate::inbound::Inbound;
use crate::jwt::jwks::Jwks;
use crate::k8s::APP_HEALTH;
use crate::server::{self, Drained, Limits};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::debug;

pub use probe::AppProbes;

/// The admin listener's state.
pub struct Admin {
    inbound: Arc<Inbound>,
    jwks: Arc<Jwks>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    app_probes: AppProbes,
}

impl Admin {
    /// State over the sidecar's inbound listener, its JWKS and its metrics. `/readyz` answers
    /// 503 as soon as `shutdown` fires, while the other listeners drain.
    pub fn new(
        inbound: Arc<Inbound>,
        jwks: Arc<Jwks>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Admin {
        Admin {
            inbound,
            jwks,
            metrics,
            shutdown,
            app_probes: AppProbes::none(),
        }
    }

    /// Serves `probes` under `/app-health/` (none by default).
    pub fn with_app_probes(mut self, probes: AppProbes) -> Admin {
        self.app_probes = probes;
        self
    }

    /// The app probes served under `/app-health/`.
    pub fn app_probes(&self) -> &AppProbes {
        &self.app_probes
    }

    /// Whether the sidecar should receive traffic.
    /// Not while the keys are older than the stale window either: every token would get 503.
    pub fn ready(&self) -> bool {
        self.jwks.keys().is_some() && !self.shutdown.is_fired()
    }
}

/// Serves the admin endpoints on an already bound `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<Admin>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    // An app probe may take its whole timeout (kubelet allows up to its `timeoutSeconds`).
    let slowest_probe = state.app_probes.longest_timeout() + Duration::from_secs(1);
    let limits = Limits {
        request_timeout: Duration::from_secs(5).max(slowest_probe),
        max_connections: 64,
        max_body_bytes: 0,
        ..Limits::default()
    };
    let handler = move |req, conn: server::ConnInfo| {
        let state = state.clone();
        async move { handle_from(&state, conn.peer.ip(), req).await }
    };
    server::serve(listener, limits, handler, shutdown).await
}

/// Answers one admin request without a socket, as to a client on loopback.
pub async fn handle<B>(s: &Admin, req: Request<B>) -> Response<Body> {
    handle_from(s, IpAddr::V4(Ipv4Addr::LOCALHOST), req).await
}

/// Answers one admin request from `peer`. Only GET (and HEAD) are served. An app probe waits
/// for the app, at most its timeout; the other endpoints answer at once.
pub async fn handle_from<B>(s: &Admin, peer: IpAddr, req: Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let path = req.uri().path();
    if path.starts_with(APP_HEALTH) {
        let user_agent = req.headers().get(header::USER_AGENT).cloned();
        return app_health(&s.app_probes, path, user_agent).await;
    }
    let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    endpoint(s, path, peer.to_canonical().is_loopback(), openmetrics)
}

/// `/app-health/<container>/<kind>`: 200 when the app passes its probe, 503 saying why not
/// (never with the app's body), 404 for a path the table does not hold.
async fn app_health(
    probes: &AppProbes,
    path: &str,
    user_agent: Option<HeaderValue>,
) -> Response<Body> {
    match probes.run(path, user_agent).await {
        Some(Ok(())) => text(StatusCode::OK, "ok\n"),
        Some(Err(failure)) => {
            debug!(probe = path, reason = %failure, "app probe failed");
            text(StatusCode::SERVICE_UNAVAILABLE, format!("{failure}\n"))
        }
        None => text(StatusCode::NOT_FOUND, "no such app probe\n"),
    }
}

/// The endpoints that answer from the sidecar's own state; `loopback`: the client is on this
/// host (this pod); `openmetrics`: the client takes the OpenMetrics text format (with exemplars).
fn endpoint(s: &Admin, path: &str, loopback: bool, openmetrics: bool) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if s.ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" if !s.jwks.ready() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the issuer's keys\n",
        ),
        "/readyz" if s.jwks.keys().is_none() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the issuer's keys are older than the stale window and the IdP is unreachable\n",
        ),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        "/metrics" => {
            let age = s.jwks.age().map_or(-1.0, |a| a.as_secs_f64());
            s.metrics.jwks_age.set(age);
            let (body, content_type) = if openmetrics {
                (
                    s.metrics.encode_openmetrics(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    s.metrics.encode(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut rsp = Response::new(full(body));
            rsp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            rsp
        }
        "/config" if loopback || s.inbound.expose_config() => {
            json(StatusCode::OK, &s.inbound.config())
        }
        "/config" => text(
            StatusCode::FORBIDDEN,
            "/config answers loopback clients only; set admin.expose_config: true to serve it \
             to others\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz /readyz /metrics /config\n",
        ),
    }
}

#[cfg(test)]
mod tests;
