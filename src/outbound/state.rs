//! The outbound state a reload replaces at once: routes, policies, client credentials, token
//! endpoint, timeouts, per-route TLS, the token cache; built and checked ([`Outbound::prepare`])
//! before it is installed ([`Outbound::install`]).

use super::forward::Upstream;
use super::{Error, ReloadError};
use crate::config::outbound::Outbound as Config;
use crate::exchange::cache::{Cache, Key, Lookup};
use crate::exchange::{ExchangeError, Exchanger, Issued, Target};
use crate::secret::Token;
use crate::server::Limits;
use crate::telemetry::{ExchangeMetrics as Metrics, Lookups};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The outbound side of one sidecar. Routes, policies, client credentials, token endpoint,
/// timeouts and per-route TLS live in an [`Active`] state that a reload replaces at once: a
/// request runs to its end on the state it started with, the next one takes the new state.
pub struct Outbound {
    pub(super) active: ArcSwap<Active>,
    /// The top-level `issuer` (token-endpoint discovery, the client assertion's audience).
    issuer: Option<String>,
    pub(super) metrics: Metrics,
    /// A CONNECT tunnel with no byte moving for this long is closed.
    pub(super) tunnel_idle: Duration,
    /// Numbers each installed state, so that a connection's [`LastKey`] never carries a route
    /// number over to the state where that number names another route.
    generation: AtomicU64,
    /// The handles the inbound side gave the app (`inbound.confine_token`), swapped back here.
    pub(super) handles: Option<Arc<crate::confine::Handles>>,
    /// Where spans go, when tracing is on.
    pub(super) tracing: Option<Arc<crate::otel::Tracing>>,
}

/// The part of the outbound side a reload replaces: everything the configuration shapes.
pub(super) struct Active {
    /// Numbers this state among those installed (see [`crate::exchange::cache::RouteId`]).
    pub(super) generation: u64,
    pub(super) cfg: Config,
    pub(super) targets: Vec<Target>,
    /// Each route's cache hit and miss counters, looked up once.
    lookups: Vec<Lookups>,
    pub(super) exchanger: Exchanger,
    pub(super) cache: Cache,
    pub(super) upstream: Upstream,
}

/// A new outbound state, built and checked, waiting for [`Outbound::install`].
pub struct Staged {
    active: Active,
    kept_cache: bool,
}

impl Staged {
    /// Whether the exchanged tokens cached so far stay in use (same client identity, token
    /// endpoint and cache settings), or the new state starts with an empty cache.
    pub fn keeps_cache(&self) -> bool {
        self.kept_cache
    }

    /// How many routes the new state has.
    pub fn routes(&self) -> usize {
        self.active.cfg.routes.len()
    }
}

impl Outbound {
    /// Builds the state. `issuer` is the top-level `issuer` (token-endpoint discovery and the
    /// client assertion's audience; calls to it are forwarded without exchange); `metrics` are
    /// the sidecar's exchange metrics, registered in [`crate::telemetry::Metrics`].
    pub fn new(cfg: Config, issuer: Option<&str>, metrics: Metrics) -> Result<Self, Error> {
        let active = Active::new(cfg, issuer, &metrics, None, 0)?;
        Ok(Self {
            active: ArcSwap::from_pointee(active.0),
            issuer: issuer.map(str::to_owned),
            metrics,
            tunnel_idle: Limits::default().idle_timeout,
            generation: AtomicU64::new(0),
            handles: None,
            tracing: None,
        })
    }

    /// Swaps handles from `handles` back to the tokens they stand for ([`crate::confine`]).
    pub fn with_handles(mut self, handles: Arc<crate::confine::Handles>) -> Self {
        self.handles = Some(handles);
        self
    }

    /// Traces every request into `tracing` (module [`crate::otel`]).
    pub fn with_tracing(mut self, tracing: Arc<crate::otel::Tracing>) -> Self {
        self.tracing = Some(tracing);
        self
    }

    /// Closes CONNECT tunnels after `idle` with no byte moving either way (default: the
    /// default `limits.idle_timeout`; the sidecar sets its configured one).
    pub fn with_tunnel_idle(mut self, idle: Duration) -> Self {
        self.tunnel_idle = idle;
        self
    }

