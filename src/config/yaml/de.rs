//! serde over a [`Node`] tree: the raw config types are read from it as from the YAML text, and
//! what they do not expect is collected rather than ending the read. A key no field of a struct
//! names is recorded and skipped; a value of the wrong type ends this read with its path, and
//! [`super::Document::read`] reads again without that value.
//!
//! Scalars reach a field as serde-saphyr typed them, except that a string field takes a number
//! or boolean as written (`client_id: 0123` is `"0123"`), and an empty value (`routes:` with its
//! items commented out) reads as an empty list, map or section.

use super::tree::{Kind, Node};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

/// What one read shares: the source (for scalars' text), the fields left out, and the unknown
/// keys found.
pub(super) struct Cx<'a> {
    pub source: &'a str,
    pub masked: &'a BTreeSet<String>,
    pub unknown: RefCell<Vec<(String, String)>>,
}

/// A node to deserialize, at `path`.
pub(super) struct De<'a> {
    node: &'a Node,
    path: String,
    cx: &'a Cx<'a>,
}

impl<'a> De<'a> {
    /// The document's root.
    pub fn root(node: &'a Node, cx: &'a Cx<'a>) -> Self {
        Self {
            node,
            path: String::new(),
            cx,
        }
    }

    fn child(&self, node: &'a Node, path: String) -> Self {
        Self {
            node,
            path,
            cx: self.cx,
        }
    }

    /// What the node is, for a message about the wrong type.
    fn unexpected(&self) -> de::Unexpected<'a> {
        use de::Unexpected as U;
        match &self.node.kind {
            Kind::Null => U::Unit,
            Kind::Bool(b) => U::Bool(*b),
            Kind::U64(n) => U::Unsigned(*n),
            Kind::I64(n) => U::Signed(*n),
            Kind::F64(n) => U::Float(*n),
            Kind::Str(s) => U::Str(s),
            Kind::Seq(_) => U::Seq,
            Kind::Map(_) => U::Map,
        }
    }

    /// The text of a scalar as written, for a string field.
    fn text(&self) -> Option<&'a str> {
        match &self.node.kind {
            Kind::Str(s) => Some(s),
            Kind::Bool(_) | Kind::U64(_) | Kind::I64(_) | Kind::F64(_) => {
                self.node.text(self.cx.source)
            }
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }
}

/// Why a read ended: the path of the value and serde's message.
#[derive(Debug)]
pub(super) struct Error {
    /// The value's field path; `None` until the value's parent names it.
    pub path: Option<String>,
    pub message: String,
    /// The field a struct lacks, when that is the error.
    pub missing: Option<&'static str>,
}

impl Error {
    fn at(mut self, path: &str) -> Self {
        self.path.get_or_insert_with(|| path.to_owned());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: None,
            message: msg.to_string(),
            missing: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            missing: Some(field),
            ..Self::custom(format_args!("missing field `{field}`"))
        }
    }
}

/// The message for a key `fields` does not name: the field it is probably a misspelling of, or
/// else serde's list of the fields there are.
fn unknown_field(key: &str, fields: &'static [&'static str]) -> String {
    let near = fields
        .iter()
        .map(|f| (distance(key, f), f))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    match near {
        Some((_, field)) => format!("unknown field `{key}`: did you mean `{field}`?"),
        None => <Error as de::Error>::unknown_field(key, fields).message,
    }
}

/// The Levenshtein distance between `a` and `b`, case-insensitive (keys are short).
pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().flat_map(char::to_lowercase).enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::U64(n) => v.visit_u64(*n),
            Kind::I64(n) => v.visit_i64(*n),
            Kind::F64(n) => v.visit_f64(*n),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(Items::new(&self, items)),
            Kind::Map(entries) => v.visit_map(Entries::new(&self, entries, None)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.text() {
            Some(text) => v.visit_str(text),
            None => self.deserialize_any(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.node.kind {
            Kind::Null => v.visit_seq(Items::new(&self, &[])),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.node.kind {
            Kind::Null => v.visit_map(Entries::new(&self, &[], None)),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match &self.node.kind {
            Kind::Null => v.visit_map(Entries::new(&self, &[], Some(fields))),
            Kind::Map(entries) => v.visit_map(Entries::new(&self, entries, Some(fields))),
            _ => Err(de::Error::invalid_type(self.unexpected(), &"a mapping")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.text() {
            Some(text) => v.visit_enum(IntoDeserializer::<Error>::into_deserializer(text)),
            None => self.deserialize_any(v),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct
    }
}

/// A sequence's items, each at `path[i]`.
struct Items<'a> {
    parent: &'a str,
    cx: &'a Cx<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'a> Items<'a> {
    fn new(de: &'a De<'a>, items: &'a [Node]) -> Self {
        Self {
            parent: &de.path,
            cx: de.cx,
            items: items.iter().enumerate(),
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.parent);
        let de = De {
            node,
            path,
            cx: self.cx,
        };
        let path = de.path.clone();
        seed.deserialize(de).map(Some).map_err(|e| e.at(&path))
    }
}

/// A mapping's entries, each at `path.key`; for a struct, only the keys it has fields for.
struct Entries<'a> {
    de: &'a De<'a>,
    entries: std::slice::Iter<'a, (String, Node)>,
    fields: Option<&'static [&'static str]>,
    value: Option<(String, &'a Node)>,
}

impl<'a> Entries<'a> {
    fn new(
        de: &'a De<'a>,
        entries: &'a [(String, Node)],
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        Self {
            de,
            entries: entries.iter(),
            fields,
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, node) in self.entries.by_ref() {
            let path = match self.de.path.as_str() {
                "" => key.clone(),
                parent => format!("{parent}.{key}"),
            };
            if self.de.cx.masked.contains(&path) {
                continue;
            }
            if let Some(fields) = self.fields
                && !fields.contains(&key.as_str())
            {
                let reason = unknown_field(key, fields);
                self.de.cx.unknown.borrow_mut().push((path, reason));
                continue;
            }
            let k = seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(key.as_str()))
                .map_err(|e| e.at(&path))?;
            self.value = Some((path, node));
            return Ok(Some(k));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((path, node)) = self.value.take() else {
            return Err(de::Error::custom("a value before its key"));
        };
        let de = self.de.child(node, path.clone());
        seed.deserialize(de).map_err(|e| e.at(&path))
    }
}
