//! The OTLP/HTTP exporter: a batch of finished spans encoded straight to the protobuf of an
//! `ExportTraceServiceRequest` (the OTLP `trace.proto`, `common.proto` and `resource.proto`
//! messages) with `prost`'s wire primitives, and posted with baton's reqwest client.
//!
//! The body is written in two passes over the batch, each span's length first, then the bytes
//! into a buffer of exactly that size: no message structs, no copy of a name or an attribute.
//! A span's protobuf is what `opentelemetry-proto`'s conversion of `SpanData` encodes (the
//! tests decode it with `opentelemetry-proto`).

use super::Error;
use bytes::BufMut;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use std::time::{Duration, SystemTime};

/// Bytes of a collector's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Retries of a failed export at most (a connection failure, 429, 502, 503, 504), within
/// the export's time allowance.
const MAX_RETRIES: u32 = 3;

/// The wait before the first retry; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The longest wait between two attempts, a collector's `Retry-After` included.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(1600);

/// Posts batches of spans to one collector.
#[derive(Debug)]
pub(super) struct Exporter {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (may hold a collector's credentials: never logged).
    headers: http::HeaderMap,
    /// The `ResourceSpans` fields other than `scope_spans`, encoded once.
    resource: Vec<u8>,
    timeout: Duration,
}

/// Why one export attempt failed.
enum Failure {
    /// Worth another attempt, after at least this long.
    Retry(Duration),
    Final,
}

impl Exporter {
    /// An exporter to the full traces URL `url`, with `resource` on every batch.
    pub(super) fn new(
        url: &str,
        headers: http::HeaderMap,
        resource: &Resource,
        timeout: Duration,
    ) -> Result<Exporter, Error> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| Error::Invalid(format!("endpoint {url:?} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(Exporter {
            client,
            url,
            headers,
            resource: resource_fields(resource),
            timeout,
        })
    }

    /// Sends `spans` in one request, retrying a failure that may pass within the time
    /// allowance; true when the collector took them.
    pub(super) async fn export(&self, spans: &[SpanData]) -> bool {
        let body = bytes::Bytes::from(encode(&self.resource, spans));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 0..=MAX_RETRIES {
            let wait = match self.send(body.clone()).await {
                Ok(()) => return true,
                Err(Failure::Retry(after)) if attempt < MAX_RETRIES => after.max(delay),
                Err(_) => return false,
            };
            let wait = wait.min(MAX_RETRY_DELAY) + jitter();
            if tokio::time::Instant::now() + wait >= deadline {
                return false;
            }
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
        false
    }

    async fn send(&self, body: bytes::Bytes) -> Result<(), Failure> {
        let rsp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let mut rsp = match rsp {
            Ok(rsp) => rsp,
            Err(e) if e.is_timeout() => return Err(Failure::Final),
            Err(_) => return Err(Failure::Retry(Duration::ZERO)),
        };
        let status = rsp.status().as_u16();
        let retry_after = rsp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        // The answer (an `ExportTraceServiceResponse`, or an error) is read, bounded, so
        // that the connection can be used again, and not kept.
        let mut read = 0;
        while let Ok(Some(chunk)) = rsp.chunk().await {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return Err(Failure::Final);
            }
        }
        match status {
            200..=299 => Ok(()),
            429 | 503 => Err(Failure::Retry(retry_after)),
            502 | 504 => Err(Failure::Retry(Duration::ZERO)),
            _ => Err(Failure::Final),
        }
    }
}

/// Up to 100 ms, so that sidecars that failed together do not retry together.
fn jitter() -> Duration {
    Duration::from_millis(fastrand::u64(0..100))
}

/// Field numbers of the OTLP messages.
mod tag {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;

    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;

    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_SPANS_SCHEMA_URL: u32 = 3;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SCOPE_ATTRIBUTES: u32 = 3;

    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_TRACE_STATE: u32 = 3;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_DROPPED_ATTRIBUTES: u32 = 10;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_DROPPED_EVENTS: u32 = 12;
    pub const SPAN_LINKS: u32 = 13;
    pub const SPAN_DROPPED_LINKS: u32 = 14;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;

    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;
    pub const EVENT_DROPPED_ATTRIBUTES: u32 = 4;

