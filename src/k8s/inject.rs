//! `baton inject`: multi-document YAML in, the same documents out, with the sidecar injected into
//! the pod templates of the workloads that opt in (like `linkerd inject`). Documents that are not
//! changed are copied byte for byte; changed ones are re-serialized. `Namespace` documents in the
//! same stream act as namespace-level opt-in (enforced, as by the webhook) and defaults for
//! workloads that name them.
//!
//! Input is bounded: at most [`MAX_INPUT_BYTES`], and no document nested deeper than
//! [`MAX_DEPTH`]; serde-saphyr stops at the first level too deep, so the work stays linear in
//! the input. Documents are read with the YAML semantics of the config files (see
//! [`crate::config`]'s reader): YAML 1.2 booleans, `0123` and `1_000` kept as strings.

use super::mutate::{Outcome, Skip, mutate};
use super::policy::{Policy, PolicyArgs};
use super::settings::Namespace;
use crate::config::ConfigErrors;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// The largest input `baton inject` reads.
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// The deepest nesting of collections in one document; Kubernetes objects, CRD schemas
/// included, stay far below it.
pub const MAX_DEPTH: usize = 128;

/// Arguments of `baton inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Manifest file; standard input when absent or `-`.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,
    /// Sidecar uid and allowed images.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Why a stream could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A document is not valid YAML.
    #[error("document {index}: {source}")]
    Yaml {
        /// 1-based position in the stream.
        index: usize,
        /// The parser's error (line and column are relative to the document).
        source: serde_saphyr::Error,
    },
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A document nests deeper than [`MAX_DEPTH`].
    #[error("document {index}: {reason}")]
    Shape {
        /// 1-based position in the stream.
        index: usize,
        /// What is wrong, with the line.
        reason: String,
    },
    /// Some workloads carry invalid `baton.dev/*` annotations or collide with the sidecar.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// What happened to one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Deployment/web`, `Pod/ns/name`...
    pub origin: String,
    /// `None` when injected, else why not.
    pub skipped: Option<Skip>,
}

/// The rewritten stream and a verdict per workload.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The output YAML.
    pub yaml: String,
    /// One entry per workload seen, in order.
    pub verdicts: Vec<Verdict>,
}

/// Injects every opted-in workload of a multi-document YAML stream under `policy`. Pure.
///
/// Reading a document recurses once per level of nesting: at [`MAX_DEPTH`] that takes about
/// 512 KiB of stack in a release build (4 MiB in a debug build), which a main thread has.
pub fn inject_stream(text: &str, policy: &Policy) -> Result<Injected, InjectError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(InjectError::TooLarge {
            limit: MAX_INPUT_BYTES,
        });
    }
    let docs = split_documents(text);
    let mut parsed = Vec::with_capacity(docs.len());
    for (index, d) in docs.iter().enumerate() {
        let value = if is_blank(d.body) {
            None
        } else {
            Some(parse(d.body).map_err(|e| e.in_document(index + 1))?)
        };
        parsed.push(value);
    }
    let namespaces = namespaces(&parsed);
    let mut out = String::with_capacity(text.len() + 4096);
    let mut verdicts = Vec::new();
    let mut problems = Vec::new();
    for (d, value) in docs.iter().zip(parsed) {
        out.push_str(d.separator);
        let Some(mut value) = value else {
            out.push_str(d.body);
            continue;
        };
        let changed = inject_value(
            &mut value,
            &namespaces,
            policy,
            &mut verdicts,
            &mut problems,
        );
        if changed {
            match serde_saphyr::to_string(&value) {
                Ok(yaml) => out.push_str(&yaml),
                Err(_) => out.push_str(d.body),
            }
        } else {
            out.push_str(d.body);
        }
    }
    if !problems.is_empty() {
        return Err(InjectError::Invalid(ConfigErrors(problems)));
    }
    Ok(Injected {
        yaml: out,
        verdicts,
    })
}

/// The `Namespace` objects of the stream by name: opt-in and defaults for their workloads.
fn namespaces(parsed: &[Option<Value>]) -> HashMap<String, Namespace> {
    parsed
        .iter()
        .flatten()
        .flat_map(objects)
        .filter(|o| kind(o) == "Namespace")
        .filter_map(|o| {
            Some((
                o.pointer("/metadata/name")?.as_str()?.to_owned(),
                Namespace::from_object(o),
            ))
        })
        .collect()
}

