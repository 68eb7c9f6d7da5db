//! One outbound request as the operator sees it: its audit event and, with OpenTelemetry on,
//! its span `outbound`, around the pipeline ([`super::run`]).

use super::destination::Arrival;
use super::forward;
use super::{Outbound, run};
use crate::config::outbound::Route;
use crate::exchange::Issued;
use crate::exchange::cache::LastKey;
use crate::http::Body;
use http::{Request, Response};
use std::sync::Arc;
use tracing::info;

/// What the audit event of one hop says; never a token. Indexes and the shared [`Issued`], not
/// copies: a request whose audit event is filtered out costs no allocation for it.
pub(super) struct Audit {
    /// The route's index in the configuration.
    pub(super) route: Option<usize>,
    /// The token sent upstream, for its `sub` hash and `act` chain.
    pub(super) issued: Option<Arc<Issued>>,
    pub(super) cache: &'static str,
    pub(super) exchange_ms: u64,
}

// No `tracing` span: an instrumented future is one more move of this kilobytes-large one per
// request. The audit event below carries what an operator needs, the request id and method among
// it. With OpenTelemetry on, the request runs in a boxed future of its own ([`traced`]).
pub(super) async fn proxy(
    s: &Outbound,
    last: &LastKey,
    req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    match &s.tracing {
        None => proxy_plain::<false>(s, last, req, arrival).await,
        Some(t) => Box::pin(traced(s, t, last, req, arrival)).await,
    }
}

/// One request under its OpenTelemetry span `outbound`: a client span continuing the context the
/// app sent (`traceparent`), or the root of a new trace when the app sent none. The upstream gets
/// this span's context.
async fn traced(
    s: &Outbound,
    t: &Arc<crate::otel::Tracing>,
    last: &LastKey,
    mut req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    use crate::otel::FutureExt as _;
    let parent = crate::otel::extract(req.headers());
    // Room for the attributes the handler notes (`note_outcome`) and the status: no
    // reallocation as they come.
    let mut attributes = Vec::with_capacity(8);
    attributes.push(crate::otel::method(req.method()));
    let cx = t.start_span(
        "outbound",
        opentelemetry::trace::SpanKind::Client,
        &parent,
        attributes,
    );
    crate::otel::inject(&cx, req.headers_mut());
    let rsp = proxy_plain::<true>(s, last, req, arrival)
        .with_context(cx.clone())
        .await;
    crate::otel::end(&cx, Some(rsp.status().as_u16()), false);
    rsp
}

/// [`proxy`]; `TRACED`: a span is current, and the outcome is noted on it.
async fn proxy_plain<const TRACED: bool>(
    s: &Outbound,
    last: &LastKey,
    mut req: Request<Body>,
    arrival: Arrival,
) -> Response<Body> {
    // The state this request runs on to its end, whatever a reload installs meanwhile.
    let a = s.active.load_full();
    let request_id = forward::request_id(req.headers_mut());
    let method = req.method().clone();
    let grpc = crate::http::grpc::is_grpc(req.headers());
    let mut audit = Audit {
        route: None,
        issued: None,
        cache: "none",
        exchange_ms: 0,
    };
    let rsp = match run(s, &a, last, req, arrival, &mut audit).await {
        Ok(rsp) => rsp,
        Err(reject) => reject.answer(grpc),
    };
    let route = audit.route.map(|i| &a.cfg.routes[i]);
    let issued = audit.issued.as_deref();
    let trace_id = if TRACED {
        note_outcome(route, &audit);
        crate::otel::current_trace_id()
    } else {
        String::new()
    };
    info!(
        target: "baton::audit",
        trace_id,
        // Visible ASCII only (`forward::request_id`), so never empty here.
        request_id = request_id.to_str().unwrap_or_default(),
        method = %method,
        route = route.map_or("", |r| r.name.as_str()),
        sub_hash = issued.map_or("", |i| i.sub_hash.as_str()),
        act_chain = issued.map_or("", |i| i.act_chain.as_str()),
        audience = route.and_then(|r| r.audience.as_deref()).unwrap_or(""),
        scope = route.and_then(|r| r.scope.as_deref()).unwrap_or(""),
        cache = audit.cache,
        exchange_ms = audit.exchange_ms,
        status = rsp.status().as_u16(),
        "outbound hop"
    );
    rsp
}

/// The route, audience and exchange-cache result of an outbound request on the current span.
fn note_outcome(route: Option<&Route>, audit: &Audit) {
    use opentelemetry::KeyValue;
    if let Some(r) = route {
        crate::otel::note(KeyValue::new("baton.route", r.name.clone()));
        if let Some(aud) = &r.audience {
            crate::otel::note(KeyValue::new("baton.audience", aud.clone()));
        }
        crate::otel::note(KeyValue::new("server.address", r.host.clone()));
        crate::otel::note(KeyValue::new("server.port", i64::from(r.port)));
    }
    crate::otel::note(KeyValue::new("baton.exchange.cache", audit.cache));
    if let Some(issued) = &audit.issued {
        crate::otel::note(KeyValue::new("enduser.id", issued.sub_hash.clone()));
    }
}
