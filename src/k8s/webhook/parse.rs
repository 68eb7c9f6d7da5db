//! The part of an AdmissionReview the webhook reads, and a bound on what it may cost.
//!
//! The review is parsed into typed structs: `apiVersion`, `kind`, and of `request` only `uid`,
//! `kind`, `operation` and `namespace`; every other member (`userInfo`, `oldObject`, `options`,
//! anything unknown) is skipped without being built, however deep it is (serde_json skips with
//! one byte of state per level). `request.object` is kept as the raw text it was sent as and
//! parsed only once the review turned out to be a Pod creation, into a JSON value of at most
//! [`MAX_POD_VALUES`] values: the pod must stay JSON so that fields baton does not know survive the
//! patch, and a JSON value costs tens of bytes per value however short its text (a 1 MiB
//! `[0,0,…]` is 512 Ki values, ~30 MiB as a `serde_json::Value`).

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// The most JSON values (objects, arrays, strings, numbers, ...) a pod may hold: many times a
/// large real pod (a pod with ten containers of fifty env vars each, managed fields included,
/// is a few thousand), and few enough that a pod of this size and its mutated copy stay within a
/// few MiB.
pub const MAX_POD_VALUES: usize = 32 * 1024;

/// An AdmissionReview as far as the webhook reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<'a> {
    /// Must be `admission.k8s.io/v1`.
    pub api_version: Option<String>,
    /// Must be `AdmissionReview`.
    pub kind: Option<String>,
    /// The request to answer.
    #[serde(borrow)]
    pub request: Option<ReviewRequest<'a>>,
}

/// `request` of an AdmissionReview.
#[derive(Debug, Deserialize)]
pub struct ReviewRequest<'a> {
    /// Echoed in the answer.
    pub uid: Option<String>,
    /// The object's group, version and kind.
    pub kind: Option<GroupVersionKind>,
    /// `CREATE`, `UPDATE`, ...
    pub operation: Option<String>,
    /// The object's namespace.
    pub namespace: Option<String>,
    /// The object, as sent: parsed with [`pod`] only when needed.
    #[serde(borrow)]
    pub object: Option<&'a RawValue>,
}

/// `request.kind`.
#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind {
    /// `""` for the core group.
    #[serde(default)]
    pub group: String,
    /// `Pod`, ...
    #[serde(default)]
    pub kind: String,
}

/// Parses the pod into a JSON value of at most [`MAX_POD_VALUES`] values; fails on a larger one,
/// on a duplicate member name, and on anything that is not JSON.
pub fn pod(raw: &RawValue) -> Result<Value, serde_json::Error> {
    let budget = Cell::new(MAX_POD_VALUES);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let value = Bounded(&budget).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value` while counting down a shared budget of values.
#[derive(Clone, Copy)]
struct Bounded<'b>(&'b Cell<usize>);

impl Bounded<'_> {
    fn take<E: de::Error>(self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the pod holds more than {MAX_POD_VALUES} JSON values"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.take()?;
            let value = map.next_value_seed(self)?;
            if members.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_pod_within_the_budget_parses_exactly_as_serde_json_would() {
        let text = r#"{"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers":
            [{"name": "c", "ports": [{"containerPort": 8080}], "x": [1.5, -2, true, null, "é\u0041"]}]}}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(pod(&raw(text)).unwrap(), want);
    }

    #[test]
    fn values_beyond_the_budget_are_refused_in_every_shape() {
        let n = MAX_POD_VALUES;
        let shapes = [
            format!("[{}0]", "0,".repeat(n)),
            format!(
                "{{{}\"end\":0}}",
                (0..n / 2)
                    .map(|i| format!("\"k{i}\":0,"))
                    .collect::<String>()
            ),
            format!("[{}[]]", "[],".repeat(n)),
            format!("[{}{{}}]", "{},".repeat(n)),
            format!("[{}\"\"]", "\"\",".repeat(n)),
        ];
        for shape in shapes {
            let e = pod(&raw(&shape)).unwrap_err().to_string();
            assert!(e.contains("more than 32768 JSON values"), "{e}");
        }
        // One below the budget is fine: the bound is exact.
        let fits = format!("[{}0]", "0,".repeat(n - 2));
        assert_eq!(pod(&raw(&fits)).unwrap().as_array().unwrap().len(), n - 1);
    }

    #[test]
    fn duplicate_members_and_deep_nesting_are_refused() {
        let e = pod(&raw(r#"{"spec": {}, "spec": {}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate member name"), "{e}");
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(pod(&raw(&deep)).is_err());
    }

    #[test]
    fn unread_members_are_skipped_whatever_their_size_or_depth() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let wide = format!("[{}0]", "0,".repeat(200_000));
        let text = format!(
            r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {{"uid": "u", "userInfo": {deep}, "oldObject": {wide},
                "kind": {{"group": "", "version": "v1", "kind": "Pod"}}, "operation": "CREATE",
                "namespace": "ns", "object": {{"spec": {{}}}}, "options": {deep}}}, "extra": {wide}}}"#
        );
        let review: Review<'_> = serde_json::from_str(&text).unwrap();
        let request = review.request.unwrap();
        assert_eq!(request.uid.as_deref(), Some("u"));
        assert_eq!(request.kind.unwrap().kind, "Pod");
        assert_eq!(request.object.unwrap().get(), r#"{"spec": {}}"#);
    }
}
