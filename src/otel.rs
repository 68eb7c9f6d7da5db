//! OpenTelemetry traces (docs/tracing.md): W3C Trace Context in and out, spans for the inbound
//! request, the app call, the outbound request, the exchange call and the IdP's token endpoint,
//! exported over OTLP/HTTP (protobuf).
//!
//! Off unless configured (`tracing:` in the config file, or `OTEL_EXPORTER_OTLP_ENDPOINT`). Off,
//! a listener holds no [`Tracing`] and runs the code it ran before: the traced path is another
//! instantiation of the handler (`const TRACED: bool`), so the untraced one carries no hook.
//!
//! On, finished spans go into a bounded queue ([`QUEUE_CAPACITY`]) that a thread of their own
//! drains in batches to the collector. A full queue or a failed export drops spans and counts
//! them (`baton_trace_spans_dropped_total`); a request never waits for the collector.
//!
//! Attributes are method, path (never the query), status, route names, fixed outcome words,
//! cache results and, for the user, `enduser.id` as a SHA-256 hash of `sub`: never a token, a
//! secret or a claim value.

use bytes::Bytes;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use opentelemetry::context::FutureExt;

/// Finished spans waiting for export at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 2048;

/// Spans sent in one export request at most.
const MAX_BATCH: usize = 512;

/// How long the exporter gathers spans after the first of a batch.
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// Time allowed for one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a collector's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `tracing:` section of `sidecar.yaml` and `idp.yaml`. Every field may be left out; the
/// standard `OTEL_*` variables fill in what the file leaves out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://otel-collector:4318`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` of the spans.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The share of new traces sampled, 0 to 1 (default 1). A caller's sampling decision is
    /// always followed.
    #[serde(default)]
    pub sampler_ratio: Option<f64>,
}

/// Resolved trace settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full OTLP/HTTP traces URL.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// How new traces are sampled; a caller's decision is always followed.
    pub sampler: Ratio,
}

/// The sampler for traces this process starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ratio {
    /// Every new trace.
    Always,
    /// None: only traces a caller sampled.
    Never,
    /// This share of new traces, by trace id.
    Share(f64),
    /// Every span, whatever the caller decided (`OTEL_TRACES_SAMPLER=always_on`).
    IgnoreParent(bool),
}

/// Why the trace settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not what the setting takes.
    #[error("tracing: {0}")]
    Invalid(String),
    /// The exporter could not be built.
    #[error("tracing: the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The export thread could not be started.
    #[error("tracing: the export thread")]
    Thread(#[source] std::io::Error),
}

impl Settings {
    /// The settings from the file's section and the environment (`OTEL_SDK_DISABLED`,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); the file wins field by field.
    /// `None`: tracing is off (no endpoint anywhere).
    pub fn resolve(
        file: Option<&RawTracing>,
        default_service: &str,
    ) -> Result<Option<Settings>, Error> {
        Settings::resolve_with(file, default_service, |k| std::env::var(k).ok())
    }

    /// [`Settings::resolve`] with `env` in place of the process environment.
    pub fn resolve_with(
        file: Option<&RawTracing>,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, Error> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let file = file.cloned().unwrap_or_default();
        let endpoint = match (file.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            (Some(base), _) => traces_url(&base)?,
            (None, Some(full)) => checked_url(full.trim())?,
            (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => traces_url(&base)?,
                None => return Ok(None),
            },
        };
        let service_name = file
            .service_name
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_owned());
        let sampler = match file.sampler_ratio {
            Some(r) => ratio(r)?,
            None => sampler_from_env(
                env("OTEL_TRACES_SAMPLER").as_deref(),
                env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            )?,
        };
        Ok(Some(Settings {
            endpoint,
            service_name,
            sampler,
        }))
    }
}

