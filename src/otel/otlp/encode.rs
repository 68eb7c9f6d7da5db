//! The messages of an `ExportTraceServiceRequest`: resource, scopes, spans, events, links and
//! status, each written in two passes (its length, then its bytes).

use super::tag;
use super::wire::{
    attributes_len, bytes_len, fixed32_len, fixed64_len, key_value_len, message_len,
    put_attributes, put_bytes, put_fixed32, put_fixed64, put_key_value, put_message_header,
    put_str, put_varint, str_len, varint_len,
};
use bytes::BufMut;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{InstrumentationScope, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::time::SystemTime;

/// `SpanFlags`: the W3C trace flags in the low byte, and whether the parent is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The `ExportTraceServiceRequest` of `spans`: one `ResourceSpans` (`resource`, from
/// [`resource_fields`]), one `ScopeSpans` per instrumentation scope, in order of first
/// appearance.
pub(in crate::otel) fn encode(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
    // Pass 1: each span's length, each scope's.
    let prepared: Vec<Prepared> = spans.iter().map(Prepared::new).collect();
    let mut scopes: Vec<(&InstrumentationScope, usize)> = Vec::new();
    for (span, p) in spans.iter().zip(&prepared) {
        let scope = &span.instrumentation_scope;
        let field = message_len(tag::SCOPE_SPANS_SPANS, p.len);
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, len)) => *len += field,
            None => scopes.push((scope, scope_fields_len(scope) + field)),
        }
    }
    let resource_spans = resource.len()
        + scopes
            .iter()
            .map(|(_, len)| message_len(tag::RESOURCE_SPANS_SCOPE_SPANS, *len))
            .sum::<usize>();
    let total = message_len(tag::REQUEST_RESOURCE_SPANS, resource_spans);
    // Pass 2: the bytes.
    let mut buf = Vec::with_capacity(total);
    put_message_header(tag::REQUEST_RESOURCE_SPANS, resource_spans, &mut buf);
    buf.put_slice(resource);
    for (scope, len) in &scopes {
        put_message_header(tag::RESOURCE_SPANS_SCOPE_SPANS, *len, &mut buf);
        put_scope_fields(scope, &mut buf);
        for (span, p) in spans.iter().zip(&prepared) {
            if span.instrumentation_scope == **scope {
                put_message_header(tag::SCOPE_SPANS_SPANS, p.len, &mut buf);
                put_span(span, p, &mut buf);
            }
        }
    }
    debug_assert_eq!(buf.len(), total);
    buf
}

/// The fields of a `ResourceSpans` that come from the resource: `resource` and `schema_url`.
pub(in crate::otel) fn resource_fields(resource: &Resource) -> Vec<u8> {
    let attributes: Vec<(&str, &Value)> = resource.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let body: usize = attributes
        .iter()
        .map(|(k, v)| message_len(tag::RESOURCE_ATTRIBUTES, key_value_len(k, v)))
        .sum();
    let mut buf = Vec::new();
    put_message_header(tag::RESOURCE_SPANS_RESOURCE, body, &mut buf);
    for (k, v) in &attributes {
        put_message_header(tag::RESOURCE_ATTRIBUTES, key_value_len(k, v), &mut buf);
        put_key_value(k, v, &mut buf);
    }
    put_str(
        tag::RESOURCE_SPANS_SCHEMA_URL,
        resource.schema_url().unwrap_or_default(),
        &mut buf,
    );
    buf
}

/// What pass 1 learnt of a span: its encoded length and its `tracestate` header.
struct Prepared {
    len: usize,
    trace_state: String,
}

impl Prepared {
    fn new(span: &SpanData) -> Prepared {
        let trace_state = trace_state(span.span_context.trace_state());
        let len = span_len(span, &trace_state);
        Prepared { len, trace_state }
    }
}

/// The `tracestate` header of `state`, empty (without allocating) when it has no entry.
fn trace_state(state: &TraceState) -> String {
    if *state == TraceState::NONE {
        String::new()
    } else {
        state.header()
    }
}

fn scope_fields_len(scope: &InstrumentationScope) -> usize {
    message_len(tag::SCOPE_SPANS_SCOPE, scope_len(scope))
        + str_len(
            tag::SCOPE_SPANS_SCHEMA_URL,
            scope.schema_url().unwrap_or_default(),
        )
}

