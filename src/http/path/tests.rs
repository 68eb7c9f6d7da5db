use super::*;
use proptest::prelude::*;

const STRICT: PathRules = PathRules {
    escaped_slashes: EscapedSlashes::Reject,
    parameters: Parameters::Reject,
    trailing_dots: TrailingDots::Reject,
};

const LENIENT: PathRules = PathRules {
    escaped_slashes: EscapedSlashes::Unescape,
    parameters: Parameters::Strip,
    trailing_dots: TrailingDots::Keep,
};

const KEEP: PathRules = PathRules {
    escaped_slashes: EscapedSlashes::Keep,
    parameters: Parameters::Strip,
    trailing_dots: TrailingDots::Keep,
};

fn canon(p: &str, rules: &PathRules) -> Result<String, BadPath> {
    canonical(p, rules).map(Cow::into_owned)
}

#[test]
fn canonical_paths_are_borrowed() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/api/v1.2/items/42",
        "/.well-known/x",
        "/a..b",
        "/~u/x+y",
    ] {
        assert!(matches!(canonical(p, &STRICT), Ok(Cow::Borrowed(_))), "{p}");
    }
}

#[test]
fn spellings_of_one_path_become_one() {
    for (p, want) in [
        ("/%61dmin", "/admin"),
        ("/%61%64%6D%69%6e", "/admin"),
        ("//admin", "/admin"),
        ("///admin//users//", "/admin/users/"),
        ("/./admin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/x/%2e%2E/admin", "/admin"),
        ("/%2e/admin/.", "/admin/"),
        ("/admin/x/..", "/admin/"),
        ("/../../admin", "/admin"),
        ("/..", "/"),
        ("/a/..", "/"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/a\"b{c}|", "/a%22b%7Bc%7D%7C"),
        ("/%21%24%26%27%28%29%2A%2B%2C%3D%3A%40", "/!$&'()*+,=:@"),
        ("/%7e%2D%5f%2e1", "/~-_.1"),
        ("/100%25", "/100%25"),
        ("/%25zz", "/%25zz"),
        ("/ADMIN", "/ADMIN"),
    ] {
        assert_eq!(canon(p, &STRICT).as_deref(), Ok(want), "{p}");
    }
}

#[test]
fn ambiguous_spellings_are_refused_by_default() {
    for (p, why) in [
        ("", BadPath::NotAbsolute),
        ("*", BadPath::NotAbsolute),
        ("admin", BadPath::NotAbsolute),
        ("/a%2", BadPath::BadEscape),
        ("/a%zz", BadPath::BadEscape),
        ("/a%", BadPath::BadEscape),
        ("/a%00", BadPath::Control),
        ("/a%0a", BadPath::Control),
        ("/a%7F", BadPath::Control),
        ("/a\u{1}", BadPath::Control),
        ("/%c0%af", BadPath::NotUtf8),
        ("/%c0%ae%c0%ae/admin", BadPath::NotUtf8),
        ("/%e0%80%af", BadPath::NotUtf8),
        ("/%ff", BadPath::NotUtf8),
        ("/%c3/%a9", BadPath::NotUtf8),
        ("/%2561dmin", BadPath::DoubleEncoded),
        ("/%252e%252e/admin", BadPath::DoubleEncoded),
        ("/x%2fadmin", BadPath::EscapedSlash),
        ("/x%2F..%2Fadmin", BadPath::EscapedSlash),
        ("/x%5cadmin", BadPath::EscapedSlash),
        ("/x\\admin", BadPath::EscapedSlash),
        ("/admin;x=1", BadPath::Parameter),
        ("/..;/admin", BadPath::Parameter),
        ("/admin%3bx", BadPath::Parameter),
        ("/admin.", BadPath::TrailingDot),
        ("/admin./x", BadPath::TrailingDot),
        ("/admin%2e", BadPath::TrailingDot),
        ("/...", BadPath::TrailingDot),
        ("/admin%20", BadPath::TrailingDot),
        ("/admin%20/x", BadPath::TrailingDot),
        ("/admin.%20", BadPath::TrailingDot),
        // Checked even where a later `..` removes the segment.
        ("/a%00/../b", BadPath::Control),
    ] {
        assert_eq!(canon(p, &STRICT), Err(why), "{p:?}");
    }
}

