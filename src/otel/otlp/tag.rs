//! Field numbers of the OTLP messages (`trace.proto`, `common.proto`, `resource.proto`).

pub(super) const REQUEST_RESOURCE_SPANS: u32 = 1;

pub(super) const RESOURCE_SPANS_RESOURCE: u32 = 1;
pub(super) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
pub(super) const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
pub(super) const RESOURCE_ATTRIBUTES: u32 = 1;

pub(super) const SCOPE_SPANS_SCOPE: u32 = 1;
pub(super) const SCOPE_SPANS_SPANS: u32 = 2;
pub(super) const SCOPE_SPANS_SCHEMA_URL: u32 = 3;
pub(super) const SCOPE_NAME: u32 = 1;
pub(super) const SCOPE_VERSION: u32 = 2;
pub(super) const SCOPE_ATTRIBUTES: u32 = 3;

pub(super) const SPAN_TRACE_ID: u32 = 1;
pub(super) const SPAN_SPAN_ID: u32 = 2;
pub(super) const SPAN_TRACE_STATE: u32 = 3;
pub(super) const SPAN_PARENT_SPAN_ID: u32 = 4;
pub(super) const SPAN_NAME: u32 = 5;
pub(super) const SPAN_KIND: u32 = 6;
pub(super) const SPAN_START: u32 = 7;
pub(super) const SPAN_END: u32 = 8;
pub(super) const SPAN_ATTRIBUTES: u32 = 9;
pub(super) const SPAN_DROPPED_ATTRIBUTES: u32 = 10;
pub(super) const SPAN_EVENTS: u32 = 11;
pub(super) const SPAN_DROPPED_EVENTS: u32 = 12;
pub(super) const SPAN_LINKS: u32 = 13;
pub(super) const SPAN_DROPPED_LINKS: u32 = 14;
pub(super) const SPAN_STATUS: u32 = 15;
pub(super) const SPAN_FLAGS: u32 = 16;

pub(super) const EVENT_TIME: u32 = 1;
pub(super) const EVENT_NAME: u32 = 2;
pub(super) const EVENT_ATTRIBUTES: u32 = 3;
pub(super) const EVENT_DROPPED_ATTRIBUTES: u32 = 4;

pub(super) const LINK_TRACE_ID: u32 = 1;
pub(super) const LINK_SPAN_ID: u32 = 2;
pub(super) const LINK_TRACE_STATE: u32 = 3;
pub(super) const LINK_ATTRIBUTES: u32 = 4;
pub(super) const LINK_DROPPED_ATTRIBUTES: u32 = 5;
pub(super) const LINK_FLAGS: u32 = 6;

pub(super) const STATUS_MESSAGE: u32 = 2;
pub(super) const STATUS_CODE: u32 = 3;

pub(super) const KEY_VALUE_KEY: u32 = 1;
pub(super) const KEY_VALUE_VALUE: u32 = 2;
pub(super) const ANY_STRING: u32 = 1;
pub(super) const ANY_BOOL: u32 = 2;
pub(super) const ANY_INT: u32 = 3;
pub(super) const ANY_DOUBLE: u32 = 4;
pub(super) const ANY_ARRAY: u32 = 5;
pub(super) const ARRAY_VALUES: u32 = 1;