    /// The exchange metrics, to register with the admin listener's registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds the state for `cfg` without installing it: every route, policy, the client
    /// credentials (as `cfg` holds them, read from their files when it was loaded), the token
    /// endpoint, timeouts and each route's TLS trust (its `ca_file` read again). Refused when
    /// the local `ports` change (their listeners are bound at start) or the state cannot be
    /// built; then nothing changes.
    ///
    /// The token cache carries over only when the client identity (id and credential), token
    /// endpoint and cache settings are unchanged; otherwise the new state starts empty, so no
    /// token obtained under the old identity is sent after the change. Entries of routes that
    /// are gone can never be looked up again: a lookup starts from a route of the new state.
    pub fn prepare(&self, cfg: Config) -> Result<Staged, ReloadError> {
        let old = self.active.load();
        let listens = |c: &Config| c.ports.iter().map(|p| p.listen).collect::<Vec<_>>();
        if listens(&old.cfg) != listens(&cfg) {
            return Err(ReloadError::NeedsRestart(
                "outbound.ports (listen addresses)".into(),
            ));
        }
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let (active, kept_cache) = Active::new(
            cfg,
            self.issuer.as_deref(),
            &self.metrics,
            Some(&old),
            generation,
        )?;
        Ok(Staged { active, kept_cache })
    }

    /// Makes `staged` the state of every request that starts from now on.
    pub fn install(&self, staged: Staged) {
        self.generation
            .store(staged.active.generation, Ordering::Relaxed);
        self.active.store(Arc::new(staged.active));
    }

    /// [`Outbound::prepare`] then [`Outbound::install`].
    pub fn reload(&self, cfg: Config) -> Result<(), ReloadError> {
        let staged = self.prepare(cfg)?;
        self.install(staged);
        Ok(())
    }
}

impl Active {
    /// The state for `cfg`; with `previous`, its keep-alive pools, discovered token endpoint
    /// and (when the identity is the same) its token cache carry over. Returns whether the
    /// cache did.
    fn new(
        cfg: Config,
        issuer: Option<&str>,
        metrics: &Metrics,
        previous: Option<&Active>,
        generation: u64,
    ) -> Result<(Self, bool), Error> {
        let mut exchanger = Exchanger::new(&cfg, issuer)?;
        if let Some(p) = previous {
            exchanger.holder_from(&p.exchanger);
        }
        let same_endpoint = previous.filter(|p| p.cfg.token_endpoint == cfg.token_endpoint);
        if let Some(p) = same_endpoint {
            exchanger.endpoint_from(&p.exchanger);
        }
        let same_identity = same_endpoint
            .filter(|p| p.cfg.client.same_identity(&cfg.client) && p.cfg.cache == cfg.cache);
        let cache = match same_identity {
            Some(p) => p.cache.clone(),
            None => Cache::new(
                cfg.cache.max_entries,
                cfg.cache.skew,
                cfg.cache.negative_ttl,
            ),
        };
        let upstream = Upstream::new(&cfg, previous.map(|p| &p.upstream))?;
        let targets = cfg.routes.iter().map(Target::of).collect();
        let lookups = cfg
            .routes
            .iter()
            .map(|r| metrics.lookups(&r.name))
            .collect();
        let active = Self {
            generation,
            cfg,
            targets,
            lookups,
            exchanger,
            cache,
            upstream,
        };
        Ok((active, same_identity.is_some()))
    }

    /// A token for `route` on behalf of `subject` (or the service itself), cached.
    pub(super) async fn token(
        &self,
        metrics: &Metrics,
        route: usize,
        key: Key,
        subject: Option<&[u8]>,
    ) -> Result<(Arc<Issued>, Lookup), ExchangeError> {
        let (name, target) = (&self.cfg.routes[route].name, &self.targets[route]);
        let dpop = self.cfg.routes[route].dpop;
        let fetch = || async move {
            let start = Instant::now();
            let r = match subject {
                // Visible ASCII (`subject`), so the conversion is lossless; made on a miss only.
                Some(t) => {
                    let t = Token::new(String::from_utf8_lossy(t));
                    self.exchanger.exchange(&t, target, dpop).await
                }
                None => self.exchanger.client_credentials(target, dpop).await,
            };
            let outcome = match &r {
                Ok(_) => "ok",
                Err(ExchangeError::Refused { .. }) => "refused",
                Err(ExchangeError::BadAnswer(why)) => {
                    metrics.answer_refused(name, why.as_str());
                    "bad_answer"
                }
                Err(_) => "unavailable",
            };
            metrics.exchanged(name, outcome, start.elapsed());
            r
        };
        let got = self.cache.get_or_fetch(key, subject, fetch).await?;
        let counters = &self.lookups[route];
        match got.1 {
            Lookup::Hit => counters.hit.inc(),
            Lookup::Miss => counters.miss.inc(),
        };
        Ok(got)
    }
}
