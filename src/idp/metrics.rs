//! IdP metrics: `baton_idp_token_requests_total{grant_type,outcome}` and friends for `/metrics`
//! (prometheus-client text), plus plain counters tests can read in-process.

use crate::http::{Body, full};
use http::{HeaderValue, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Labels of a token request: the grant type (a fixed set) and the outcome (an error code or `ok`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `authorization_code`, `token_exchange`, … or `unknown`.
    pub grant_type: &'static str,
    /// `ok` or the OAuth error code.
    pub outcome: &'static str,
}

/// The IdP's metrics.
pub struct Metrics {
    registry: Registry,
    token_requests: Family<TokenLabels, Counter>,
    logins: Family<TokenLabels, Counter>,
    refresh_reuse: Counter,
    /// `baton_trace_spans_dropped_total`: finished spans not exported.
    pub trace_spans_dropped: Counter,
    exchanges: AtomicU64,
    requests: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let token_requests = Family::<TokenLabels, Counter>::default();
        registry.register(
            "baton_idp_token_requests",
            "Token endpoint requests by grant type and outcome",
            token_requests.clone(),
        );
        let logins = Family::<TokenLabels, Counter>::default();
        registry.register(
            "baton_idp_logins",
            "Login form submissions by outcome",
            logins.clone(),
        );
        let refresh_reuse = Counter::default();
        registry.register(
            "baton_idp_refresh_token_reuse",
            "Rotated-away refresh tokens presented again (each revoked a grant family)",
            refresh_reuse.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "baton_trace_spans_dropped",
            "Finished trace spans dropped instead of exported (queue full or export failed)",
            trace_spans_dropped.clone(),
        );
        Self {
            registry,
            trace_spans_dropped,
            token_requests,
            logins,
            refresh_reuse,
            exchanges: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one token request.
    pub fn token(&self, grant_type: &'static str, outcome: &'static str) {
        self.token_requests
            .get_or_create(&TokenLabels {
                grant_type,
                outcome,
            })
            .inc();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if grant_type == "token_exchange" && outcome == "ok" {
            self.exchanges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one login attempt.
    pub fn login(&self, outcome: &'static str) {
        self.logins
            .get_or_create(&TokenLabels {
                grant_type: "password",
                outcome,
            })
            .inc();
    }

    /// Counts one refresh-token reuse (RFC 9700 §4.14.2).
    pub fn refresh_reuse(&self) {
        self.refresh_reuse.inc();
    }

    /// Successful exchanges.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// All token requests.
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Response<Body> {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        let mut rsp = Response::new(full(out));
        *rsp.status_mut() = StatusCode::OK;
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        rsp
    }
}