    pub const LINK_TRACE_ID: u32 = 1;
    pub const LINK_SPAN_ID: u32 = 2;
    pub const LINK_TRACE_STATE: u32 = 3;
    pub const LINK_ATTRIBUTES: u32 = 4;
    pub const LINK_DROPPED_ATTRIBUTES: u32 = 5;
    pub const LINK_FLAGS: u32 = 6;

    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;

    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ANY_STRING: u32 = 1;
    pub const ANY_BOOL: u32 = 2;
    pub const ANY_INT: u32 = 3;
    pub const ANY_DOUBLE: u32 = 4;
    pub const ANY_ARRAY: u32 = 5;
    pub const ARRAY_VALUES: u32 = 1;
}

/// `SpanFlags`: the W3C trace flags in the low byte, and whether the parent is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The `ExportTraceServiceRequest` of `spans`: one `ResourceSpans` (`resource`, from
/// [`resource_fields`]), one `ScopeSpans` per instrumentation scope, in order of first
/// appearance.
pub(super) fn encode(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
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
pub(super) fn resource_fields(resource: &Resource) -> Vec<u8> {
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
        .map(|e| {
            let body = fixed64_len(tag::EVENT_TIME, nanos(e.timestamp))
                + str_len(tag::EVENT_NAME, &e.name)
                + attributes_len(tag::EVENT_ATTRIBUTES, &e.attributes)
                + varint_len(
                    tag::EVENT_DROPPED_ATTRIBUTES,
                    u64::from(e.dropped_attributes_count),
                );
            message_len(tag::SPAN_EVENTS, body)
        })
        .sum()
}

fn put_events(events: &SpanEvents, buf: &mut Vec<u8>) {
    for e in events.iter() {
        let body = fixed64_len(tag::EVENT_TIME, nanos(e.timestamp))
            + str_len(tag::EVENT_NAME, &e.name)
            + attributes_len(tag::EVENT_ATTRIBUTES, &e.attributes)
            + varint_len(
                tag::EVENT_DROPPED_ATTRIBUTES,
                u64::from(e.dropped_attributes_count),
            );
        put_message_header(tag::SPAN_EVENTS, body, buf);
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

fn attributes_len<'a>(field: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) -> usize {
    attributes
        .into_iter()
        .map(|kv| message_len(field, key_value_len(kv.key.as_str(), &kv.value)))
        .sum()
}

fn put_attributes<'a>(
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
    buf: &mut Vec<u8>,
) {
    for kv in attributes {
        let key = kv.key.as_str();
        put_message_header(field, key_value_len(key, &kv.value), buf);
        put_key_value(key, &kv.value, buf);
    }
}

/// The `KeyValue` message's length.
fn key_value_len(key: &str, value: &Value) -> usize {
    str_len(tag::KEY_VALUE_KEY, key) + message_len(tag::KEY_VALUE_VALUE, any_len(value))
}

fn put_key_value(key: &str, value: &Value, buf: &mut Vec<u8>) {
    put_str(tag::KEY_VALUE_KEY, key, buf);
    put_message_header(tag::KEY_VALUE_VALUE, any_len(value), buf);
    put_any(value, buf);
}

/// One value of an `AnyValue`'s `oneof` (always written, even when it is the default: a
/// `oneof` field's presence is its value).
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
}

fn scalar_len(s: Scalar<'_>) -> usize {
    match s {
        Scalar::Bool(_) => key_len(tag::ANY_BOOL) + 1,
        Scalar::Int(i) => key_len(tag::ANY_INT) + encoded_len_varint(i as u64),
        Scalar::Double(_) => key_len(tag::ANY_DOUBLE) + 8,
        Scalar::Str(s) => message_len(tag::ANY_STRING, s.len()),
    }
}