#[test]
fn the_settings_change_what_the_refused_spellings_become() {
    for (p, want) in [
        ("/x%2fadmin", "/x/admin"),
        ("/x%2F..%2Fadmin", "/admin"),
        ("/x\\..\\admin", "/admin"),
        ("/x%5Cadmin", "/x/admin"),
        ("/admin;x=1", "/admin"),
        ("/admin;x=1/users;y", "/admin/users"),
        ("/public/..;/admin", "/admin"),
        ("/;x/admin", "/admin"),
        ("/admin%3Bx", "/admin%3Bx"),
        ("/admin.", "/admin."),
        ("/admin%20", "/admin%20"),
    ] {
        assert_eq!(canon(p, &LENIENT).as_deref(), Ok(want), "{p}");
    }
    for (p, want) in [
        ("/x%2fadmin", "/x%2Fadmin"),
        ("/x\\admin", "/x%5Cadmin"),
        ("/x%5c..%5cadmin", "/x%5C..%5Cadmin"),
    ] {
        assert_eq!(canon(p, &KEEP).as_deref(), Ok(want), "{p}");
    }
}

#[test]
fn under_matches_whole_segments() {
    assert!(under("/api", "/api", false));
    assert!(under("/api/x", "/api", false));
    assert!(under("/api/", "/api", false));
    assert!(!under("/apix", "/api", false));
    assert!(!under("/ap", "/api", false));
    assert!(!under("/API", "/api", false));
    assert!(under("/API/x", "/api", true));
    assert!(under("/anything", "", false));
    assert!(under("/", "", false));
}

#[test]
fn ignoring_case_covers_the_letters_java_and_dotnet_fold_to_ascii() {
    for p in [
        "/adm%C4%B1n",
        "/ADM%C4%B0N/x",
        "/%C5%BFecret",
        "/%E2%84%AAey",
    ] {
        let prefix = if p.contains("dm") || p.contains("DM") {
            "/admin"
        } else if p.contains("ecret") {
            "/secret"
        } else {
            "/key"
        };
        assert!(under(p, prefix, true), "{p}");
        assert!(
            !under(p, prefix, false),
            "{p}: case-sensitive routes compare bytes"
        );
    }
    assert!(
        !under("/adm%C4%B1nx", "/admin", true),
        "whole segments still"
    );
    assert!(under("/caf%C3%A9", "/caf%C3%A9", true));
    // The route's own prefix is canonical and may hold such a letter too: folded alike.
    assert!(under("/%C4%B1", "/%C4%B1", true));
    assert!(under("/I", "/%C4%B1", true));
}

// === properties ===

/// Pieces that make up hostile paths: every spelling trick of the catalogue, and plain text.
const PIECES: &[&str] = &[
    "/", "//", "\\", "a", "d", "m", "i", "n", "A", "D", "M", ".", "..", "%2e", "%2E", "%2f", "%2F",
    "%5c", "%5C", "%61", "%41", "%25", "%2561", "%00", "%c0%af", "%C3%A9", "é", ";", ";x=1", "%3b",
    "%3B", "%20", "~", "-", "%7e", "%", "%4", "+", "@", ":", "\"", "{", "|",
];

/// `word` with each letter as it is, upper-case, or percent-encoded in either hex case.
fn spelled(word: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..8, word.len()).prop_map(move |how| {
        word.bytes()
            .zip(how)
            .map(|(c, how)| match how {
                0..=4 => char::from(c).to_string(),
                5 => char::from(c.to_ascii_uppercase()).to_string(),
                6 => format!("%{c:02x}"),
                _ => format!("%{c:02X}"),
            })
            .collect()
    })
}

/// Paths made of spellings of the route words and of [`PIECES`], joined by every separator
/// trick, with every suffix trick: most name a route's prefix in some spelling.
fn hostile_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        spelled("admin"),
        spelled("users"),
        spelled("builds"),
        Just("caf%C3%A9".to_owned()),
        prop::sample::select(PIECES).prop_map(str::to_owned),
    ];
    let separator = prop::sample::select(vec![
        "/", "/", "/", "//", "/./", "/x/../", "/%2e%2e/", "/%2E/", "%2f", "%5C", "\\", ";x=1/",
        "/..;/", "/.",
    ]);
    let suffix = prop::sample::select(vec!["", "", "", "", ".", "%2e", ";", "%00", "é", "%3B"]);
    prop::collection::vec((separator, segment, suffix), 1..5).prop_map(|parts| {
        let path: String = parts
            .into_iter()
            .map(|(sep, seg, suf)| format!("{sep}{seg}{suf}"))
            .collect();
        if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        }
    })
}

