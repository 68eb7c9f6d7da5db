//! Config reload for `baton run`: on SIGHUP or a changed file, the new `sidecar.yaml` is loaded
//! (secret, key and CA files read again), checked against what only a restart can change, and
//! applied to the inbound and outbound sides together, or refused with the reason and the old
//! configuration kept whole. The log line and `/config` always tell the configuration in force.

use crate::config::outbound::Outbound as OutboundConfig;
use crate::config::{Config, ConfigErrors};
use crate::inbound::{self, Inbound};
use crate::outbound::{self, Outbound};
use crate::telemetry::{Metrics, Outcome};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

/// Why a reload was refused; the configuration in force stays whole.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid (or a file it names cannot be read).
    #[error("reload refused: {0}")]
    Invalid(#[from] ConfigErrors),
    /// The change touches something only a restart applies.
    #[error("reload refused: needs restart: {0} changed")]
    NeedsRestart(String),
    /// The outbound state could not be built (a CA file, the token endpoint).
    #[error("reload refused: {0}")]
    Outbound(outbound::Error),
}

impl From<inbound::ReloadError> for ReloadError {
    fn from(e: inbound::ReloadError) -> Self {
        match e {
            inbound::ReloadError::Invalid(e) => Self::Invalid(e),
            inbound::ReloadError::NeedsRestart(field) => Self::NeedsRestart(field.into()),
        }
    }
}

impl From<outbound::ReloadError> for ReloadError {
    fn from(e: outbound::ReloadError) -> Self {
        match e {
            outbound::ReloadError::NeedsRestart(field) => Self::NeedsRestart(field),
            outbound::ReloadError::Build(e) => Self::Outbound(e),
        }
    }
}

/// Applies new configurations to one sidecar's two sides.
pub struct Reloader {
    path: PathBuf,
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
    metrics: Arc<Metrics>,
    /// The configuration in force.
    current: Config,
}

impl Reloader {
    /// A reloader of the sidecar started with `current` from `path`.
    pub fn new(
        path: PathBuf,
        current: Config,
        inbound: Arc<Inbound>,
        outbound: Arc<Outbound>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            path,
            inbound,
            outbound,
            metrics,
            current,
        }
    }

    /// Loads the file and applies it, counting (`baton_config_reloads_total`) and logging the
    /// result; on error nothing changes.
    pub fn reload(&mut self) -> Result<(), ReloadError> {
        let result = self.apply();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .config_reloads
            .get_or_create(&Outcome { outcome })
            .inc();
        if let Err(e) = &result {
            warn!(file = %self.path.display(), error = %e, "configuration reload refused; keeping the old one");
        }
        result
    }

    fn apply(&mut self) -> Result<(), ReloadError> {
        let cfg = Config::load(&self.path)?;
        if cfg.login.is_some() && login_client_changed(&self.current.outbound, &cfg.outbound) {
            return Err(ReloadError::NeedsRestart(
                "outbound.client, token_endpoint or timeouts (the edge login signs in with them)"
                    .into(),
            ));
        }
        // Built and checked first, installed only once the inbound side has taken the file too.
        let staged = self.outbound.prepare(cfg.outbound.clone())?;
        self.inbound.reload(&cfg)?;
        let (outbound_routes, token_cache) = (
            staged.routes(),
            if staged.keeps_cache() {
                "kept"
            } else {
                "emptied"
            },
        );
        self.outbound.install(staged);
        info!(
            file = %self.path.display(),
            routes = cfg.routes.len(),
            outbound_routes,
            unknown = ?cfg.outbound.unknown,
            connect = ?cfg.outbound.connect,
            token_cache,
            "configuration reloaded"
        );
        self.current = cfg;
        Ok(())
    }
}

/// Whether what the edge login's token client was built from changed: it is made once, at start.
fn login_client_changed(old: &OutboundConfig, new: &OutboundConfig) -> bool {
    !old.client.same_identity(&new.client)
        || old.token_endpoint != new.token_endpoint
        || old.timeout != new.timeout
        || old.connect_timeout != new.connect_timeout
}

/// Reloads on SIGHUP and when the file's modification time changes (polled every `poll`),
/// until `shutdown` resolves. A secret, key or CA file that changes alone is read again on
/// SIGHUP.
pub async fn watch(mut reloader: Reloader, poll: Duration, shutdown: impl Future<Output = ()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reloading on file change only");
            None
        }
    };
    let modified =
        |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).and_then(|m| m.modified()).ok() };
    let mut seen = modified(&reloader.path);
    let mut tick = tokio::time::interval(poll.max(Duration::from_millis(1)));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                seen = modified(&reloader.path);
                let _ = reloader.reload();
            }
            _ = tick.tick() => {
                let now = modified(&reloader.path);
                if now != seen {
                    seen = now;
                    let _ = reloader.reload();
                }
            }
        }
    }
}
