//! Metrics of the exchange client and cache (the lead folds these into `telemetry.rs`).
//! Labels are route names and fixed outcome words, never subjects or tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// `{route}` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name.
    pub route: String,
}

/// `{route, outcome}` labels; outcome is `ok`, `refused` or `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Route name.
    pub route: String,
    /// `ok`, `refused` or `unavailable`.
    pub outcome: &'static str,
}

/// The exchange metrics of one sidecar.
#[derive(Clone)]
pub struct Metrics {
    /// `baton_exchange_latency_seconds{route}`: IdP round trips (misses only).
    pub latency: Family<RouteLabel, Histogram>,
    /// `baton_exchanges_total{route,outcome}`: IdP calls by outcome.
    pub exchanges: Family<OutcomeLabels, Counter>,
    /// `baton_exchange_cache_hits_total{route}`.
    pub hits: Family<RouteLabel, Counter>,
    /// `baton_exchange_cache_misses_total{route}`.
    pub misses: Family<RouteLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            exchanges: Family::default(),
            hits: Family::default(),
            misses: Family::default(),
        }
    }
}

impl Metrics {
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
    }

    /// Records one IdP call for `route`.
    pub fn exchanged(&self, route: &str, outcome: &'static str, took: Duration) {
        let route = route.to_owned();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.exchanges
            .get_or_create(&OutcomeLabels { route, outcome })
            .inc();
    }

    /// Records a cache lookup for `route`.
    pub fn lookup(&self, route: &str, hit: bool) {
        let family = if hit { &self.hits } else { &self.misses };
        family
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_prefix_and_units() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.exchanged("b", "ok", Duration::from_millis(3));
        m.lookup("b", true);
        m.lookup("b", false);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for name in [
            "baton_exchange_latency_seconds_count{route=\"b\"} 1",
            "baton_exchanges_total{route=\"b\",outcome=\"ok\"} 1",
            "baton_exchange_cache_hits_total{route=\"b\"} 1",
            "baton_exchange_cache_misses_total{route=\"b\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
