//! The crate's modules form no cycle: for every pair of sibling modules (children of the same
//! parent), if one names the other through `crate::…` or `super::…`, the other must not name it
//! back, directly or through further siblings. A cycle is reported with one referencing line per
//! edge, so the fix starts where the test points.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// One reference from a file to a module path, with the line it was found on.
struct Reference {
    from: Module,
    to: Module,
    file: PathBuf,
    line: usize,
}

#[test]
fn sibling_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut references = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source file is readable");
        references.extend(references_in(&module, file, &text));
    }
    assert!(
        references.len() > 50,
        "the scanner found only {} references: it is broken",
        references.len()
    );

    // Sibling edges: (parent, from child, to child) → first line that makes the edge.
    let mut edges: BTreeMap<(Module, String, String), (PathBuf, usize)> = BTreeMap::new();
    for r in &references {
        let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
        if common >= r.from.len() || common >= r.to.len() {
            continue; // a parent naming its child or a child naming its parent
        }
        let parent = r.from[..common].to_vec();
        edges
            .entry((parent, r.from[common].clone(), r.to[common].clone()))
            .or_insert((r.file.clone(), r.line));
    }

    let mut cycles = Vec::new();
    let parents: BTreeSet<&Module> = edges.keys().map(|(p, _, _)| p).collect();
    for parent in parents {
        let graph: BTreeMap<&str, Vec<&str>> = edges.keys().filter(|(p, _, _)| p == parent).fold(
            BTreeMap::new(),
            |mut g, (_, a, b)| {
                g.entry(a.as_str()).or_default().push(b.as_str());
                g
            },
        );
        for component in strongly_connected(&graph) {
            let mut lines = Vec::new();
            for a in &component {
                for b in graph.get(a).into_iter().flatten() {
                    if component.contains(b) {
                        let (file, line) = &edges[&(parent.clone(), a.to_string(), b.to_string())];
                        let file = file.strip_prefix(&src).unwrap_or(file);
                        lines.push(format!("    {a} → {b} at src/{}:{line}", file.display()));
                    }
                }
            }
            cycles.push(format!(
                "cycle among children of `crate{}`: {}\n{}",
                parent.iter().map(|p| format!("::{p}")).collect::<String>(),
                component.join(", "),
                lines.join("\n")
            ));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines; `None` for the binaries under `src/bin/` and `main.rs`, which are
/// crates of their own.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let relative = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.first().map(String::as_str) {
        Some("bin" | "main.rs") => return None,
        Some("lib.rs") => return Some(Vec::new()),
        _ => {}
    }
    let mut module: Module = parts;
    let last = module.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" {
        module.push(stem.to_string());
    }
    Some(module)
}

/// Every `crate::a::b` and `super::a` path in the file's code (comments skipped), resolved to
/// an absolute module path. Inline `mod tests` blocks count as the file's own module, which only
/// over-reports.
fn references_in(module: &Module, file: &Path, text: &str) -> Vec<Reference> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            for path in use_tree(&code[at + prefix.len()..]) {
                let mut to = base.clone();
                to.extend(path);
                if !to.is_empty() && to != *module {
                    out.push(Reference {
                        from: module.clone(),
                        to,
                        file: file.to_path_buf(),
                        line,
                    });
                }
            }
        }
    }
    out
}

fn parent(module: &Module) -> Module {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// The module paths named by a path or use tree: `a::b::Item` gives `[a, b]` (lower-case
/// segments only; an item below a module changes nothing for the sibling rule), and a group
/// `{a, b::{c, d}}`, across lines, gives each member.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    let (head, rest) = segments(text);
    let Some(group) = rest.strip_prefix('{') else {
        return if head.is_empty() {
            Vec::new()
        } else {
            vec![head]
        };
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut member_start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                push_member(&head, &group[member_start..i], &mut out);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                push_member(&head, &group[member_start..i], &mut out);
                member_start = i + 1;
            }
            _ => {}
        }
    }
    out
}

fn push_member(head: &[String], member: &str, out: &mut Vec<Vec<String>>) {
    for tail in use_tree(member.trim_start()) {
        let mut path = head.to_vec();
        path.extend(tail);
        out.push(path);
    }
    if head.is_empty() {
        return;
    }
    // `a::{self, B}` names `a` itself.
    out.push(head.to_vec());
}

/// The leading `a::b::` segments of a path and what follows them.
fn segments(text: &str) -> (Vec<String>, &str) {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() || name == "self" || !name.starts_with(|c: char| c.is_lowercase()) {
            return (out, rest);
        }
        out.push(name.to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => return (out, &rest[end..]),
        }
    }
}

/// Tarjan's strongly connected components with more than one member.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, graph, &mut state);
        }
    }
    state.out
}
