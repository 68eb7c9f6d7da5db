//! Reading a YAML configuration file so that every problem is found in one run, each with its
//! line, column and field path: `sidecar.yaml` and `idp.yaml` both read through here.
//!
//! The text is parsed once by serde-saphyr into a tree that keeps each node's position
//! ([`Document::parse`]; a syntax error is the one problem that ends the read). The raw config
//! types are then read from the tree by serde ([`Document::read`]): a key that no field names is
//! an error and is skipped, and a value of the wrong type is an error and is read as absent, so
//! that the rest of the file is still read and validated.
//!
//! YAML semantics (the same for both files):
//! - YAML 1.2 booleans only: `yes`, `no`, `on`, `off` are strings, and a boolean field refuses them;
//! - a plain number with a leading zero (`0123`) or an underscore (`1_000`) is a string, and a
//!   string field takes any scalar as written; `0o17` and `0x1F` are numbers;
//! - a key written twice in one mapping is an error; anchors, aliases and `<<` merges work;
//! - one document per file, nested at most 32 levels; aliases and sizes are bounded by
//!   serde-saphyr's budget.

mod de;
mod tree;

use super::findings::Problems;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use tree::{Kind, Node};

/// Most values of the wrong type reported from one file; each costs one more read of the tree.
const MAX_UNREADABLE: usize = 64;

/// The deepest nesting of a config file: its sections are a few levels deep, claim values a few
/// more. Reading recurses once per level, and a reload runs on a runtime's worker thread, whose
/// stack is smaller than the main thread's.
const MAX_DEPTH: usize = 32;

/// The reader's options: YAML 1.2 booleans, numbers with leading zeros or underscores left as
/// strings, duplicate keys refused (the default), NaN and infinities kept as their text, and
/// serde-saphyr's budget with nesting bounded by [`MAX_DEPTH`].
pub(crate) fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.underscored_numbers_as_strings = true;
    o.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    o.with_snippet = false;
    o
}

/// A parsed configuration file.
pub(crate) struct Document {
    source: String,
    root: Node,
    /// Field path → line and column of its key (or of the item, in a list).
    positions: BTreeMap<String, (u64, u64)>,
}

impl Document {
    /// Parses `text`, or records its syntax error (with its line and column) in `p`.
    pub fn parse(text: &str, p: &mut Problems) -> Option<Document> {
        match Node::parse(text) {
            Ok(root) => {
                let mut positions = BTreeMap::new();
                walk("", &root, &mut positions);
                Some(Document {
                    source: text.to_owned(),
                    root,
                    positions,
                })
            }
            Err(e) => {
                let at = e.location().map(|l| (l.line(), l.column()));
                let message = e.render_with_formatter(&serde_saphyr::UserMessageFormatter);
                // The message ends with " at line L, column C", which the position already says.
                let reason = match message.rsplit_once(" at line ") {
                    Some((reason, _)) if at.is_some() => reason.to_owned(),
                    _ => message,
                };
                p.read_error("(document)", reason, at);
                None
            }
        }
    }

    /// Reads the raw config type `T`, recording in `p` each key `T` has no field for and each
    /// value of the wrong type. `None` when even without those values there is no `T` (a
    /// required field is missing, or the document is not a mapping).
    pub fn read<T: DeserializeOwned>(&self, p: &mut Problems) -> Option<T> {
        let mut masked = BTreeSet::new();
        let mut unknown = BTreeMap::new();
        let mut value = None;
        for _ in 0..MAX_UNREADABLE {
            let cx = de::Cx {
                source: &self.source,
                masked: &masked,
                unknown: Default::default(),
            };
            let attempt = T::deserialize(de::De::root(&self.root, &cx));
            unknown.extend(cx.unknown.into_inner());
            let e = match attempt {
                Ok(v) => {
                    value = Some(v);
                    break;
                }
                Err(e) => e,
            };
            let path = e.path.unwrap_or_default();
            let (field, reason) = match e.missing {
                Some(f) if path.is_empty() => (f.to_owned(), "required".to_owned()),
                Some(f) => (format!("{path}.{f}"), "required".to_owned()),
                None if path.is_empty() => ("(document)".to_owned(), e.message),
                None => (path.clone(), e.message),
            };
            // A field left out by an earlier read is missing now: its error is recorded.
            if !masked.contains(&field) {
                p.read_error(field, reason, None);
            }
            // A bad item leaves out its whole list: leaving out the item would renumber the rest.
            let leave_out = list_of(&path).to_owned();
            if leave_out.is_empty() || !masked.insert(leave_out.clone()) {
                break;
            }
            p.shadow(leave_out);
        }
        for (field, reason) in unknown {
            p.read_error(field, reason, None);
        }
        value
    }

    /// The line and column of `field`, or of the nearest enclosing field written in the file (a
    /// field left to its default has no position of its own).
    pub fn position(&self, field: &str) -> Option<(u64, u64)> {
        let mut path = field;
        loop {
            if let Some(at) = self.positions.get(path) {
                return Some(*at);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    /// The document as JSON (for showing the config, redacted, on the admin port).
    pub fn to_json(&self) -> serde_json::Value {
        json(&self.root.kind)
    }
}

/// Records the position of every node under `prefix`.
fn walk(prefix: &str, node: &Node, positions: &mut BTreeMap<String, (u64, u64)>) {
    let mut visit = |path: String, child: &Node| {
        positions.insert(path.clone(), child.at);
        walk(&path, child, positions);
    };
    match &node.kind {
        Kind::Map(entries) => {
            for (key, child) in entries {
                match prefix {
                    "" => visit(key.clone(), child),
                    _ => visit(format!("{prefix}.{key}"), child),
                }
            }
        }
        Kind::Seq(items) => {
            for (i, child) in items.iter().enumerate() {
                visit(format!("{prefix}[{i}]"), child);
            }
        }
        _ => {}
    }
}

/// The list an item path is in (`routes[2]` → `routes`); any other path itself.
fn list_of(path: &str) -> &str {
    match path.strip_suffix(']').and_then(|p| p.rfind('[')) {
        Some(i) => &path[..i],
        None => path,
    }
}

fn json(kind: &Kind) -> serde_json::Value {
    use serde_json::Value;
    match kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::U64(n) => Value::from(*n),
        Kind::I64(n) => Value::from(*n),
        Kind::F64(n) => Value::from(*n),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(|n| json(&n.kind)).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, n)| (k.clone(), json(&n.kind)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
