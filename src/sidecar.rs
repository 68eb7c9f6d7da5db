//! `baton run`: the inbound, outbound and admin listeners of one sidecar wired together, with
//! config reload ([`reload`]) and its shutdown order (readyz 503 → stop accepting →
//! drain → log).

pub mod reload;

use crate::admin::{self, Admin, AppProbes};
use crate::config::Config;
use crate::inbound::{self, Inbound};
use crate::jwt::jwks::{self, Jwks};
use crate::outbound::{self, Outbound};
use crate::server::Drained;
use crate::shutdown::{self, Shutdown, Trigger};
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

/// The sockets of one sidecar, bound before anything else starts.
pub struct Listeners {
    /// Client traffic for the app.
    pub inbound: TcpListener,
    /// The app's forward-proxy calls.
    pub outbound: TcpListener,
    /// Health, readiness, metrics, config.
    pub admin: TcpListener,
    /// One per `outbound.ports` entry, in config order.
    pub ports: Vec<TcpListener>,
}

impl Listeners {
    /// Binds the addresses `cfg` names.
    pub async fn bind(cfg: &Config) -> Result<Self, Error> {
        let l = &cfg.listeners;
        let mut ports = Vec::with_capacity(cfg.outbound.ports.len());
        for p in &cfg.outbound.ports {
            ports.push(bind("outbound port", p.listen).await?);
        }
        Ok(Self {
            inbound: bind("inbound", l.inbound).await?,
            outbound: bind("outbound", l.outbound).await?,
            admin: bind("admin", l.admin).await?,
            ports,
        })
    }

    /// Binds every listener on `127.0.0.1:0` (tests and `baton demo`).
    pub async fn ephemeral(cfg: &Config) -> Result<Self, Error> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut ports = Vec::with_capacity(cfg.outbound.ports.len());
        for _ in &cfg.outbound.ports {
            ports.push(bind("outbound port", any).await?);
        }
        Ok(Self {
            inbound: bind("inbound", any).await?,
            outbound: bind("outbound", any).await?,
            admin: bind("admin", any).await?,
            ports,
        })
    }
}

async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { name, addr, source })
}

/// A started sidecar.
pub struct Running {
    /// Where the inbound listener accepts.
    pub inbound: SocketAddr,
    /// Where the forward proxy accepts (`HTTP_PROXY`).
    pub outbound: SocketAddr,
    /// Where the admin listener accepts.
    pub admin: SocketAddr,
    /// The local upstream ports, in config order.
    pub ports: Vec<SocketAddr>,
    /// The metrics all three listeners record into.
    pub metrics: Arc<Metrics>,
    /// The key cache (readiness).
    pub jwks: Arc<Jwks>,
    trigger: Trigger,
    admin_trigger: Trigger,
    tasks: JoinSet<(&'static str, Drained)>,
    admin_task: JoinSet<(&'static str, Drained)>,
    tracing: Option<Arc<crate::otel::Tracing>>,
}

impl Running {
    /// Waits until the JWKS has loaded (the readiness latch), at most `limit`.
    pub async fn ready(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.jwks.wait_ready())
            .await
            .is_ok()
    }

    /// Shuts down in that order and reports whether every listener drained cleanly:
    /// `/readyz` turns 503 and the traffic listeners drain; the admin listener stops last.
    pub async fn stop(mut self) -> bool {
        self.trigger.fire();
        let clean = drain(&mut self.tasks).await;
        self.admin_trigger.fire();
        let clean = drain(&mut self.admin_task).await && clean;
        if let Some(t) = &self.tracing {
            t.shutdown();
        }
        clean
    }
}

async fn drain(tasks: &mut JoinSet<(&'static str, Drained)>) -> bool {
    let mut clean = true;
    {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((name, Drained::Clean)) => info!(listener = name, "stopped"),
                Ok((name, Drained::Cut(n))) => {
                    warn!(
                        listener = name,
                        connections = n,
                        "stopped with connections cut"
                    );
                    clean = false;
                }
                Err(e) => {
                    error!(error = %e, "listener task failed");
                    clean = false;
                }
            }
        }
    }
    clean
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
    let jwks = Jwks::start(
        &cfg.issuer,
        &cfg.algorithms,
        cfg.jwks.clone(),
        jwks::http_client_for(&cfg.issuer)?,
        metrics.clone(),
    );
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
    let jwks = Jwks::start(
        &cfg.issuer,
        &cfg.algorithms,
        cfg.jwks.clone(),
        jwks::http_client_for(&cfg.issuer)?,
        metrics.clone(),
    );
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

async fn start_traced(
    cfg: Config,
    listeners: Listeners,
    config_path: Option<PathBuf>,
    app_probes: AppProbes,
    metrics: Arc<Metrics>,
    jwks: Arc<Jwks>,
    tracing: Option<Arc<crate::otel::Tracing>>,
) -> Result<Running, Error> {
    let mut inbound = Inbound::new(&cfg, jwks.clone(), metrics.clone());
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
    if let Some(t) = &tracing {
        inbound = inbound.with_tracing(t.clone());
        outbound = outbound.with_tracing(t.clone());
    }
    let inbound_state = Arc::new(inbound);
    let outbound_state: Arc<Outbound> = Arc::new(outbound);
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
    let addr = |l: &TcpListener| {
        l.local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    let (inbound_addr, outbound_addr, admin_addr) = (
        addr(&listeners.inbound),
        addr(&listeners.outbound),
        addr(&listeners.admin),
    );
    let ports: Vec<SocketAddr> = listeners.ports.iter().map(addr).collect();

    let mut tasks = JoinSet::new();
    let wait = |s: &Shutdown| s.clone().wait();
    tasks.spawn(named(
        "inbound",
        inbound::serve(inbound_state.clone(), listeners.inbound, wait(&signal)),
    ));
    tasks.spawn(named(
        "outbound",
        outbound::serve(
            outbound_state.clone(),
            listeners.outbound,
            cfg.limits.clone(),
            wait(&signal),
        ),
    ));
    for (i, l) in listeners.ports.into_iter().enumerate() {
        tasks.spawn(named(
            "outbound port",
            outbound::serve_port(
                outbound_state.clone(),
                i,
                l,
                cfg.limits.clone(),
                wait(&signal),
            ),
        ));
    }
    let mut admin_task = JoinSet::new();
    admin_task.spawn(named(
        "admin",
        admin::serve(admin_state, listeners.admin, admin_signal.wait()),
    ));
    if let Some(path) = config_path {
        let reloader = reload::Reloader::new(
            path,
            cfg.clone(),
            inbound_state,
            outbound_state,
            metrics.clone(),
        );
        tokio::spawn(reload::watch(reloader, RELOAD_POLL, wait(&signal)));
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        audience = %cfg.audience,
        inbound = %inbound_addr,
        outbound = %outbound_addr,
        admin = %admin_addr,
        app_probes,
        mode = ?cfg.mode,
        "baton sidecar started"
    );
    Ok(Running {
        inbound: inbound_addr,
        outbound: outbound_addr,
        admin: admin_addr,
        ports,
        metrics,
        jwks,
        trigger,
        admin_trigger,
        tasks,
        admin_task,
        tracing,
    })
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
