use super::*;
use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
use prost::Message;
use std::time::{Duration, SystemTime};

fn at(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn context(trace: u128, span: u64, sampled: bool, remote: bool, state: &str) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = if state.is_empty() {
        TraceState::NONE
    } else {
        state.parse().expect("trace state")
    };
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        flags,
        remote,
        state,
    )
}

/// A value of every kind an attribute takes, the defaults (false, 0, "") included.
fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("s", "text ü"),
        KeyValue::new("s.empty", ""),
        KeyValue::new("b", true),
        KeyValue::new("b.false", false),
        KeyValue::new("i", -7_i64),
        KeyValue::new("i.zero", 0_i64),
        KeyValue::new("i.big", i64::MAX),
        KeyValue::new("d", 1.5_f64),
        KeyValue::new("d.zero", 0.0_f64),
        KeyValue::new("a.bool", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("a.int", Value::Array(Array::I64(vec![0, -1, 300]))),
        KeyValue::new("a.double", Value::Array(Array::F64(vec![0.25, -2.0]))),
        KeyValue::new(
            "a.string",
            Value::Array(Array::String(vec![StringValue::from("x"), "".into()])),
        ),
        KeyValue::new("a.empty", Value::Array(Array::I64(vec![]))),
    ]
}

fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "event",
        at(1_700_000_000_500_000_000),
        every_value(),
        1,
    ));
    events.events.push(Event::new("bare", at(1), vec![], 0));
    events.dropped_count = 3;
    let mut links = SpanLinks::default();
    links.links.push(Link::new(
        context(9, 10, true, true, "a=1,b=2"),
        vec![KeyValue::new("l", 1_i64)],
        2,
    ));
    links
        .links
        .push(Link::new(context(11, 12, false, false, ""), vec![], 0));
    links.dropped_count = 4;
    SpanData {
        span_context: context(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x00f0_67aa_0ba9_02b7,
            true,
            false,
            "k=v",
        ),
        parent_span_id: SpanId::from(0x1122_3344_5566_7788),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: at(1_700_000_000_000_000_000),
        end_time: at(1_700_000_000_999_999_999),
        attributes: every_value(),
        dropped_attributes_count: 5,
        events,
        links,
        status: Status::error("refused"),
        instrumentation_scope: scope.clone(),
    }
}

/// A span with nothing but ids: no parent, kind internal, unset status, no attributes.
fn bare(scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: context(1, 2, false, false, ""),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "".into(),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: vec![],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("service-b-baton")
        .with_attribute(KeyValue::new("service.version", "0.1.0"))
        .with_attribute(KeyValue::new("n", 3_i64))
        .build()
}

/// What `opentelemetry-proto`'s own conversion of `spans` makes.
fn official(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    }
}

fn decode(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("a valid ExportTraceServiceRequest")
}

#[test]
fn every_field_decodes_as_opentelemetry_proto_converts_it() {
    let baton = InstrumentationScope::builder("baton").build();
    let other = InstrumentationScope::builder("other")
        .with_version("1.2")
        .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
        .with_attributes([KeyValue::new("scope.attr", "x")])
        .build();
    let mut client = span("app", &baton);
    client.span_kind = SpanKind::Client;
    client.status = Status::Ok;
    client.parent_span_is_remote = false;
    let mut producer = bare(&other);
    producer.span_kind = SpanKind::Producer;
    let mut consumer = bare(&baton);
    consumer.span_kind = SpanKind::Consumer;
    let spans = vec![
        span("inbound", &baton),
        producer,
        client,
        bare(&baton),
        consumer,
    ];
    let resource = resource();
    let body = encode(&resource_fields(&resource), &spans);
    let decoded = decode(&body);
    assert_eq!(decoded, official(spans, &resource));

    // The same, field by field, for what the comparison relies on.
    let rs = &decoded.resource_spans[0];
    assert_eq!(decoded.resource_spans.len(), 1);
    let attributes = &rs.resource.as_ref().expect("resource").attributes;
    assert!(attributes.iter().any(|kv| kv.key == "service.name"));
    let scopes: Vec<&str> = rs
        .scope_spans
        .iter()
        .map(|s| s.scope.as_ref().expect("scope").name.as_str())
        .collect();
    assert_eq!(scopes, ["baton", "other"]);
    assert_eq!(
        rs.scope_spans[1].schema_url,
        other.schema_url().unwrap_or("")
    );
    let first = &rs.scope_spans[0].spans[0];
    assert_eq!(first.name, "inbound");
    assert_eq!(hex(&first.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&first.span_id), "00f067aa0ba902b7");
    assert_eq!(hex(&first.parent_span_id), "1122334455667788");
    assert_eq!(first.trace_state, "k=v");
    assert_eq!(first.flags, 0x301);
    assert_eq!(first.kind, 2);
    assert_eq!(first.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(first.end_time_unix_nano, 1_700_000_000_999_999_999);
    assert_eq!(first.dropped_attributes_count, 5);
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.dropped_events_count, 3);
    assert_eq!(first.links[0].trace_state, "a=1,b=2");
    assert_eq!(first.links[0].flags, 0x301);
    assert_eq!(first.dropped_links_count, 4);
    let status = first.status.as_ref().expect("status");
    assert_eq!((status.code, status.message.as_str()), (2, "refused"));
    let kinds: Vec<&str> = first
        .attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(_)) => "string",
                Some(any_value::Value::BoolValue(_)) => "bool",
                Some(any_value::Value::IntValue(_)) => "int",
                Some(any_value::Value::DoubleValue(_)) => "double",
                Some(any_value::Value::ArrayValue(_)) => "array",
                _ => "other",
            },
        )
        .collect();
    assert_eq!(
        kinds,
        [
            "string", "string", "bool", "bool", "int", "int", "int", "double", "double", "array",
            "array", "array", "array", "array"
        ]
    );
    let last = rs.scope_spans[0].spans.last().expect("a span");
    assert!(last.parent_span_id.is_empty());
    assert_eq!((last.kind, last.flags), (5, 0x100));
    assert_eq!(last.status.as_ref().map(|s| s.code), Some(0));
}

#[test]
fn an_empty_batch_and_an_empty_resource_still_make_a_valid_request() {
    let empty = Resource::builder_empty().build();
    let decoded = decode(&encode(&resource_fields(&empty), &[]));
    assert_eq!(decoded, official(vec![], &empty));
    let scope = InstrumentationScope::builder("baton").build();
    let spans = vec![bare(&scope)];
    let decoded = decode(&encode(&resource_fields(&empty), &spans));
    assert_eq!(decoded, official(spans, &empty));
}

#[test]
fn long_values_take_multi_byte_lengths() {
    let scope = InstrumentationScope::builder("baton").build();
    let mut s = span("inbound", &scope);
    s.attributes.push(KeyValue::new("long", "x".repeat(70_000)));
    let spans: Vec<SpanData> = std::iter::repeat_n(s, 3).collect();
    let resource = resource();
    let decoded = decode(&encode(&resource_fields(&resource), &spans));
    assert_eq!(decoded, official(spans, &resource));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