fn put_scalar(s: Scalar<'_>, buf: &mut Vec<u8>) {
    match s {
        Scalar::Bool(b) => {
            encode_key(tag::ANY_BOOL, WireType::Varint, buf);
            buf.put_u8(u8::from(b));
        }
        Scalar::Int(i) => {
            encode_key(tag::ANY_INT, WireType::Varint, buf);
            encode_varint(i as u64, buf);
        }
        Scalar::Double(d) => {
            encode_key(tag::ANY_DOUBLE, WireType::SixtyFourBit, buf);
            buf.put_f64_le(d);
        }
        Scalar::Str(s) => {
            put_message_header(tag::ANY_STRING, s.len(), buf);
            buf.put_slice(s.as_bytes());
        }
    }
}

/// The elements of an array value, each an `AnyValue`.
fn elements(array: &Array) -> Box<dyn Iterator<Item = Scalar<'_>> + '_> {
    match array {
        Array::Bool(v) => Box::new(v.iter().map(|b| Scalar::Bool(*b))),
        Array::I64(v) => Box::new(v.iter().map(|i| Scalar::Int(*i))),
        Array::F64(v) => Box::new(v.iter().map(|d| Scalar::Double(*d))),
        Array::String(v) => Box::new(v.iter().map(|s| Scalar::Str(s.as_str()))),
        _ => Box::new(std::iter::empty()),
    }
}

/// The `ArrayValue` message's length.
fn array_len(array: &Array) -> usize {
    elements(array)
        .map(|s| message_len(tag::ARRAY_VALUES, scalar_len(s)))
        .sum()
}

/// `value` as one scalar, `None` for an array.
fn scalar(value: &Value) -> Option<Scalar<'_>> {
    Some(match value {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::I64(i) => Scalar::Int(*i),
        Value::F64(d) => Scalar::Double(*d),
        Value::String(s) => Scalar::Str(s.as_str()),
        _ => return None,
    })
}

/// The `AnyValue` message's length.
fn any_len(value: &Value) -> usize {
    match (scalar(value), value) {
        (Some(s), _) => scalar_len(s),
        (None, Value::Array(a)) => message_len(tag::ANY_ARRAY, array_len(a)),
        (None, _) => 0,
    }
}

fn put_any(value: &Value, buf: &mut Vec<u8>) {
    match (scalar(value), value) {
        (Some(s), _) => put_scalar(s, buf),
        (None, Value::Array(a)) => {
            put_message_header(tag::ANY_ARRAY, array_len(a), buf);
            for s in elements(a) {
                put_message_header(tag::ARRAY_VALUES, scalar_len(s), buf);
                put_scalar(s, buf);
            }
        }
        (None, _) => {}
    }
}

// The wire primitives. Proto3: a field at its default value (0, empty) is left out, except
// embedded messages, which are written whenever present.

/// A length-delimited field of `len` bytes, key and length included.
fn message_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

fn put_message_header(field: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn bytes_len(field: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        message_len(field, b.len())
    }
}

fn put_bytes(field: u32, b: &[u8], buf: &mut Vec<u8>) {
    if !b.is_empty() {
        put_message_header(field, b.len(), buf);
        buf.put_slice(b);
    }
}

fn str_len(field: u32, s: &str) -> usize {
    bytes_len(field, s.as_bytes())
}

fn put_str(field: u32, s: &str, buf: &mut Vec<u8>) {
    put_bytes(field, s.as_bytes(), buf);
}

fn varint_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + encoded_len_varint(v)
    }
}

fn put_varint(field: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn fixed64_len(field: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(field) + 8 }
}

fn put_fixed64(field: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.put_u64_le(v);
    }
}

fn fixed32_len(field: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(field) + 4 }
}

fn put_fixed32(field: u32, v: u32, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(v);
    }
}

#[cfg(test)]
mod tests;
