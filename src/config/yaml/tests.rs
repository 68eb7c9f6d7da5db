use super::*;
use crate::config::findings::{Missing, Report};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(default)]
struct Raw {
    name: Option<String>,
    count: Option<u64>,
    on: Option<bool>,
    list: Vec<String>,
    items: Vec<Item>,
    section: Section,
    any: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default, PartialEq)]
struct Item {
    id: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(default)]
struct Section {
    mode: Mode,
    limit: u64,
}

#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Fast,
    Slow,
}

/// Reads `text` as `Raw`; the value and what was found, each finding as `line:col field: reason`.
fn read(text: &str) -> (Option<Raw>, Vec<String>) {
    let mut p = Problems::new("f.yaml");
    let doc = Document::parse(text, &mut p);
    let raw = doc.as_ref().and_then(|d| d.read::<Raw>(&mut p));
    let report: Report = match &doc {
        Some(d) => p.report(|f| d.position(f), Missing::Error),
        None => p.report(|_| None, Missing::Error),
    };
    let found = report
        .errors
        .iter()
        .map(|f| {
            format!(
                "{}:{} {}: {}",
                f.line.unwrap_or(0),
                f.column.unwrap_or(0),
                f.field,
                f.reason
            )
        })
        .collect();
    (raw, found)
}

#[test]
fn a_well_formed_file_reads_as_serde_would_read_it() {
    let text = "name: n\ncount: 3\non: true\nlist: [a, b]\nitems:\n  - {id: x, size: 2}\n  - id: y\nsection: {mode: slow}\nany: {k: [1, x, null]}\n";
    let (raw, found) = read(text);
    assert!(found.is_empty(), "{found:?}");
    let raw = raw.expect("read");
    assert_eq!(raw.name.as_deref(), Some("n"));
    assert_eq!(raw.count, Some(3));
    assert_eq!(raw.on, Some(true));
    assert_eq!(raw.list, ["a", "b"]);
    assert_eq!(
        raw.items[1],
        Item {
            id: "y".into(),
            size: 0
        }
    );
    assert_eq!(raw.section.mode, Mode::Slow);
    assert_eq!(raw.any, Some(serde_json::json!({"k": [1, "x", null]})));
}

#[test]
fn every_unknown_key_and_every_bad_value_is_found_with_its_place() {
    let text = "\
name: n
colour: red
count: many
items:
  - {id: x, size: big}
  - {id: y, sise: 1}
section:
  mode: medium
  limt: 3
on: yes
";
    let (raw, found) = read(text);
    assert_eq!(
        found,
        [
            "2:1 colour: unknown field `colour`, expected one of `name`, `count`, `on`, `list`, `items`, `section`, `any`",
            "3:1 count: invalid type: string \"many\", expected u64",
            "5:13 items[0].size: invalid type: string \"big\", expected u64",
            "6:13 items[1].sise: unknown field `sise`: did you mean `size`?",
            "8:3 section.mode: unknown variant `medium`, expected `fast` or `slow`",
            "9:3 section.limt: unknown field `limt`: did you mean `limit`?",
            "10:1 on: invalid type: string \"yes\", expected a boolean",
        ]
    );
    // What could be read is read; what could not is left to its default.
    let raw = raw.expect("the rest reads");
    assert_eq!(raw.name.as_deref(), Some("n"));
    assert_eq!((raw.count, raw.on), (None, None));
    assert_eq!(raw.items.len(), 2);
    assert_eq!(raw.items[0].size, 0);
    assert_eq!(raw.section, Section::default());
}

#[test]
fn a_misspelt_key_is_told_its_likely_field() {
    assert_eq!(de::distance("scopez", "scopes"), 1);
    assert_eq!(de::distance("Secret", "secret"), 0);
    assert_eq!(de::distance("", "abc"), 3);
    assert_eq!(de::distance("kitten", "sitting"), 3);
    let (_, found) = read("section: {Mode: slow}\nwholly_unrelated: 1\n");
    assert_eq!(
        found,
        [
            "1:11 section.Mode: unknown field `Mode`: did you mean `mode`?",
            "2:1 wholly_unrelated: unknown field `wholly_unrelated`, expected one of `name`, \
             `count`, `on`, `list`, `items`, `section`, `any`",
        ]
    );
}

#[test]
fn a_missing_field_is_required_where_its_struct_is_written() {
    let (raw, found) = read("name: n\nitems:\n  - {size: 1}\n");
    assert_eq!(found, ["3:5 items[0].id: required"]);
    assert_eq!(raw.map(|r| r.name), Some(Some("n".into())));
}

