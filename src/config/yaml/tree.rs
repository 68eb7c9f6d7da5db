//! A YAML document as a tree that remembers where each node is written: one parse by
//! serde-saphyr, keeping the line and column of every mapping key and sequence item, and where
//! a scalar's text is, so that a string field takes `0123`, `1.50` or `True` as written.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// One node: its place in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// Line and column (1-based) of its key in a mapping, of the item in a sequence.
    pub at: (u64, u64),
    /// Bytes of the source where a scalar that is not a string is written (its anchor's, for
    /// an alias).
    pub span: Option<std::ops::Range<usize>>,
    /// The value.
    pub kind: Kind,
}

/// What a node holds. Scalars are typed as YAML 1.2 reads plain text (see [`super::options`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are unique (duplicates are a parse error).
    Map(Vec<(String, Node)>),
}

impl Node {
    /// Parses `text` as one YAML document.
    pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
        let root: Spanned<Kind> = serde_saphyr::from_str_with_options(text, super::options())?;
        Ok(node((1, 1), root))
    }

    /// The text of a scalar that is not a string, as written in `source`.
    pub fn text<'s>(&self, source: &'s str) -> Option<&'s str> {
        source.get(self.span.clone()?)
    }
}

/// A node at `at` (its key or item) holding `value`.
fn node(at: (u64, u64), value: Spanned<Kind>) -> Node {
    let span = match value.value {
        Kind::Null | Kind::Str(_) | Kind::Seq(_) | Kind::Map(_) => None,
        Kind::Bool(_) | Kind::U64(_) | Kind::I64(_) | Kind::F64(_) => {
            let span = value.defined.span();
            span.byte_offset().zip(span.byte_len()).and_then(|(o, l)| {
                let start = usize::try_from(o).ok()?;
                Some(start..start.checked_add(usize::try_from(l).ok()?)?)
            })
        }
    };
    Node {
        at,
        span,
        kind: value.value,
    }
}

fn place(l: &Location) -> (u64, u64) {
    (l.line(), l.column())
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value: Spanned<Kind> = map.next_value()?;
            entries.push((key.value.0, node(place(&key.referenced), value)));
        }
        Ok(Kind::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Kind>>()? {
            items.push(node(place(&item.referenced), item));
        }
        Ok(Kind::Seq(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
}

/// A scalar mapping key as the text a field path shows.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}
