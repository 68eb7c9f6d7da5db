//! Admin listener: `/healthz`, `/readyz`, `/metrics`, `/config`.
//!
//! `/readyz` is 503 until the JWKS readiness latch drops (first key load), while the keys are
//! older than the stale window (the IdP unreachable too long: every token would get 503), and
//! again once shutdown begins, so load balancers stop sending traffic before the listeners close.

use crate::http::{Body, full, json, text};
use crate::inbound::Inbound;
use crate::jwt::jwks::Jwks;
use crate::server::{self, Drained, Limits};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The admin listener's state.
pub struct Admin {
    inbound: Arc<Inbound>,
    jwks: Arc<Jwks>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
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
        }
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
    let limits = Limits {
        request_timeout: Duration::from_secs(5),
        max_connections: 64,
        max_body_bytes: 0,
        ..Limits::default()
    };
    let handler = move |req, _conn| {
        let state = state.clone();
        async move { handle(&state, req) }
    };
    server::serve(listener, limits, handler, shutdown).await
}

/// Answers one admin request without a socket. Only GET (and HEAD) are served.
pub fn handle<B>(s: &Admin, req: Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
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
            let mut rsp = Response::new(full(s.metrics.encode()));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            rsp
        }
        "/config" => json(StatusCode::OK, &s.inbound.config()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz /readyz /metrics /config\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jwt::keys::KeySet;

    fn admin() -> (Admin, crate::shutdown::Trigger) {
        let yaml = "issuer: https://idp.example\naudience: b\napp: \"127.0.0.1:9\"\noutbound: {client: {client_id: service-b, secret: test-only}}\n";
        let cfg = Config::from_yaml(yaml, "sidecar.yaml").expect("config");
        let metrics = Arc::new(Metrics::new());
        let jwks = Jwks::fixed(KeySet::default(), metrics.clone());
        let inbound = Arc::new(Inbound::new(&cfg, jwks.clone(), metrics.clone()));
        let (trigger, shutdown) = crate::shutdown::channel();
        (Admin::new(inbound, jwks, metrics, shutdown), trigger)
    }

    fn status(a: &Admin, method: Method, path: &str) -> StatusCode {
        handle(
            a,
            Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .expect("request"),
        )
        .status()
    }

    #[test]
    fn endpoints_answer_and_readiness_drops_on_shutdown() {
        let (a, trigger) = admin();
        assert_eq!(status(&a, Method::GET, "/healthz"), StatusCode::OK);
        assert_eq!(status(&a, Method::GET, "/readyz"), StatusCode::OK);
        assert_eq!(status(&a, Method::GET, "/metrics"), StatusCode::OK);
        assert_eq!(status(&a, Method::GET, "/config"), StatusCode::OK);
        assert_eq!(status(&a, Method::GET, "/nope"), StatusCode::NOT_FOUND);
        assert_eq!(
            status(&a, Method::POST, "/healthz"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        trigger.fire();
        assert_eq!(
            status(&a, Method::GET, "/readyz"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&a, Method::GET, "/healthz"), StatusCode::OK);
    }

    #[test]
    fn readiness_drops_once_the_keys_are_past_the_stale_window() {
        let settings = crate::config::JwksSettings {
            stale_window: Duration::from_secs(60),
            ..Default::default()
        };
        let ready = |age| {
            let (a, _trigger) = admin();
            let jwks = Jwks::loaded_ago(
                KeySet::default(),
                Duration::from_secs(age),
                settings.clone(),
                a.metrics.clone(),
            );
            let a = Admin::new(a.inbound, jwks, a.metrics, a.shutdown);
            status(&a, Method::GET, "/readyz")
        };
        assert_eq!(ready(30), StatusCode::OK);
        assert_eq!(ready(61), StatusCode::SERVICE_UNAVAILABLE);
    }
}