#[test]
fn a_string_field_takes_any_scalar_as_written() {
    for (written, read_as) in [
        ("0123", "0123"),
        ("1.50", "1.50"),
        ("True", "True"),
        ("0x1F", "0x1F"),
        ("1_000", "1_000"),
        ("yes", "yes"),
        ("'quoted'", "quoted"),
    ] {
        let (raw, found) = read(&format!("name: {written}\n"));
        assert!(found.is_empty(), "{written}: {found:?}");
        assert_eq!(raw.and_then(|r| r.name).as_deref(), Some(read_as));
    }
    // An alias takes the text of its anchor.
    let (raw, _) = read("list: [&a 0123, *a]\n");
    assert_eq!(
        raw.map(|r| r.list),
        Some(vec!["0123".into(), "0123".into()])
    );
}

#[test]
fn untyped_values_read_as_yaml_1_2_with_leading_zeros_and_underscores_as_text() {
    let (raw, found) = read("any: [yes, no, on, 0123, 1_000, 0o17, 0x1F, 1.5, .nan, ~, true]\n");
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(
        raw.and_then(|r| r.any),
        Some(serde_json::json!([
            "yes", "no", "on", "0123", "1_000", 15, 31, 1.5, ".nan", null, true
        ]))
    );
}

#[test]
fn an_empty_value_reads_as_an_empty_list_map_or_section() {
    let (raw, found) = read("list:\nitems:\nsection:\n");
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(raw, Some(Raw::default()));
}

#[test]
fn duplicate_keys_and_syntax_errors_end_the_read_at_their_place() {
    let (raw, found) = read("name: a\nsection: {mode: fast, mode: slow}\n");
    assert!(raw.is_none());
    assert_eq!(found.len(), 1);
    assert!(
        found[0] == "2:23 (document): duplicate mapping key `mode` is not allowed here",
        "{found:?}"
    );
    let (raw, found) = read("name: [a\ncount: 1\n");
    assert!(raw.is_none());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("2:6 (document): "), "{found:?}");
    let (_, found) = read("a: 1\n---\nb: 2\n");
    assert_eq!(
        found,
        ["3:1 (document): only single YAML document expected but multiple found"]
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_one_error() {
    let (raw, found) = read("- a\n- b\n");
    assert!(raw.is_none());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found,
        ["0:0 (document): invalid type: sequence, expected a mapping"]
    );
}

#[test]
fn positions_fall_back_to_the_nearest_written_field() {
    let mut p = Problems::new("f");
    let doc = Document::parse("a:\n  b: 1\nc: [x, {d: 2}]\n", &mut p).expect("parses");
    assert_eq!(doc.position("a.b"), Some((2, 3)));
    assert_eq!(doc.position("a.z"), Some((1, 1)));
    assert_eq!(doc.position("c[1].d"), Some((3, 9)));
    assert_eq!(doc.position("c[1]"), Some((3, 8)));
    assert_eq!(doc.position("zz"), None);
    assert_eq!(
        doc.to_json(),
        serde_json::json!({"a": {"b": 1}, "c": ["x", {"d": 2}]})
    );
}

#[test]
fn many_bad_values_end_after_a_bound() {
    let text: String = (0..200).map(|i| format!("k{i}: [x]\n")).collect();
    let mut p = Problems::new("f");
    let doc = Document::parse(&text, &mut p).expect("parses");
    // Every key is unknown: found in one read, not one read each.
    assert!(doc.read::<Raw>(&mut p).is_some());
    assert_eq!(p.report(|_| None, Missing::Error).errors.len(), 200);
    #[derive(Deserialize)]
    struct Counts(#[allow(dead_code)] std::collections::BTreeMap<String, u64>);
    let mut p = Problems::new("f");
    assert!(doc.read::<Counts>(&mut p).is_none());
    assert_eq!(
        p.report(|_| None, Missing::Error).errors.len(),
        MAX_UNREADABLE
    );
}

#[test]
fn nesting_is_bounded() {
    let within = format!("any: {}{}\n", "[".repeat(31), "]".repeat(31));
    let (raw, found) = read(&within);
    assert!(found.is_empty() && raw.is_some(), "{found:?}");
    for deep in [
        format!("any: {}", "[".repeat(100_000)),
        format!("any: {}", "{a: ".repeat(100_000)),
        format!("any:\n{}x", "- ".repeat(100_000)),
    ] {
        let (raw, found) = read(&deep);
        assert!(raw.is_none());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(" (document): "), "{found:?}");
    }
}