fn put_scope_fields(scope: &InstrumentationScope, buf: &mut Vec<u8>) {
    put_message_header(tag::SCOPE_SPANS_SCOPE, scope_len(scope), buf);
    put_str(tag::SCOPE_NAME, scope.name(), buf);
    put_str(tag::SCOPE_VERSION, scope.version().unwrap_or_default(), buf);
    put_attributes(tag::SCOPE_ATTRIBUTES, scope.attributes(), buf);
    put_str(
        tag::SCOPE_SPANS_SCHEMA_URL,
        scope.schema_url().unwrap_or_default(),
        buf,
    );
}

/// The `InstrumentationScope` message's length.
fn scope_len(scope: &InstrumentationScope) -> usize {
    str_len(tag::SCOPE_NAME, scope.name())
        + str_len(tag::SCOPE_VERSION, scope.version().unwrap_or_default())
        + attributes_len(tag::SCOPE_ATTRIBUTES, scope.attributes())
}

fn span_len(span: &SpanData, trace_state: &str) -> usize {
    let cx = &span.span_context;
    let parent = span.parent_span_id != SpanId::INVALID;
    bytes_len(tag::SPAN_TRACE_ID, &cx.trace_id().to_bytes())
        + bytes_len(tag::SPAN_SPAN_ID, &cx.span_id().to_bytes())
        + str_len(tag::SPAN_TRACE_STATE, trace_state)
        + if parent {
            bytes_len(tag::SPAN_PARENT_SPAN_ID, &span.parent_span_id.to_bytes())
        } else {
            0
        }
        + fixed32_len(tag::SPAN_FLAGS, span_flags(span))
        + str_len(tag::SPAN_NAME, &span.name)
        + varint_len(tag::SPAN_KIND, kind(&span.span_kind))
        + fixed64_len(tag::SPAN_START, nanos(span.start_time))
        + fixed64_len(tag::SPAN_END, nanos(span.end_time))
        + attributes_len(tag::SPAN_ATTRIBUTES, &span.attributes)
        + varint_len(
            tag::SPAN_DROPPED_ATTRIBUTES,
            u64::from(span.dropped_attributes_count),
        )
        + events_len(&span.events)
        + varint_len(
            tag::SPAN_DROPPED_EVENTS,
            u64::from(span.events.dropped_count),
        )
        + links_len(&span.links)
        + varint_len(tag::SPAN_DROPPED_LINKS, u64::from(span.links.dropped_count))
        + message_len(tag::SPAN_STATUS, status_len(&span.status))
}

fn put_span(span: &SpanData, p: &Prepared, buf: &mut Vec<u8>) {
    let cx = &span.span_context;
    put_bytes(tag::SPAN_TRACE_ID, &cx.trace_id().to_bytes(), buf);
    put_bytes(tag::SPAN_SPAN_ID, &cx.span_id().to_bytes(), buf);
    put_str(tag::SPAN_TRACE_STATE, &p.trace_state, buf);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(
            tag::SPAN_PARENT_SPAN_ID,
            &span.parent_span_id.to_bytes(),
            buf,
        );
    }
    put_str(tag::SPAN_NAME, &span.name, buf);
    put_varint(tag::SPAN_KIND, kind(&span.span_kind), buf);
    put_fixed64(tag::SPAN_START, nanos(span.start_time), buf);
    put_fixed64(tag::SPAN_END, nanos(span.end_time), buf);
    put_attributes(tag::SPAN_ATTRIBUTES, &span.attributes, buf);
    put_varint(
        tag::SPAN_DROPPED_ATTRIBUTES,
        u64::from(span.dropped_attributes_count),
        buf,
    );
    put_events(&span.events, buf);
    put_varint(
        tag::SPAN_DROPPED_EVENTS,
        u64::from(span.events.dropped_count),
        buf,
    );
    put_links(&span.links, buf);
    put_varint(
        tag::SPAN_DROPPED_LINKS,
        u64::from(span.links.dropped_count),
        buf,
    );
    put_message_header(tag::SPAN_STATUS, status_len(&span.status), buf);
    put_status(&span.status, buf);
    put_fixed32(tag::SPAN_FLAGS, span_flags(span), buf);
}

