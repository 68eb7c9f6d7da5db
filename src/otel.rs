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

mod export;
mod otlp;
mod settings;
mod span;

pub use export::Collected;
pub use opentelemetry::context::FutureExt;
pub use settings::{Ratio, RawTracing, Settings};
pub use span::{
    child, current_trace_id, end, enduser, error_code, extract, inject, method, note,
    sampled_trace_id,
};

use export::{EXPORT_TIMEOUT, Queue, Sink};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

/// Finished spans waiting for export at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 2048;

/// Why the trace settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not what the setting takes.
    #[error("tracing: {0}")]
    Invalid(String),
    /// The export thread could not be started.
    #[error("tracing: the export thread")]
    Thread(#[source] std::io::Error),
}

/// One process part's tracer (a sidecar, the IdP), its export queue and its dropped-span
/// counter. Dropping the last handle does not flush: call [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting to `settings.endpoint`, with the headers of
    /// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (uncompressed: a compression asked for by
    /// `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION` is an error); spans dropped count into `dropped`.
    pub fn start(settings: &Settings, dropped: Counter) -> Result<Arc<Tracing>, Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        settings::check_compression(env)?;
        let headers = settings::otlp_headers(env)?;
        let resource = resource(&settings.service_name);
        let exporter = otlp::Exporter::new(&settings.endpoint, headers, &resource, EXPORT_TIMEOUT)?;
        let sink = Sink::Otlp(Box::new(exporter));
        Tracing::with_sink(resource, settings.sampler, sink, dropped)
    }

    /// Collects finished spans in `collected`, with `service_name`, instead of exporting them
    /// (`baton demo`).
    pub fn in_memory(service_name: &str, collected: Collected) -> Result<Arc<Tracing>, Error> {
        Tracing::with_sink(
            resource(service_name),
            Ratio::Always,
            Sink::Memory(Arc::from(service_name), collected),
            Counter::default(),
        )
    }

    fn with_sink(
        resource: Resource,
        sampler: Ratio,
        sink: Sink,
        dropped: Counter,
    ) -> Result<Arc<Tracing>, Error> {
        let queue = Queue::start(sink, dropped)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_sampler(sdk_sampler(sampler))
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

/// The resource of every span: `service.name` and baton's `service.version`.
fn resource(service_name: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The SDK sampler for `ratio`: a caller's decision is followed unless the ratio ignores it.
fn sdk_sampler(ratio: Ratio) -> Sampler {
    match ratio {
        Ratio::Always => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Ratio::Never => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Ratio::Share(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
        Ratio::IgnoreParent(true) => Sampler::AlwaysOn,
        Ratio::IgnoreParent(false) => Sampler::AlwaysOff,
    }
}

/// The tracer a context was started with, carried in it.
#[derive(Clone)]
struct Handle(Arc<Tracing>);