fn ratio(r: f64) -> Result<Ratio, Error> {
    match r {
        r if !(0.0..=1.0).contains(&r) => Err(Error::Invalid(format!(
            "sampler_ratio must be between 0 and 1, not {r}"
        ))),
        r if r >= 1.0 => Ok(Ratio::Always),
        r if r <= 0.0 => Ok(Ratio::Never),
        r => Ok(Ratio::Share(r)),
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` and its argument name (the OpenTelemetry SDK spec names).
fn sampler_from_env(name: Option<&str>, arg: Option<&str>) -> Result<Ratio, Error> {
    let share = || match arg {
        None => Ok(Ratio::Always),
        Some(a) => a
            .trim()
            .parse::<f64>()
            .map_err(|_| Error::Invalid(format!("OTEL_TRACES_SAMPLER_ARG is not a number: {a:?}")))
            .and_then(ratio),
    };
    match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        None | Some("parentbased_always_on") => Ok(Ratio::Always),
        Some("parentbased_always_off") => Ok(Ratio::Never),
        Some("parentbased_traceidratio") => share(),
        Some("always_on") => Ok(Ratio::IgnoreParent(true)),
        Some("always_off") => Ok(Ratio::IgnoreParent(false)),
        Some("traceidratio") => share(),
        Some(other) => Err(Error::Invalid(format!(
            "OTEL_TRACES_SAMPLER {other:?} is not supported (parentbased_traceidratio, \
             parentbased_always_on, parentbased_always_off, traceidratio, always_on, always_off)"
        ))),
    }
}

/// `base` + `/v1/traces`.
fn traces_url(base: &str) -> Result<String, Error> {
    checked_url(&format!("{}/v1/traces", base.trim().trim_end_matches('/')))
}

fn checked_url(url: &str) -> Result<String, Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("endpoint {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Invalid(format!(
            "endpoint {url:?} must be an http or https URL"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::Invalid("endpoint must not carry credentials".into()));
    }
    Ok(parsed.to_string())
}

/// One process part's tracer (a sidecar, the IdP), its export queue and its dropped-span
/// counter. Dropping the last handle does not flush: call [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting to `settings.endpoint`; spans dropped count into `dropped`.
    pub fn start(settings: &Settings, dropped: Counter) -> Result<Arc<Tracing>, Error> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Client::new()?)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(Error::Exporter)?;
        let sink = Sink::Otlp(Box::new(exporter));
        Tracing::with_sink(&settings.service_name, settings.sampler, sink, dropped)
    }

    /// Collects finished spans in `collected`, with `service_name`, instead of exporting them
    /// (`baton demo`).
    pub fn in_memory(service_name: &str, collected: Collected) -> Result<Arc<Tracing>, Error> {
        Tracing::with_sink(
            service_name,
            Ratio::Always,
            Sink::Memory(Arc::from(service_name), collected),
            Counter::default(),
        )
    }

    fn with_sink(
        service_name: &str,
        sampler: Ratio,
        mut sink: Sink,
        dropped: Counter,
    ) -> Result<Arc<Tracing>, Error> {
        let resource = Resource::builder_empty()
            .with_service_name(service_name.to_owned())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        if let Sink::Otlp(exporter) = &mut sink {
            exporter.set_resource(&resource);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_CAPACITY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Thread)?;
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("baton-otel".into())
            .spawn(move || runtime.block_on(export_loop(rx, sink, counted)))
            .map_err(Error::Thread)?;
        let sampler = match sampler {
            Ratio::Always => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Ratio::Never => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Ratio::Share(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
            Ratio::IgnoreParent(true) => Sampler::AlwaysOn,
            Ratio::IgnoreParent(false) => Sampler::AlwaysOff,
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Queue {
                tx: Mutex::new(Some(tx)),
                dropped,
            })
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("baton");
        Ok(Arc::new(Tracing { tracer, provider }))
    }

    /// Stops taking spans; those queued are still exported by the export thread.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }

    /// A span named `name` of `kind`, child of `parent`, and the context it is active in (which
    /// also carries this tracer, for [`child`]).
    pub fn start_span(
        self: &Arc<Self>,
        name: &'static str,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Context {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        parent.with_span(span).with_value(Handle(self.clone()))
    }
}

/// The tracer a context was started with, carried in it.
#[derive(Clone)]
struct Handle(Arc<Tracing>);

/// A span named `name`, child of the current context's span, when the current context was made
/// by [`Tracing::start_span`]; its context, to inject and end. `None` when nothing traces this
/// task.
pub fn child(name: &'static str, kind: SpanKind, attributes: Vec<KeyValue>) -> Option<Context> {
    Context::map_current(|cx| {
        let t = cx.get::<Handle>()?;
        Some(t.0.start_span(name, kind, cx, attributes))
    })
}

/// Sets `attribute` on the current context's span (none: nothing happens).
pub fn note(attribute: KeyValue) {
    Context::map_current(|cx| cx.span().set_attribute(attribute));
}

/// The context a request's `traceparent` / `tracestate` carry (W3C Trace Context); empty when
/// they are absent or malformed.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Replaces `traceparent` / `tracestate` in `headers` with `cx`'s span context (removes them
/// when it has none that is valid).
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Ends `cx`'s span with `status` (a 5xx, or none, marks an error; RFC 9110 codes below are
/// the client's business on a server span).
pub fn end(cx: &Context, status: Option<u16>, server: bool) {
    let span = cx.span();
    match status {
        Some(code) => {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
            if code >= 500 || (!server && code >= 400) {
                span.set_status(Status::error(""));
            }
        }
        None => span.set_status(Status::error("")),
    }
    span.end();
}

/// The trace id of the current context, hex, or empty when nothing traces it (for audit events).
pub fn current_trace_id() -> String {
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            sc.trace_id().to_string()
        } else {
            String::new()
        }
    })
}

/// The trace id of the current context, hex, when a sampled span is current (for exemplars).
pub fn sampled_trace_id() -> Option<String> {
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
    })
}

/// An OAuth error code fit for a span: the RFC 6749 / RFC 8693 codes as they are, anything else
/// `other` (the code came from a peer).
pub fn error_code(code: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "invalid_dpop_proof",
        "use_dpop_nonce",
    ];
    KNOWN.into_iter().find(|k| *k == code).unwrap_or("other")
}

/// `enduser.id`: `sha256:` and the first 8 hex digits of the SHA-256 of `sub`, as the audit
/// event's `sub_hash` ([`crate::secret::fingerprint`]); never the subject itself.
pub fn enduser(sub: &str) -> KeyValue {
    KeyValue::new("enduser.id", crate::secret::fingerprint(sub.as_bytes()))
}

/// Spans collected in-process, each with its `service.name`.
pub type Collected = Arc<Mutex<Vec<(Arc<str>, SpanData)>>>;

/// Where finished spans go.
enum Sink {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Memory(Arc<str>, Collected),
}

/// The span processor: finished spans into the bounded queue, never waiting.
#[derive(Debug)]
struct Queue {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<SpanData>>>,
    dropped: Counter,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sent = tx.as_ref().is_some_and(|tx| tx.try_send(span).is_ok());
        if !sent {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        // The export loop ends once the queue is empty and closed.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// Drains the queue in batches of at most [`MAX_BATCH`], gathered for [`BATCH_DELAY`] after
/// the first; a batch that fails to export is dropped and counted, never retried.
async fn export_loop(mut rx: tokio::sync::mpsc::Receiver<SpanData>, sink: Sink, dropped: Counter) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        tokio::time::sleep(BATCH_DELAY).await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match &sink {
            Sink::Memory(service, spans) => spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(batch.drain(..).map(|s| (service.clone(), s))),
            Sink::Otlp(exporter) => {
                let sent = tokio::time::timeout(
                    EXPORT_TIMEOUT + Duration::from_secs(1),
                    exporter.export(std::mem::take(&mut batch)),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    dropped.inc_by(n);
                    tracing::debug!(spans = n, "trace export failed; spans dropped");
                }
            }
        }
        batch.clear();
    }
}

/// The exporter's HTTP client: the reqwest client (rustls) baton already uses, no proxy, a
/// timeout on the whole exchange and a bounded answer.
#[derive(Debug)]
struct Client(reqwest::Client);

impl Client {
    fn new() -> Result<Client, Error> {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map(Client)
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))
    }
}

impl HttpClient for Client {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut rsp = self.0.execute(request).await?;
            let mut answer = http::Response::builder().status(rsp.status().as_u16());
            let mut body = Vec::new();
            while let Some(chunk) = rsp.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err("the collector's answer is too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            if let Some(h) = answer.headers_mut() {
                for (k, v) in rsp.headers() {
                    h.append(k.clone(), v.clone());
                }
            }
            Ok(answer.body(Bytes::from(body))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn off_without_an_endpoint_and_the_file_wins_field_by_field() {
        assert_eq!(
            Settings::resolve_with(None, "baton", env(&[])).ok(),
            Some(None)
        );
        let on = Settings::resolve_with(
            None,
            "baton",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
                ("OTEL_SERVICE_NAME", "svc"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.endpoint, "http://c:4318/v1/traces");
        assert_eq!(on.service_name, "svc");
        assert_eq!(on.sampler, Ratio::Share(0.25));
        let file = RawTracing {
            endpoint: Some("https://f:4318".into()),
            service_name: None,
            sampler_ratio: Some(0.0),
        };
        let both = Settings::resolve_with(
            Some(&file),
            "baton",
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
        )
        .expect("valid")
        .expect("on");
        assert_eq!(both.endpoint, "https://f:4318/v1/traces");
        assert_eq!(both.service_name, "baton");
        assert_eq!(both.sampler, Ratio::Never);
        let disabled = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(Settings::resolve_with(None, "b", disabled).ok(), Some(None));
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        for (k, v) in [
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ] {
            let vars = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                (k, v),
            ];
            let vars: Vec<_> = vars.iter().rev().cloned().collect();
            assert!(
                Settings::resolve_with(None, "b", env(&vars)).is_err(),
                "{k}={v}"
            );
        }
        for bad in ["ftp://c", "c:4318", "http://user:pw@c:4318"] {
            let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", bad)];
            assert!(
                Settings::resolve_with(None, "b", env(&vars)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn trace_context_round_trips_and_a_malformed_one_is_ignored() {
        let mut h = http::HeaderMap::new();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        h.insert("traceparent", http::HeaderValue::from_static(tp));
        h.insert("tracestate", http::HeaderValue::from_static("k=v"));
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let mut out = http::HeaderMap::new();
        inject(&cx, &mut out);
        assert_eq!(out["traceparent"], tp);
        assert_eq!(out["tracestate"], "k=v");
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "zz",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            let mut h = http::HeaderMap::new();
            h.insert("traceparent", http::HeaderValue::from_static(bad));
            assert!(!extract(&h).span().span_context().is_valid(), "{bad}");
        }
    }

    #[test]
    fn enduser_is_a_hash_of_the_subject() {
        let kv = enduser("alice");
        assert_eq!(kv.key.as_str(), "enduser.id");
        let v = kv.value.as_str();
        assert!(v.starts_with("sha256:") && v.len() == 15, "{v}");
        assert!(!v.contains("alice"));
    }
}
