//! Every metric baton exports, in one place: one [`Metrics`] registered in one Prometheus
//! registry. Names are prefixed `baton_` and carry their unit; labels are route names and fixed
//! outcome words, never paths, subjects or tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Labels of one inbound request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    /// The route's configured name, or `none` when no route matched.
    pub route: String,
    /// A fixed word: `allowed`, `public`, `invalid_token`, `insufficient_scope`, ...
    pub outcome: &'static str,
}

/// Labels carrying only an outcome word.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// A fixed word such as `ok`, `hit`, `error`.
    pub outcome: &'static str,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    // === inbound ===
    /// `baton_inbound_requests_total{route, outcome}`.
    pub inbound_requests: Family<RouteOutcome, Counter>,
    /// `baton_verify_latency_seconds`: signature verifications (cache misses only).
    pub verify_latency: Latency,
    /// `baton_verify_cache_lookups_total{outcome=hit|miss}`.
    pub verify_cache: Family<Outcome, Counter>,
    /// `baton_jwks_fetches_total{outcome=ok|error}`.
    pub jwks_fetches: Family<Outcome, Counter>,
    /// `baton_jwks_age_seconds`: age of the key set in use; set when `/metrics` is scraped.
    pub jwks_age: Gauge<f64, AtomicU64>,
    /// `baton_config_reloads_total{outcome=ok|error}`.
    pub config_reloads: Family<Outcome, Counter>,
    /// `baton_login_events_total{outcome}`: edge browser sign-in steps (`redirect`, `step_up`,
    /// `signed_in`, `refreshed`, `refresh_failed`, `logout`, `callback_error`).
    pub login_events: Family<Outcome, Counter>,
    /// `baton_trace_spans_dropped_total`: finished spans not exported (queue full, collector
    /// down or refusing); 0 while tracing is off.
    pub trace_spans_dropped: Counter,
    // === outbound ===
    /// Exchanges and the exchanged-token cache.
    pub exchange: ExchangeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A latency histogram whose observations made under a sampled trace carry its id as an
/// exemplar (OpenMetrics), so a slow bucket leads to a trace that shows why.
pub type Latency = HistogramWithExemplars<TraceExemplar>;

/// The exemplar of one observation: the trace it was made in (a random id, no secret).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// The W3C trace id, 32 hex digits.
    pub trace_id: String,
}

/// `line` of the OpenMetrics text without its exemplar (` # {trace_id="…"} value`), if it has
/// one. Only a suffix of exactly that shape is cut: a label value that happens to hold the
/// marker is followed by more quotes and braces.
fn without_exemplar(line: &str) -> &str {
    const MARKER: &str = " # {trace_id=\"";
    let Some(at) = line.rfind(MARKER) else {
        return line;
    };
    let rest = &line[at + MARKER.len()..];
    let is_exemplar = rest.len() > 34
        && rest.as_bytes()[..32].iter().all(u8::is_ascii_hexdigit)
        && rest[32..].starts_with("\"} ")
        && !rest[35..].contains(['"', '{', '}']);
    if is_exemplar { &line[..at] } else { line }
}

/// The current sampled trace as an exemplar; `None` when nothing traces this request.
pub fn exemplar() -> Option<TraceExemplar> {
    crate::otel::sampled_trace_id().map(|trace_id| TraceExemplar { trace_id })
}

/// A metric's name (`baton_`, its unit, no `_total`: the encoder adds it to counters) and help.
type Named = (&'static str, &'static str);

const INBOUND_REQUESTS: Named = (
    "baton_inbound_requests",
    "Inbound requests by route and outcome",
);
const VERIFY_LATENCY: Named = (
    "baton_verify_latency_seconds",
    "Time to verify a token signature and claims (cache misses)",
);
const VERIFY_CACHE: Named = (
    "baton_verify_cache_lookups",
    "Verified-token cache lookups by outcome (hit, miss)",
);
const JWKS_FETCHES: Named = (
    "baton_jwks_fetches",
    "Discovery and JWKS fetches by outcome (ok, error)",
);
const JWKS_AGE: Named = (
    "baton_jwks_age_seconds",
    "Seconds since the key set in use was fetched (-1 before the first load)",
);
const CONFIG_RELOADS: Named = (
    "baton_config_reloads",
    "Configuration reloads by outcome (ok, error)",
);
const LOGIN_EVENTS: Named = (
    "baton_login_events",
    "Edge browser sign-in steps by outcome",
);
const TRACE_SPANS_DROPPED: Named = (
    "baton_trace_spans_dropped",
    "Finished trace spans dropped instead of exported (queue full or export failed)",
);

