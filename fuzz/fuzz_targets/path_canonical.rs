//! Any request path is either refused or made canonical under every combination of the path
//! rules, never a panic; and a canonical path is its own canonical form, with nothing an app
//! could resolve further: its decoded segments hold no empty, `.` or `..` segment, no control
//! character, only UTF-8, and a `/`, `\` or `;` only where the rules keep them as data.
#![no_main]

use baton::http::path::{EscapedSlashes, Parameters, PathRules, TrailingDots, canonical};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    for escaped_slashes in [EscapedSlashes::Reject, EscapedSlashes::Keep, EscapedSlashes::Unescape] {
        for parameters in [Parameters::Reject, Parameters::Strip] {
            for trailing_dots in [TrailingDots::Reject, TrailingDots::Keep] {
                let rules = PathRules {
                    escaped_slashes,
                    parameters,
                    trailing_dots,
                };
                if let Ok(c) = canonical(&path, &rules) {
                    check(&c, &rules);
                }
            }
        }
    }
});

fn check(c: &str, rules: &PathRules) {
    assert_eq!(
        canonical(c, rules).as_deref(),
        Ok(c),
        "canonical form of a canonical path"
    );
    let rest = c.strip_prefix('/').expect("starts with /");
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!s.is_empty() || last, "no empty segment in {c}");
        let decoded = decode(s);
        let text = std::str::from_utf8(&decoded).expect("decoded segments are UTF-8");
        assert!(text != "." && text != "..", "no dot-segment in {c}");
        assert!(
            !text.bytes().any(|b| b < 0x20 || b == 0x7f),
            "no control character in {c}"
        );
        if rules.escaped_slashes != EscapedSlashes::Keep {
            assert!(!text.contains(['/', '\\']), "no slash inside a segment of {c}");
        }
        if rules.parameters == Parameters::Reject {
            assert!(!text.contains(';'), "no ; in {c}");
        }
        if rules.trailing_dots == TrailingDots::Reject {
            assert!(!text.ends_with('.'), "no trailing dot in {c}");
        }
    }
}

/// Every `%XX` of a canonical segment decoded (a canonical path holds only well-formed ones).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}
