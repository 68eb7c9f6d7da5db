//! `baton webhook`: the mutating admission webhook. `POST /mutate` takes an AdmissionReview
//! (`admission.k8s.io/v1`) for a Pod and answers with the RFC 6902 JSONPatch from the original
//! pod to the one [`super::mutate::mutate`] returns: the same function as `baton inject`, so
//! both give the same pod. `POST /mutate/namespace-enabled` is the same for pods of namespaces
//! whose label opted in (the MutatingWebhookConfiguration's namespace selector says so; the
//! API server sends no namespace metadata). `GET /healthz`, `GET /metrics`, also on the optional
//! plain-HTTP health listener, which serves nothing else.
//!
//! Any pod author can make the API server send a review, so what one costs is bounded: a body of
//! at most [`MAX_REVIEW_BYTES`], read only under one of `--max-concurrent` permits (taken before
//! the body is read, which must arrive within 5 s; beyond them a fast 429 with `Retry-After`,
//! which the API server's client retries within the webhook's timeout), parsed as a typed review whose pod is at most
//! [`parse::MAX_POD_VALUES`] values ([`parse`]). At most [`MAX_CONNECTIONS`] connections, each
//! buffering at most hyper's 1 MiB HTTP/2 window. `--client-ca` limits callers to clients with a
//! certificate that CA signed (the API server's), and `deploy/k8s/webhook-networkpolicy.yaml` to
//! the control plane's addresses.

use super::policy::{Policy, PolicyArgs};
use crate::http::{Body, BodyError, BoxError, json, read_limited, text};
use crate::server::Limits;
use crate::tls::{self, ReloadingCert};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{error, info, instrument, warn};

mod admission;
pub mod parse;

pub use admission::{Malformed, review};

/// The largest AdmissionReview read. A Pod's review is the pod and a few short fields; the API
/// server caps all of a pod's annotations at 256 KiB, and real pods are tens of KiB.
pub const MAX_REVIEW_BYTES: usize = 1 << 20;
/// Reviews handled at once when `--max-concurrent` is not given.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// Connections held at once: the API server keeps a few (HTTP/2 multiplexes its calls).
pub const MAX_CONNECTIONS: usize = 32;
/// How long the body of a review may take to arrive while it holds a permit. The API server
/// gives up after the webhook's `timeoutSeconds` (5 in `webhook-config.yaml`, 30 at most), so a
/// body still trickling in after that serves nobody.
const BODY_DEADLINE: Duration = Duration::from_secs(5);

/// Arguments of `baton webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first; reloaded when it changes.
    #[arg(long, default_value = "/etc/baton-webhook/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key; reloaded when it changes.
    #[arg(long, default_value = "/etc/baton-webhook/tls.key")]
    pub tls_key: PathBuf,
    /// How often to look for a renewed certificate, in seconds.
    #[arg(long, default_value_t = 10)]
    pub reload_seconds: u64,
    /// PEM CA certificates: when given, only clients presenting a certificate one of them signed
    /// may connect (give the CA of the API server's webhook client certificate, and no other).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Plain-HTTP address for `/healthz` and `/metrics` only (kubelet probes, scrapers), so that
    /// the HTTPS port can be limited to the API server.
    #[arg(long)]
    pub health_listen: Option<SocketAddr>,
    /// Reviews handled at once; more get 429 with `Retry-After: 1`.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent: usize,
    /// Sidecar uid and allowed images.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `outcome` label of `baton_webhook_reviews_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The webhook's state: the operator's policy, the review permits and the metrics.
#[derive(Debug)]
pub struct Webhook {
    policy: Policy,
    permits: Semaphore,
    reviews: Family<OutcomeLabel, Counter>,
    registry: Registry,
}

impl Default for Webhook {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhook {
    /// A webhook with the default policy and [`DEFAULT_MAX_CONCURRENT`] permits.
    pub fn new() -> Self {
        Self::with(Policy::default(), DEFAULT_MAX_CONCURRENT)
    }

    /// A webhook under `policy` handling at most `max_concurrent` reviews at once, with its own
    /// registry holding `baton_webhook_reviews_total{outcome}` (`injected`, `skipped`, `denied`,
    /// `ignored`, `malformed`, `busy`).
    pub fn with(policy: Policy, max_concurrent: usize) -> Self {
        let reviews = Family::<OutcomeLabel, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "baton_webhook_reviews",
            "AdmissionReviews answered, by outcome",
            reviews.clone(),
        );
        Self {
            policy,
            permits: Semaphore::new(max_concurrent.max(1)),
            reviews,
            registry,
        }
    }

    /// How many reviews ended with `outcome`.
    pub fn reviews(&self, outcome: &'static str) -> u64 {
        self.reviews.get_or_create(&OutcomeLabel { outcome }).get()
    }