/// `metric`, registered in `registry` as `named`: the registry keeps a handle to encode, the
/// caller the metric to record into.
fn registered<M: Metric + Clone>(registry: &mut Registry, (name, help): Named, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Creates every metric and registers it, in the order `/metrics` lists them.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let inbound_requests = registered(&mut r, INBOUND_REQUESTS, Family::default());
        let verify_latency = Latency::new(exponential_buckets(0.000_01, 2.0, 16));
        let verify_latency = registered(&mut r, VERIFY_LATENCY, verify_latency);
        let verify_cache = registered(&mut r, VERIFY_CACHE, Family::default());
        let jwks_fetches = registered(&mut r, JWKS_FETCHES, Family::default());
        let jwks_age = registered(&mut r, JWKS_AGE, Gauge::default());
        let config_reloads = registered(&mut r, CONFIG_RELOADS, Family::default());
        let login_events = registered(&mut r, LOGIN_EVENTS, Family::default());
        let trace_spans_dropped = registered(&mut r, TRACE_SPANS_DROPPED, Counter::default());
        let exchange = ExchangeMetrics::default();
        exchange.register(&mut r);
        Self {
            registry: r,
            inbound_requests,
            verify_latency,
            verify_cache,
            jwks_fetches,
            jwks_age,
            config_reloads,
            login_events,
            trace_spans_dropped,
            exchange,
        }
    }

    /// Every metric in the Prometheus text format (0.0.4), which has no exemplars: the
    /// OpenMetrics text without them.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        for line in self.encode_openmetrics().lines() {
            out.push_str(without_exemplar(line));
            out.push('\n');
        }
        out
    }

    /// Every metric in the OpenMetrics text format, with the latency histograms' exemplars.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts one edge sign-in step.
    pub fn login(&self, outcome: &'static str) {
        self.login_events.get_or_create(&Outcome { outcome }).inc();
    }

    /// Counts one inbound request.
    pub fn inbound(&self, route: &str, outcome: &'static str) {
        self.inbound_counter(route, outcome).inc();
    }

    /// The `baton_inbound_requests_total{route, outcome}` counter itself, for callers that look
    /// it up once and count many times.
    pub fn inbound_counter(&self, route: &str, outcome: &'static str) -> Counter {
        self.inbound_requests
            .get_or_create(&RouteOutcome {
                route: route.to_owned(),
                outcome,
            })
            .clone()
    }
}

// === outbound ===

/// `{route}` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name.
    pub route: String,
}

/// `{route, outcome}` labels; outcome is `ok`, `refused`, `bad_answer` or `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Route name.
    pub route: String,
    /// `ok`, `refused`, `bad_answer` or `unavailable`.
    pub outcome: &'static str,
}

/// `{route, reason}` labels; reason is a fixed word ([`crate::exchange::BadAnswer::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Route name.
    pub route: String,
    /// Why the answer was refused: `shape`, `access_token`, `token_type`, `issued_token_type`,
    /// `sub` or `aud`.
    pub reason: &'static str,
}

/// The outbound side's metrics: token exchanges and the exchanged-token cache.
#[derive(Clone)]
pub struct ExchangeMetrics {
    /// `baton_exchange_latency_seconds{route}`: IdP round trips (misses only).
    pub latency: Family<RouteLabel, Latency>,
    /// `baton_exchanges_total{route,outcome}`: IdP calls by outcome.
    pub exchanges: Family<OutcomeLabels, Counter>,
    /// `baton_exchange_cache_hits_total{route}`.
    pub hits: Family<RouteLabel, Counter>,
    /// `baton_exchange_cache_misses_total{route}`.
    pub misses: Family<RouteLabel, Counter>,
    /// `baton_exchange_answers_refused_total{route,reason}`: 2xx token-endpoint answers that
    /// were not what was asked for, and so were neither cached nor sent.
    pub answers_refused: Family<ReasonLabels, Counter>,
}

impl Default for ExchangeMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(|| {
                Latency::new(exponential_buckets(0.001, 2.0, 14))
            }),
            exchanges: Family::default(),
            hits: Family::default(),
            misses: Family::default(),
            answers_refused: Family::default(),
        }
    }
}

impl ExchangeMetrics {
    /// Registers every metric under its `baton_` name (counters get `_total` from the encoder).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_exchange_latency_seconds",
            "Token-exchange round trips to the IdP",
            self.latency.clone(),
        );
        registry.register(
            "baton_exchanges",
            "Token-exchange calls to the IdP by outcome",
            self.exchanges.clone(),
        );
        registry.register(
            "baton_exchange_cache_hits",
            "Exchanged-token cache hits",
            self.hits.clone(),
        );
        registry.register(
            "baton_exchange_cache_misses",
            "Exchanged-token cache misses",
            self.misses.clone(),
        );
        registry.register(
            "baton_exchange_answers_refused",
            "Token-endpoint answers refused by reason (not the token type, subject or audience asked for)",
            self.answers_refused.clone(),
        );
    }

    /// Counts one token-endpoint answer for `route` refused for `reason`.
    pub fn answer_refused(&self, route: &str, reason: &'static str) {
        self.answers_refused
            .get_or_create(&ReasonLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records one IdP call for `route`.
    pub fn exchanged(&self, route: &str, outcome: &'static str, took: Duration) {
        let route = route.to_owned();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(took.as_secs_f64(), exemplar());
        self.exchanges
            .get_or_create(&OutcomeLabels { route, outcome })
            .inc();
    }

    /// The cache hit and miss counters of `route`, for callers that look them up once and count
    /// many times: a lookup by label copies the name and hashes it, on every request.
    pub fn lookups(&self, route: &str) -> Lookups {
        let label = RouteLabel {
            route: route.to_owned(),
        };
        Lookups {
            hit: self.hits.get_or_create(&label).clone(),
            miss: self.misses.get_or_create(&label).clone(),
        }
    }
}

/// One route's `baton_exchange_cache_{hits,misses}_total` counters ([`ExchangeMetrics::lookups`]).
pub struct Lookups {
    /// Served from the cache.
    pub hit: Counter,
    /// Fetched from the IdP.
    pub miss: Counter,
}

#[cfg(test)]
mod tests;
