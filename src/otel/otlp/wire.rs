//! Attributes, values and the protobuf wire primitives the messages are written with: for
//! each, its encoded length and a writer of its bytes.

use super::tag;
use bytes::BufMut;
use opentelemetry::{Array, KeyValue, Value};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

pub(super) fn attributes_len<'a>(
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) -> usize {
    attributes
        .into_iter()
        .map(|kv| message_len(field, key_value_len(kv.key.as_str(), &kv.value)))
        .sum()
}

pub(super) fn put_attributes<'a>(
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
pub(super) fn key_value_len(key: &str, value: &Value) -> usize {
    str_len(tag::KEY_VALUE_KEY, key) + message_len(tag::KEY_VALUE_VALUE, any_len(value))
}

pub(super) fn put_key_value(key: &str, value: &Value, buf: &mut Vec<u8>) {
    put_str(tag::KEY_VALUE_KEY, key, buf);
    put_message_header(tag::KEY_VALUE_VALUE, any_len(value), buf);
    put_any(value, buf);
}

/// One value of an `AnyValue`'s `oneof` (always written, even when it is the default: a
/// `oneof` field's presence is its value).
#[derive(Clone, Copy)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
}

pub(super) fn scalar_len(s: Scalar<'_>) -> usize {
    match s {
        Scalar::Bool(_) => key_len(tag::ANY_BOOL) + 1,
        Scalar::Int(i) => key_len(tag::ANY_INT) + encoded_len_varint(i as u64),
        Scalar::Double(_) => key_len(tag::ANY_DOUBLE) + 8,
        Scalar::Str(s) => message_len(tag::ANY_STRING, s.len()),
    }
}

pub(super) fn put_scalar(s: Scalar<'_>, buf: &mut Vec<u8>) {
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
pub(super) fn elements(array: &Array) -> Box<dyn Iterator<Item = Scalar<'_>> + '_> {
    match array {
        Array::Bool(v) => Box::new(v.iter().map(|b| Scalar::Bool(*b))),
        Array::I64(v) => Box::new(v.iter().map(|i| Scalar::Int(*i))),
        Array::F64(v) => Box::new(v.iter().map(|d| Scalar::Double(*d))),
        Array::String(v) => Box::new(v.iter().map(|s| Scalar::Str(s.as_str()))),
        _ => Box::new(std::iter::empty()),
    }
}

/// The `ArrayValue` message's length.
pub(super) fn array_len(array: &Array) -> usize {
    elements(array)
        .map(|s| message_len(tag::ARRAY_VALUES, scalar_len(s)))
        .sum()
}

/// `value` as one scalar, `None` for an array.
pub(super) fn scalar(value: &Value) -> Option<Scalar<'_>> {
    Some(match value {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::I64(i) => Scalar::Int(*i),
        Value::F64(d) => Scalar::Double(*d),
        Value::String(s) => Scalar::Str(s.as_str()),
        _ => return None,
    })
}

/// The `AnyValue` message's length.
pub(super) fn any_len(value: &Value) -> usize {
    match (scalar(value), value) {
        (Some(s), _) => scalar_len(s),
        (None, Value::Array(a)) => message_len(tag::ANY_ARRAY, array_len(a)),
        (None, _) => 0,
    }
}

pub(super) fn put_any(value: &Value, buf: &mut Vec<u8>) {
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
pub(super) fn message_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

pub(super) fn put_message_header(field: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

pub(super) fn bytes_len(field: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        message_len(field, b.len())
    }
}

pub(super) fn put_bytes(field: u32, b: &[u8], buf: &mut Vec<u8>) {
    if !b.is_empty() {
        put_message_header(field, b.len(), buf);
        buf.put_slice(b);
    }
}

pub(super) fn str_len(field: u32, s: &str) -> usize {
    bytes_len(field, s.as_bytes())
}

pub(super) fn put_str(field: u32, s: &str, buf: &mut Vec<u8>) {
    put_bytes(field, s.as_bytes(), buf);
}

pub(super) fn varint_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + encoded_len_varint(v)
    }
}

pub(super) fn put_varint(field: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

pub(super) fn fixed64_len(field: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(field) + 8 }
}

pub(super) fn put_fixed64(field: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.put_u64_le(v);
    }
}

pub(super) fn fixed32_len(field: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(field) + 4 }
}

pub(super) fn put_fixed32(field: u32, v: u32, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(field, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(v);
    }
}
