//! The part of the inbound configuration a reload may change, swapped whole: in-flight requests
//! finish with the old one, new requests take the new one.

use super::{APP_CONNECT_TIMEOUT, Inbound};
use crate::config::{AppProtocol, Config, ConfigErrors, Route};
use crate::http::pool::Pool;
use crate::http::pool::h2::H2Pool;
use crate::telemetry::{Metrics, Outcome};
use prometheus_client::metrics::counter::Counter;
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};

/// The part of the configuration a reload may change.
pub(super) struct Active {
    pub(super) config: Config,
    pub(super) hint: String,
    /// `config.app` as a URI authority, made once rather than formatted per request.
    pub(super) app_authority: http::uri::Authority,
    /// Keep-alive connections to `config.app`, kept across reloads that keep the address.
    pub(super) app: Arc<Pool>,
    /// The HTTP/2 connection to `config.app` when `app_protocol: http2`, kept across reloads
    /// that keep the address and the protocol.
    pub(super) app_h2: Option<Arc<H2Pool>>,
    /// Per route (same order as `config.routes`), the counter of the requests it forwards
    /// (`outcome="allowed"`, or `"public"`), looked up once: a forwarded request hashes no labels.
    pub(super) forwarded: Vec<Counter>,
}

impl Active {
    pub(super) fn new(config: &Config, metrics: &Metrics, previous: Option<&Active>) -> Self {
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
pub(super) fn passing_outcome(route: &Route) -> &'static str {
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
    /// Applies a new configuration: routes, mode, claims and peer headers, the `inbound:` path
    /// and header rules, `admin.expose_config` and app address change at once for new requests;
    /// in-flight requests finish with the old ones. Issuers, audience, algorithms, leeway, JWKS
    /// settings, listeners, limits and `inbound.tls` need a restart (the files `inbound.tls`
    /// names are read again when they change); which issuers and peers a route accepts are
    /// route rules.
    pub fn reload(&self, cfg: &Config) -> Result<(), ReloadError> {
        let previous = self.active();
        let old = &previous.config;
        let fixed: [(&'static str, bool); 12] = [
            ("inbound.tls", old.inbound.tls != cfg.inbound.tls),
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
}

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
