//! `baton run`: the inbound, outbound and admin listeners of one sidecar wired together, with
//! config reload ([`reload`]) and its shutdown order (readyz 503 → stop accepting →
//! drain → log).

mod listeners;
pub mod reload;
mod running;

pub use listeners::Listeners;
pub use running::Running;

use crate::admin::{self, Admin, AppProbes};
use crate::config::Config;
use crate::inbound::{self, Inbound};
use crate::jwt::jwks::{self, Jwks};
use crate::outbound::{self, Outbound};
use crate::server::Drained;
use crate::shutdown::{self, Shutdown};
use crate::telemetry::Metrics;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

/// How often `baton run` looks at the config file's modification time (SIGHUP reloads at once).
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener address could not be bound.
    #[error("bind {name} listener on {addr}: {source}")]
    Bind {
        /// Which listener.
        name: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The HTTP client for discovery and JWKS could not be built.
    #[error("build the IdP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The outbound side could not be built.
    #[error(transparent)]
    Outbound(#[from] outbound::Error),
    /// The `tracing:` settings or the `OTEL_*` variables are unusable.
    #[error(transparent)]
    Tracing(#[from] crate::otel::Error),
    /// The inbound listener's certificate, key or client CA (`inbound.tls`) does not load.
    #[error("inbound.tls: {0}")]
    InboundTls(#[from] crate::tls::TlsError),
}

/// Starts a sidecar on already-bound `listeners`. With `config_path`, the config is reloaded on
/// SIGHUP and when the file changes, both sides at once; a new config that is invalid or changes
/// what only a restart applies is refused and the old one kept ([`reload`]).
pub async fn start(
    cfg: Config,
    listeners: Listeners,
    config_path: Option<PathBuf>,
) -> Result<Running, Error> {
    start_with_app_probes(cfg, listeners, config_path, AppProbes::none()).await
}

/// Like [`start`], with the admin listener also running `app_probes` under `/app-health/`: the
/// app probes that capture mode moved to the admin port (`baton run` reads them from
/// `BATON_APP_PROBES`).
pub async fn start_with_app_probes(
    cfg: Config,
    listeners: Listeners,
    config_path: Option<PathBuf>,
    app_probes: AppProbes,
) -> Result<Running, Error> {
    let metrics = Arc::new(Metrics::new());
    let jwks = start_jwks(&cfg, &metrics)?;
    let tracing = match crate::otel::Settings::resolve(
        cfg.tracing.as_ref(),
        &format!("{}-baton", cfg.audience),
    )? {
        Some(settings) => Some(crate::otel::Tracing::start(
            &settings,
            metrics.trace_spans_dropped.clone(),
        )?),
        None => None,
    };
    start_traced(
        cfg,
        listeners,
        config_path,
        app_probes,
        metrics,
        jwks,
        tracing,
    )
    .await
}

/// Like [`start`], with the spans of this sidecar going to `tracing` (`baton demo` collects them
/// in-process) rather than where the config and the `OTEL_*` variables say.
pub async fn start_with_tracing(
    cfg: Config,
    listeners: Listeners,
    tracing: Option<Arc<crate::otel::Tracing>>,
) -> Result<Running, Error> {
    let metrics = Arc::new(Metrics::new());
    let jwks = start_jwks(&cfg, &metrics)?;
    start_traced(
        cfg,
        listeners,
        None,
        AppProbes::none(),
        metrics,
        jwks,
        tracing,
    )
    .await
}

/// Starts the key set of `cfg.issuer`, which the inbound side verifies with and readiness waits
/// for.
fn start_jwks(cfg: &Config, metrics: &Arc<Metrics>) -> Result<Arc<Jwks>, Error> {
    Ok(Jwks::start(
        &cfg.issuer,
        &cfg.algorithms,
        cfg.jwks.clone(),
        jwks::http_client_for(&cfg.issuer)?,
        metrics.clone(),
    ))
}

async fn start_traced(
    cfg: Config,
    listeners: Listeners,
    config_path: Option<PathBuf>,
    app_probes: AppProbes,
    metrics: Arc<Metrics>,
    jwks: Arc<Jwks>,
    tracing: Option<Arc<crate::otel::Tracing>>,
) -> Result<Running, Error> {
    let (inbound_state, outbound_state) = both_sides(&cfg, &jwks, &metrics, tracing.as_ref())?;
    let (trigger, signal) = shutdown::channel();
    let (admin_trigger, admin_signal) = shutdown::channel();
    let admin_state = Arc::new(
        Admin::new(
            inbound_state.clone(),
            jwks.clone(),
            metrics.clone(),
            signal.clone(),
        )
        .with_app_probes(app_probes),
    );
    let app_probes = admin_state.app_probes().len();
    let Listeners {
        inbound,
        outbound,
        admin,
        ports,
    } = listeners;
    let (inbound_addr, outbound_addr, admin_addr) =
        (local(&inbound), local(&outbound), local(&admin));
    let port_addrs = ports.iter().map(local).collect();
    let tasks = serve_traffic(
        &cfg,
        (inbound, outbound, ports),
        &inbound_state,
        &outbound_state,
        &signal,
    );
    let mut admin_task = JoinSet::new();
    admin_task.spawn(named(
        "admin",
        admin::serve(admin_state, admin, admin_signal.wait()),
    ));
    if let Some(path) = config_path {
        let reloader = reload::Reloader::new(
            path,
            cfg.clone(),
            inbound_state,
            outbound_state,
            metrics.clone(),
        );
        tokio::spawn(reload::watch(reloader, RELOAD_POLL, signal.wait()));
    }
    let running = Running {
        inbound: inbound_addr,
        outbound: outbound_addr,
        admin: admin_addr,
        ports: port_addrs,
        metrics,
        jwks,
        trigger,
        admin_trigger,
        tasks,
        admin_task,
        tracing,
    };
    log_started(&cfg, &running, app_probes);
    Ok(running)
}

/// The one line `baton run` logs once every listener serves.
fn log_started(cfg: &Config, running: &Running, app_probes: usize) {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        audience = %cfg.audience,
        inbound = %running.inbound,
        outbound = %running.outbound,
        admin = %running.admin,
        app_probes,
        mode = ?cfg.mode,
        "baton sidecar started"
    );
}

/// The inbound and outbound sides of `cfg`, sharing the confined-token handles and, when
/// `tracing` is on, the spans' destination.
fn both_sides(
    cfg: &Config,
    jwks: &Arc<Jwks>,
    metrics: &Arc<Metrics>,
    tracing: Option<&Arc<crate::otel::Tracing>>,
) -> Result<(Arc<Inbound>, Arc<Outbound>), Error> {
    let mut inbound = Inbound::new(cfg, jwks.clone(), metrics.clone());
    if let Some(t) = &cfg.inbound.tls {
        let tls =
            crate::tls::ReloadingAcceptor::load(&t.cert_file, &t.key_file, t.client_ca.clone())?;
        inbound = inbound.with_tls(tls);
    }
    let mut outbound = Outbound::new(
        cfg.outbound.clone(),
        Some(&cfg.issuer),
        metrics.exchange.clone(),
    )?
    .with_tunnel_idle(cfg.limits.idle_timeout);
    // Always made, so that `inbound.confine_token` can be turned on by a reload.
    let handles = Arc::new(crate::confine::Handles::new(
        crate::confine::DEFAULT_CAPACITY,
    ));
    inbound = inbound.with_handles(handles.clone());
    outbound = outbound.with_handles(handles);
    if let Some(t) = tracing {
        inbound = inbound.with_tracing(t.clone());
        outbound = outbound.with_tracing(t.clone());
    }
    Ok((Arc::new(inbound), Arc::new(outbound)))
}

/// Serves the traffic listeners (inbound, the forward proxy, each upstream port) until `signal`;
/// the admin listener is served apart, as it stops last.
fn serve_traffic(
    cfg: &Config,
    (inbound_listener, outbound_listener, ports): (TcpListener, TcpListener, Vec<TcpListener>),
    inbound_state: &Arc<Inbound>,
    outbound_state: &Arc<Outbound>,
    signal: &Shutdown,
) -> JoinSet<(&'static str, Drained)> {
    let mut tasks = JoinSet::new();
    let wait = || signal.clone().wait();
    tasks.spawn(named(
        "inbound",
        inbound::serve(inbound_state.clone(), inbound_listener, wait()),
    ));
    tasks.spawn(named(
        "outbound",
        outbound::serve(
            outbound_state.clone(),
            outbound_listener,
            cfg.limits.clone(),
            wait(),
        ),
    ));
    for (i, l) in ports.into_iter().enumerate() {
        tasks.spawn(named(
            "outbound port",
            outbound::serve_port(outbound_state.clone(), i, l, cfg.limits.clone(), wait()),
        ));
    }
    tasks
}

/// Where `listener` accepts (`0.0.0.0:0` if the OS cannot say).
fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

async fn named(name: &'static str, f: impl Future<Output = Drained>) -> (&'static str, Drained) {
    (name, f.await)
}

/// `baton run -c FILE`: loads and validates the config and the app probes of `BATON_APP_PROBES`
/// (exit 64 on errors), binds, serves until SIGTERM/SIGINT, then drains.
pub async fn main(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(crate::process::EXIT_CONFIG);
        }
    };
    let app_probes = match AppProbes::from_env() {
        Ok(probes) => probes,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::process::EXIT_CONFIG);
        }
    };
    let running = match Listeners::bind(&cfg).await {
        Ok(listeners) => {
            start_with_app_probes(cfg, listeners, Some(path.to_owned()), app_probes).await
        }
        Err(e) => Err(e),
    };
    let running = match running {
        Ok(r) => r,
        Err(e) => {
            error!(error = %crate::process::Chain(&e), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let signal = shutdown::os_signal().await;
    info!(signal, "shutting down: readyz now 503, draining");
    if running.stop().await {
        info!("drained; exiting");
    } else {
        warn!("exiting with connections cut at the grace deadline");
    }
    ExitCode::SUCCESS
}