/// Injects one object (or each item of a `List`); true when something changed.
fn inject_value(
    value: &mut Value,
    namespaces: &HashMap<String, Namespace>,
    policy: &Policy,
    verdicts: &mut Vec<Verdict>,
    problems: &mut Vec<crate::config::Finding>,
) -> bool {
    if kind(value).ends_with("List") {
        let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for item in items {
            changed |= inject_value(item, namespaces, policy, verdicts, problems);
        }
        return changed;
    }
    let Some(pointer) = template_pointer(kind(value)) else {
        return false;
    };
    let ns_name = value.pointer("/metadata/namespace").and_then(Value::as_str);
    let ns = ns_name
        .and_then(|n| namespaces.get(n))
        .cloned()
        .unwrap_or_default();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let origin = match ns_name {
        Some(n) => format!("{}/{n}/{name}", kind(value)),
        None => format!("{}/{name}", kind(value)),
    };
    let Some(template) = value.pointer_mut(pointer) else {
        return false;
    };
    match mutate(template, &ns, policy, &origin) {
        Ok(Outcome::Injected(new)) => {
            *template = new;
            verdicts.push(Verdict {
                origin,
                skipped: None,
            });
            true
        }
        Ok(Outcome::Skipped(skip)) => {
            verdicts.push(Verdict {
                origin,
                skipped: Some(skip),
            });
            false
        }
        Err(ConfigErrors(mut errors)) => {
            problems.append(&mut errors);
            false
        }
    }
}

/// Where a workload keeps its pod template (JSON pointer); `None` for other kinds.
pub fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// The object itself, or the items of a `List`.
fn objects(v: &Value) -> Vec<&Value> {
    match v.get("items").and_then(Value::as_array) {
        Some(items) if kind(v).ends_with("List") => items.iter().collect(),
        _ => vec![v],
    }
}

/// One document of a stream: the `---` line before it (empty for the first) and its text.
struct Document<'a> {
    separator: &'a str,
    body: &'a str,
}

/// Splits at `---` lines. A `---` at the start of a line always starts a new document (YAML 1.2
/// §9.1: document markers cannot occur inside scalars), so this is exact, not a heuristic.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut sep, mut start, mut pos) = ("", 0, 0);
    for line in text.split_inclusive('\n') {
        let is_marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if is_marker {
            docs.push(Document {
                separator: sep,
                body: &text[start..pos],
            });
            sep = &text[pos..pos + line.len()];
            start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push(Document {
        separator: sep,
        body: &text[start..],
    });
    docs
}

/// Reads one document, bounded: nesting by [`MAX_DEPTH`] (flow collections by the scanner, all
/// collections by the budget), and nodes by the input's size rather than by serde-saphyr's
/// defaults, which a large but ordinary manifest can exceed.
fn parse(doc: &str) -> Result<Value, InjectError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_nodes = MAX_INPUT_BYTES;
    budget.max_events = 2 * MAX_INPUT_BYTES;
    let mut options = crate::config::yaml::options();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(doc, options).map_err(|source| match &source {
        serde_saphyr::Error::Budget {
            breach: serde_saphyr::budget::BudgetBreach::Depth { .. },
            location,
        } => InjectError::Shape {
            index: 0,
            reason: format!(
                "nested deeper than {MAX_DEPTH} levels at line {}",
                location.line()
            ),
        },
        _ => InjectError::Yaml { index: 0, source },
    })
}

impl InjectError {
    /// The error with the 1-based position of its document in the stream.
    fn in_document(mut self, n: usize) -> Self {
        if let InjectError::Yaml { index, .. } | InjectError::Shape { index, .. } = &mut self {
            *index = n;
        }
        self
    }
}

fn is_blank(doc: &str) -> bool {
    doc.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

/// `baton inject -f FILE` (or standard input): writes the injected stream to standard output and
/// one line per workload to standard error. Exit 64 for an invalid flag, 65 for invalid input
/// (every problem listed, a pod whose generated config the sidecar would refuse included), 66
/// when the file cannot be read.
pub fn main(args: InjectArgs) -> ExitCode {
    let policy = match args.policy.policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("baton inject: {e}");
            return ExitCode::from(64);
        }
    };
    let mut text = String::new();
    // One byte more than the limit is read, so that too large is told from just large enough.
    let limit = MAX_INPUT_BYTES as u64 + 1;
    let read = match args.file.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(p).and_then(|f| f.take(limit).read_to_string(&mut text))
        }
        _ => std::io::stdin().take(limit).read_to_string(&mut text),
    };
    if let Err(e) = read {
        eprintln!("baton inject: read input: {e}");
        return ExitCode::from(66);
    }
    let injected = match inject_stream(&text, &policy) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("baton inject: {e}");
            return ExitCode::from(65);
        }
    };
    for v in &injected.verdicts {
        match v.skipped {
            None => eprintln!("{} injected", v.origin),
            Some(skip) => eprintln!("{} skipped ({})", v.origin, skip.as_str()),
        }
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_all(injected.yaml.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;