fn span_flags(span: &SpanData) -> u32 {
    let remote = if span.parent_span_is_remote {
        FLAG_IS_REMOTE
    } else {
        0
    };
    u32::from(span.span_context.trace_flags().to_u8()) | FLAG_HAS_IS_REMOTE | remote
}

/// `Span.SpanKind`.
fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Nanoseconds since the Unix epoch; 0 before it.
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn events_len(events: &SpanEvents) -> usize {
    events
        .iter()
        .map(|e| message_len(tag::SPAN_EVENTS, event_len(e)))
        .sum()
}

/// The length of one `Span.Event` message's fields.
fn event_len(e: &opentelemetry::trace::Event) -> usize {
    fixed64_len(tag::EVENT_TIME, nanos(e.timestamp))
        + str_len(tag::EVENT_NAME, &e.name)
        + attributes_len(tag::EVENT_ATTRIBUTES, &e.attributes)
        + varint_len(
            tag::EVENT_DROPPED_ATTRIBUTES,
            u64::from(e.dropped_attributes_count),
        )
}

fn put_events(events: &SpanEvents, buf: &mut Vec<u8>) {
    for e in events.iter() {
        put_message_header(tag::SPAN_EVENTS, event_len(e), buf);
        put_fixed64(tag::EVENT_TIME, nanos(e.timestamp), buf);
        put_str(tag::EVENT_NAME, &e.name, buf);
        put_attributes(tag::EVENT_ATTRIBUTES, &e.attributes, buf);
        put_varint(
            tag::EVENT_DROPPED_ATTRIBUTES,
            u64::from(e.dropped_attributes_count),
            buf,
        );
    }
}

fn link_len(link: &opentelemetry::trace::Link, trace_state: &str) -> usize {
    let cx = &link.span_context;
    bytes_len(tag::LINK_TRACE_ID, &cx.trace_id().to_bytes())
        + bytes_len(tag::LINK_SPAN_ID, &cx.span_id().to_bytes())
        + str_len(tag::LINK_TRACE_STATE, trace_state)
        + attributes_len(tag::LINK_ATTRIBUTES, &link.attributes)
        + varint_len(
            tag::LINK_DROPPED_ATTRIBUTES,
            u64::from(link.dropped_attributes_count),
        )
        + fixed32_len(tag::LINK_FLAGS, link_flags(link))
}

fn link_flags(link: &opentelemetry::trace::Link) -> u32 {
    let cx = &link.span_context;
    let remote = if cx.is_remote() { FLAG_IS_REMOTE } else { 0 };
    u32::from(cx.trace_flags().to_u8()) | FLAG_HAS_IS_REMOTE | remote
}

fn links_len(links: &SpanLinks) -> usize {
    links
        .iter()
        .map(|l| {
            let state = trace_state(l.span_context.trace_state());
            message_len(tag::SPAN_LINKS, link_len(l, &state))
        })
        .sum()
}

fn put_links(links: &SpanLinks, buf: &mut Vec<u8>) {
    for l in links.iter() {
        let cx = &l.span_context;
        let state = trace_state(cx.trace_state());
        put_message_header(tag::SPAN_LINKS, link_len(l, &state), buf);
        put_bytes(tag::LINK_TRACE_ID, &cx.trace_id().to_bytes(), buf);
        put_bytes(tag::LINK_SPAN_ID, &cx.span_id().to_bytes(), buf);
        put_str(tag::LINK_TRACE_STATE, &state, buf);
        put_attributes(tag::LINK_ATTRIBUTES, &l.attributes, buf);
        put_varint(
            tag::LINK_DROPPED_ATTRIBUTES,
            u64::from(l.dropped_attributes_count),
            buf,
        );
        put_fixed32(tag::LINK_FLAGS, link_flags(l), buf);
    }
}

/// `Status.StatusCode` and the message (an error's description).
fn status_parts(status: &Status) -> (u64, &str) {
    match status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description),
    }
}

fn status_len(status: &Status) -> usize {
    let (code, message) = status_parts(status);
    str_len(tag::STATUS_MESSAGE, message) + varint_len(tag::STATUS_CODE, code)
}

fn put_status(status: &Status, buf: &mut Vec<u8>) {
    let (code, message) = status_parts(status);
    put_str(tag::STATUS_MESSAGE, message, buf);
    put_varint(tag::STATUS_CODE, code, buf);
}