fn any_rules() -> impl Strategy<Value = PathRules> {
    (
        prop::sample::select(vec![
            EscapedSlashes::Reject,
            EscapedSlashes::Keep,
            EscapedSlashes::Unescape,
        ]),
        prop::sample::select(vec![Parameters::Reject, Parameters::Strip]),
        prop::sample::select(vec![TrailingDots::Reject, TrailingDots::Keep]),
    )
        .prop_map(|(escaped_slashes, parameters, trailing_dots)| PathRules {
            escaped_slashes,
            parameters,
            trailing_dots,
        })
}

/// How an app resolves the path it is given, as the common frameworks do: servlet containers
/// cut `;` parameters from the raw segments; then every escape is decoded (Go's `r.URL.Path`,
/// WSGI's `PATH_INFO`), but `%2F`/`%5C` stay data for an app that routes on the raw path (the
/// `Keep` setting is only for those); `\` counts as `/` (IIS); empty segments and dot-segments
/// are resolved (Go's `path.Clean`). Returns the decoded segments.
fn app_view(path: &str, raw_slashes: bool) -> Vec<Vec<u8>> {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for raw in path.split('/') {
        let raw = raw.split(';').next().unwrap_or("").as_bytes();
        let mut decoded = vec![Vec::new()];
        let mut i = 0;
        while i < raw.len() {
            let (b, escaped) = if raw[i] == b'%' && i + 2 < raw.len() {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).expect("ascii");
                i += 3;
                (u8::from_str_radix(hex, 16).expect("hex"), true)
            } else {
                i += 1;
                (raw[i - 1], false)
            };
            let separator = b == b'\\' || b == b'/';
            if separator && !(escaped && raw_slashes) {
                decoded.push(Vec::new());
            } else if let Some(last) = decoded.last_mut() {
                last.push(b);
            }
        }
        for s in decoded {
            match s.as_slice() {
                b"" | b"." => {}
                b".." => {
                    segments.pop();
                }
                _ => segments.push(s),
            }
        }
    }
    segments
}

/// The routes of the property: nested prefixes, one matched without regard to case.
const ROUTES: &[(&str, bool)] = &[
    ("/admin/users", false),
    ("/admin", true),
    ("/builds", false),
    ("/caf%C3%A9", false),
    ("", false),
];

/// The first route the sidecar matches on the canonical path.
fn sidecar_route(canonical: &str) -> usize {
    ROUTES
        .iter()
        .position(|(prefix, ci)| under(canonical, prefix, *ci))
        .expect("the last route covers everything")
}

/// The first route that covers the resource the app resolves: the route prefixes compared on
/// decoded segments.
fn app_route(view: &[Vec<u8>]) -> usize {
    ROUTES
        .iter()
        .position(|(prefix, ci)| {
            let want = app_view(prefix, false);
            want.len() <= view.len()
                && want.iter().zip(view).all(|(w, v)| {
                    if *ci {
                        w.eq_ignore_ascii_case(v)
                    } else {
                        w == v
                    }
                })
        })
        .expect("the last route covers everything")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// For any path, the route chosen on its canonical form is the route of the resource the
    /// app serves when given that form; and the canonical form is its own canonical form.
    #[test]
    fn the_route_chosen_is_the_route_of_what_the_app_serves(p in hostile_path(), rules in any_rules()) {
        if let Ok(c) = canonical(&p, &rules) {
            let keep = rules.escaped_slashes == EscapedSlashes::Keep;
            prop_assert_eq!(sidecar_route(&c), app_route(&app_view(&c, keep)), "{} -> {}", p, c);
            prop_assert_eq!(canon(&c, &rules), Ok(c.clone().into_owned()), "idempotent");
            prop_assert!(c.starts_with('/') && !c.contains("//"));
        }
    }

    /// Canonical paths with nothing escaped take the one-scan way.
    #[test]
    fn plain_canonical_paths_take_the_fast_way(p in hostile_path()) {
        if let Ok(c) = canonical(&p, &STRICT)
            && !c.contains('%')
        {
            prop_assert!(matches!(canonical(&c, &STRICT), Ok(Cow::Borrowed(_))));
        }
    }

    /// Any string at all: no panic, and whatever comes out is canonical.
    #[test]
    fn any_string_is_refused_or_made_canonical(p in "\\PC{0,40}", rules in any_rules()) {
        if let Ok(c) = canonical(&p, &rules) {
            prop_assert_eq!(canon(&c, &rules), Ok(c.clone().into_owned()));
        }
    }
}
