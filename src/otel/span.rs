//! Spans around a request: W3C Trace Context in and out of headers, child spans of the current
//! context, their ending status, and the attributes allowed on them.

use super::Handle;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
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
/// when it has none that is valid; no `tracestate` when its list is empty). The header is
/// written here, without the propagator's formatting and header-name parsing: it is made for
/// every traced request.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    if let Ok(v) = http::HeaderValue::from_bytes(&traceparent(sc)) {
        headers.insert(TRACEPARENT, v);
    }
    if *sc.trace_state() != TraceState::NONE {
        let state = sc.trace_state().header();
        if let (false, Ok(v)) = (state.is_empty(), http::HeaderValue::from_str(&state)) {
            headers.insert(TRACESTATE, v);
        }
    }
}

/// `00-<trace id>-<span id>-<flags>` (W3C Trace Context, version 00; of the flags, only
/// `sampled`), in lowercase hex.
fn traceparent(sc: &SpanContext) -> [u8; 55] {
    fn hex(digits: &mut [u8], bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
    }
    let mut v = [b'-'; 55];
    v[..2].copy_from_slice(b"00");
    hex(&mut v[3..35], &sc.trace_id().to_bytes());
    hex(&mut v[36..52], &sc.span_id().to_bytes());
    hex(
        &mut v[53..],
        &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    v
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

/// `http.request.method`: a method of RFC 9110 as a `&'static str` (no copy per span), any
/// other as it is.
pub fn method(method: &http::Method) -> KeyValue {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    let name = method.as_str();
    match KNOWN.into_iter().find(|k| *k == name) {
        Some(k) => KeyValue::new("http.request.method", k),
        None => KeyValue::new("http.request.method", name.to_owned()),
    }
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
