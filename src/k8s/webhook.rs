//! `baton webhook`: the mutating admission webhook. `POST /mutate` takes an AdmissionReview
//! (`admission.k8s.io/v1`) for a Pod and answers with the RFC 6902 JSONPatch from the original
//! pod to the one [`super::mutate::mutate`] returns: the same function as `baton inject`, so
//! both give the same pod. `POST /mutate/namespace-enabled` is the same for pods of namespaces
//! whose label opted in (the MutatingWebhookConfiguration's namespace selector says so; the
//! API server sends no namespace metadata). `GET /healthz`, `GET /metrics`.

use super::mutate::{Outcome, mutate};
use super::settings::Namespace;
use super::tls::{self, ReloadingCert};
use crate::http::{Body, BoxError, json, read_limited, text};
use crate::server::Limits;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, instrument, warn};

/// An AdmissionReview of a pod can be large (a pod may be ~1.5 MiB); anything bigger is refused.
const MAX_REVIEW_BYTES: usize = 3 << 20;
const API_VERSION: &str = "admission.k8s.io/v1";

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
}

/// `outcome` label of `baton_webhook_reviews_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The webhook's state: its metrics.
#[derive(Debug)]
pub struct Webhook {
    reviews: Family<OutcomeLabel, Counter>,
    registry: Registry,
}

impl Default for Webhook {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhook {
    /// A webhook with its own registry holding `baton_webhook_reviews_total{outcome}`
    /// (`injected`, `skipped`, `denied`, `ignored`, `malformed`).
    pub fn new() -> Self {
        let reviews = Family::<OutcomeLabel, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "baton_webhook_reviews",
            "AdmissionReviews answered, by outcome",
            reviews.clone(),
        );
        Self { reviews, registry }
    }

    /// How many reviews ended with `outcome`.
    pub fn reviews(&self, outcome: &'static str) -> u64 {
        self.reviews.get_or_create(&OutcomeLabel { outcome }).get()
    }

    fn count(&self, outcome: &'static str) {
        self.reviews.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// Why a request is not a review we can answer: HTTP 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// The body is not JSON.
    #[error("admission review: body is not JSON: {0}")]
    Json(String),
    /// Not `admission.k8s.io/v1` `AdmissionReview`.
    #[error("admission review: expected apiVersion {API_VERSION} and kind AdmissionReview")]
    Version,
    /// `request.uid` missing: there is nothing to answer.
    #[error("admission review: request.uid is missing")]
    Uid,
}

/// Answers one AdmissionReview body. `namespace_enabled` tells whether the namespace opted in.
/// A well-formed review always gets an AdmissionReview back (`allowed: false` with a status
/// for a non-Pod or an invalid annotation); only a body with no `uid` to answer is an error.
pub fn review(body: &[u8], namespace_enabled: bool) -> Result<(Value, &'static str), Malformed> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
    if doc.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION)
        || doc.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(Malformed::Version);
    }
    let req = doc.get("request").ok_or(Malformed::Uid)?;
    let uid = req
        .get("uid")
        .and_then(Value::as_str)
        .ok_or(Malformed::Uid)?;
    let answer = |response: Value| {
        let mut response = response;
        response["uid"] = uid.into();
        json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})
    };
    let deny = |code: u16, message: String| {
        answer(json!({"allowed": false, "status": {"code": code, "message": message}}))
    };

    let kind = req.get("kind").cloned().unwrap_or_default();
    let is_pod = kind
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
        && kind.get("kind").and_then(Value::as_str) == Some("Pod");
    if !is_pod {
        let msg = format!(
            "baton webhook mutates Pods only, got {}; fix the MutatingWebhookConfiguration rules",
            kind.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("no kind")
        );
        return Ok((deny(400, msg), "malformed"));
    }
    if req.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return Ok((answer(json!({"allowed": true})), "ignored"));
    }
    let Some(pod) = req.get("object").filter(|o| o.is_object()) else {
        return Ok((
            deny(400, "admission review: request.object is missing".into()),
            "malformed",
        ));
    };
    let ns_name = req
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = pod
        .pointer("/metadata/name")
        .or_else(|| pod.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let origin = format!("Pod/{ns_name}/{name}");
    let ns = if namespace_enabled {
        Namespace::enabled()
    } else {
        Namespace::default()
    };
    Ok(match mutate(pod, &ns, &origin) {
        Ok(Outcome::Injected(new)) => {
            let patch = json_patch::diff(pod, &new);
            let bytes = serde_json::to_vec(&patch).unwrap_or_default();
            let patch = base64::engine::general_purpose::STANDARD.encode(bytes);
            let rsp = json!({"allowed": true, "patchType": "JSONPatch", "patch": patch});
            (answer(rsp), "injected")
        }
        Ok(Outcome::Skipped(_)) => (answer(json!({"allowed": true})), "skipped"),
        Err(problems) => (deny(400, problems.to_string()), "denied"),
    })
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
    let body = match read_limited(req.into_body(), MAX_REVIEW_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            state.count("malformed");
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    match review(&body, enabled) {
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
        ..Limits::default()
    };
    let handler = move |req, _conn| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    crate::server::serve_tls(listener, tls, limits, handler, shutdown).await;
}

/// `baton webhook` (async: call from the CLI's runtime). Exit 64 when the certificate cannot be
/// loaded, 1 when the address cannot be bound; 0 after a graceful stop on SIGTERM/SIGINT.
pub async fn main(args: WebhookArgs) -> ExitCode {
    let cert = match ReloadingCert::load(&args.tls_cert, &args.tls_key) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "webhook TLS");
            eprintln!("baton webhook: {e}");
            return ExitCode::from(64);
        }
    };
    let acceptor = match tls::acceptor(cert.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baton webhook: TLS configuration: {e}");
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
    info!(version = super::VERSION, addr = ?listener.local_addr().ok(), "baton webhook listening");
    let watcher = cert.watch(Duration::from_secs(args.reload_seconds.max(1)));
    let shutdown = async {
        let signal = crate::shutdown::os_signal().await;
        info!(signal, "shutting down");
    };
    serve(Arc::new(Webhook::new()), listener, acceptor, shutdown).await;
    watcher.abort();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;
