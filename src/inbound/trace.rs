//! The inbound side's OpenTelemetry hooks: the `inbound` server span a traced request runs
//! under, its outcome attributes, and the `app` client span around the call to the app.

use super::{Inbound, handle_plain};
use crate::http::{Body, BoxError};
use crate::jwt::Verified;
use crate::jwt::jwks::LastToken;
use http::{Request, Response};
use std::sync::Arc;

/// One request under its OpenTelemetry span `inbound` (a server span continuing the caller's
/// `traceparent`, or a new trace), which the handler's hooks annotate.
pub(super) async fn traced<B>(
    s: &Inbound,
    t: &Arc<crate::otel::Tracing>,
    last: &LastToken,
    req: Request<B>,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    use crate::otel::FutureExt as _;
    let parent = crate::otel::extract(req.headers());
    // No `url.path`: a path can carry what a token would (a reset link, a signed URL); the
    // route's name (`baton.route`) says which rule the request met.
    // Room for the attributes the handler notes (`note_outcome`, `baton.token.cache`,
    // `enduser.id`) and the status: no reallocation as they come.
    let mut attributes = Vec::with_capacity(8);
    attributes.push(crate::otel::method(req.method()));
    let cx = t
        .start_span(
            "inbound",
            opentelemetry::trace::SpanKind::Server,
            &parent,
            attributes,
        )
        .with_value(AppSpan(std::sync::Mutex::new(None)));
    let rsp = handle_plain::<B, true>(s, last, req)
        .with_context(cx.clone())
        .await;
    crate::otel::end(&cx, Some(rsp.status().as_u16()), true);
    rsp
}

/// The request's `baton.route`, `baton.outcome` and, for a refusal, `baton.refusal.reason`
/// on the current span.
pub(super) fn note_outcome(route: &str, outcome: &'static str, refused: bool) {
    use opentelemetry::KeyValue;
    crate::otel::note(KeyValue::new("baton.route", route.to_owned()));
    crate::otel::note(KeyValue::new("baton.outcome", outcome));
    let verdict = if refused { "refused" } else { "forwarded" };
    crate::otel::note(KeyValue::new("baton.verdict", verdict));
    if refused {
        crate::otel::note(KeyValue::new("baton.refusal.reason", outcome));
    }
}

/// The slot of the current inbound span's `app` child, between its start and its end.
struct AppSpan(std::sync::Mutex<Option<opentelemetry::Context>>);

/// Starts the `app` client span (child of the current `inbound` span), puts its context in
/// `headers` as `traceparent` / `tracestate` for the app to continue, and notes the user
/// (`enduser.id`, a hash) on the inbound span.
pub(super) fn app_span(
    verified: Option<&Verified>,
    method: &http::Method,
    headers: &mut http::HeaderMap,
) {
    if let Some(sub) = verified.and_then(|v| v.claims.get("sub")?.as_str()) {
        crate::otel::note(crate::otel::enduser(sub));
    }
    // The method, and room for the status.
    let mut attributes = Vec::with_capacity(2);
    attributes.push(crate::otel::method(method));
    let Some(cx) = crate::otel::child("app", opentelemetry::trace::SpanKind::Client, attributes)
    else {
        return;
    };
    crate::otel::inject(&cx, headers);
    opentelemetry::Context::map_current(|current| {
        if let Some(slot) = current.get::<AppSpan>() {
            *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx);
        }
    });
}

/// Ends the `app` span with the app's status (`None`: the app could not be reached).
pub(super) fn app_done(status: Option<u16>) {
    opentelemetry::Context::map_current(|current| {
        let taken = current
            .get::<AppSpan>()
            .and_then(|slot| slot.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(cx) = taken {
            crate::otel::end(&cx, status, false);
        }
    });
}
