//! Where each field of an `idp.yaml` is written: a map from the field path used in messages
//! (`clients[2].secret`, `resources.https://r.example/api`) to its line, so a problem found in a
//! value, not only a parse error, names its line.
//!
//! Built from a second, position-keeping read of the same text (`serde_saphyr::Spanned` on every
//! key and sequence item): the field paths are the ones validation writes, no YAML is parsed by
//! hand.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::fmt;

/// Field path → (line, column) of its key (or of the item, in a sequence), 1-based.
#[derive(Debug, Default)]
pub struct Lines(BTreeMap<String, (u64, u64)>);

impl Lines {
    /// Positions of every field of `text`; empty when `text` is not YAML (the parse error then
    /// carries its own line).
    pub fn of(text: &str) -> Lines {
        let mut lines = Lines::default();
        if let Ok(root) = serde_saphyr::from_str_with_options::<Node>(text, super::yaml_options()) {
            lines.walk("", root);
        }
        lines
    }

    fn walk(&mut self, prefix: &str, node: Node) {
        for (segment, at, child) in node.0 {
            let path = match segment {
                Segment::Key(k) if prefix.is_empty() => k,
                Segment::Key(k) => format!("{prefix}.{k}"),
                Segment::Index(i) => format!("{prefix}[{i}]"),
            };
            self.0.insert(path.clone(), (at.line(), at.column()));
            self.walk(&path, child);
        }
    }

    /// The line of `field`, or of the nearest enclosing field written in the file (a field left
    /// to its default has no line of its own).
    pub fn line(&self, field: &str) -> Option<u64> {
        let mut path = field;
        loop {
            if let Some((line, _)) = self.0.get(path) {
                return Some(*line);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    /// The deepest field whose key starts on `line` at or before `column`: what a parse error at
    /// that position is about.
    pub fn field_at(&self, line: u64, column: u64) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, (l, c))| *l == line && *c <= column)
            .max_by_key(|(path, (_, c))| (*c, path.len()))
            .map(|(path, _)| path.as_str())
    }
}

/// A mapping key or a sequence index.
enum Segment {
    Key(String),
    Index(usize),
}

/// A YAML node reduced to where its children start.
struct Node(Vec<(Segment, Location, Node)>);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut children = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value: Node = map.next_value()?;
            children.push((Segment::Key(key.value.0), key.referenced, value));
        }
        Ok(Node(children))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut children = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            children.push((Segment::Index(children.len()), item.referenced, item.value));
        }
        Ok(Node(children))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

/// A scalar mapping key as the text validation puts in a field path.
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "issuer: x\nclients:\n  - id: a\n    secret: s\n  - {id: b, grant_types: [x, y]}\nresources:\n  \"https://r.example/a.b\": a\nlifetimes: {access: 0}\n";

    #[test]
    fn every_field_path_has_the_line_of_its_key() {
        let lines = Lines::of(TEXT);
        assert_eq!(lines.line("issuer"), Some(1));
        assert_eq!(lines.line("clients[0]"), Some(3));
        assert_eq!(lines.line("clients[0].secret"), Some(4));
        assert_eq!(lines.line("clients[1].grant_types"), Some(5));
        assert_eq!(lines.line("resources.https://r.example/a.b"), Some(7));
        assert_eq!(lines.line("lifetimes.access"), Some(8));
    }

    #[test]
    fn a_defaulted_field_takes_the_line_of_the_nearest_written_one() {
        let lines = Lines::of(TEXT);
        assert_eq!(lines.line("clients[1].redirect_uris"), Some(5));
        assert_eq!(lines.line("lifetimes.code"), Some(8));
        assert_eq!(lines.line("grants[0].client"), None);
    }

    #[test]
    fn a_position_maps_back_to_the_deepest_field_there() {
        let lines = Lines::of(TEXT);
        assert_eq!(lines.field_at(4, 5), Some("clients[0].secret"));
        assert_eq!(lines.field_at(4, 13), Some("clients[0].secret"));
        assert_eq!(lines.field_at(3, 9), Some("clients[0].id"));
        assert_eq!(lines.field_at(9, 1), None);
    }

    #[test]
    fn text_that_is_not_yaml_has_no_lines() {
        assert_eq!(Lines::of("a: [b\n").line("a"), None);
    }
}