    fn count(&self, outcome: &'static str) {
        self.reviews.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// Routes one request; never fails, never panics on input.
#[instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle<B>(state: &Webhook, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let enabled = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => return metrics(state),
        (&Method::POST, "/mutate") => false,
        (&Method::POST, "/mutate/namespace-enabled") => true,
        (_, "/mutate" | "/mutate/namespace-enabled") => {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
        }
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    // The permit is taken before the body is read: a review that finds none holds no memory.
    let Ok(_permit) = state.permits.try_acquire() else {
        state.count("busy");
        warn!("admission review refused: every permit is in use");
        let mut rsp = text(StatusCode::TOO_MANY_REQUESTS, "busy: retry in a second\n");
        rsp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return rsp;
    };
    let read = tokio::time::timeout(
        BODY_DEADLINE,
        read_limited(req.into_body(), MAX_REVIEW_BYTES),
    );
    let body = match read.await {
        Ok(Ok(b)) => b,
        Err(_) => {
            state.count("malformed");
            let msg = "admission review: body not received in time\n";
            return text(StatusCode::REQUEST_TIMEOUT, msg);
        }
        Ok(Err(e)) => {
            state.count("malformed");
            let status = match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Read(_) => StatusCode::BAD_REQUEST,
            };
            return text(status, format!("{e}\n"));
        }
    };
    match review(&body, enabled, &state.policy) {
        Ok((answer, outcome)) => {
            state.count(outcome);
            info!(outcome, uid = ?answer.pointer("/response/uid"), "admission review");
            json(StatusCode::OK, &answer)
        }
        Err(e) => {
            state.count("malformed");
            warn!(error = %e, "admission review refused");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// The health listener's routes: `/healthz` and `/metrics`, nothing else.
pub async fn handle_health<B>(state: &Webhook, req: Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => metrics(state),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(state: &Webhook) -> Response<Body> {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &state.registry).is_err() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        );
    }
    let mut rsp = text(StatusCode::OK, out);
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    rsp
}

/// Serves the webhook over TLS on an already-bound `listener` until `shutdown`.
pub async fn serve(
    state: Arc<Webhook>,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_body_bytes: MAX_REVIEW_BYTES,
        max_connections: MAX_CONNECTIONS,
        request_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let handler = move |req, _conn| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    crate::server::serve_tls(listener, tls, limits, handler, shutdown).await;
}

/// Serves [`handle_health`] over plain HTTP on an already-bound `listener` until `shutdown`.
pub async fn serve_health(
    state: Arc<Webhook>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_connections: 16,
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let handler = move |req, _conn| {
        let state = state.clone();
        async move { handle_health(&state, req).await }
    };
    crate::server::serve(listener, limits, handler, shutdown).await;
}

/// `baton webhook` (async: call from the CLI's runtime). Exit 64 when a flag is invalid or the
/// certificate or client CA cannot be loaded, 1 when an address cannot be bound; 0 after a
/// graceful stop on SIGTERM/SIGINT.
pub async fn main(args: WebhookArgs) -> ExitCode {
    let policy = match args.policy.policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("baton webhook: {e}");
            return ExitCode::from(64);
        }
    };
    if args.max_concurrent == 0 {
        eprintln!("baton webhook: --max-concurrent must be at least 1");
        return ExitCode::from(64);
    }
    let cert = match ReloadingCert::load(&args.tls_cert, &args.tls_key) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "webhook TLS");
            eprintln!("baton webhook: {e}");
            return ExitCode::from(64);
        }
    };
    let acceptor = match &args.client_ca {
        Some(ca) => tls::acceptor_with_client_ca(cert.clone(), ca).map_err(|e| e.to_string()),
        None => tls::acceptor(cert.clone()).map_err(|e| format!("TLS configuration: {e}")),
    };
    let acceptor = match acceptor {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baton webhook: {e}");
            return ExitCode::from(64);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baton webhook: bind {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let health = match args.health_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("baton webhook: bind {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    info!(
        version = super::VERSION,
        addr = ?listener.local_addr().ok(),
        health = ?health.as_ref().and_then(|l| l.local_addr().ok()),
        client_ca = args.client_ca.is_some(),
        sidecar_uid = policy.sidecar_uid,
        max_concurrent = args.max_concurrent,
        "baton webhook listening"
    );
    let state = Arc::new(Webhook::with(policy, args.max_concurrent));
    let watcher = cert.watch(Duration::from_secs(args.reload_seconds.max(1)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let health = health.map(|l| {
        let mut stopped = stopped.clone();
        tokio::spawn(serve_health(state.clone(), l, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let shutdown = async {
        let signal = crate::shutdown::os_signal().await;
        info!(signal, "shutting down");
    };
    serve(state, listener, acceptor, shutdown).await;
    let _ = stop.send(true);
    if let Some(h) = health {
        let _ = h.await;
    }
    watcher.abort();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;
