//! Spans around a request: W3C Trace Context in and out of headers, child spans of the current
//! context, their ending status, and the attributes allowed on them.

use super::Handle;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// A span named `name`, child of the current context's span, when the current context was made
/// by [`Tracing::start_span`](super::Tracing::start_span); its context, to inject and end.
/// `None` when nothing traces this task.
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

#[cfg(test)]
mod tests;
