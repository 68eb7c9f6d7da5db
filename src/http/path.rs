//! Request paths made canonical: one spelling per resource, decided before anything looks at
//! the path, so a route rule cannot be walked around with `/%61dmin`, `//admin` or
//! `/x/../admin`, and the app is given exactly the path the route matched.
//!
//! The canonical form (RFC 3986 §6.2.2, plus what apps and servers are known to do on their
//! own):
//! - every percent-escape is decoded and the bytes re-encoded one way: the characters a path
//!   may carry as they are (unreserved, sub-delims but `;`, `:`, `@`) raw, every other byte as
//!   `%XX` with upper-case hex. `%61` and `a` are one spelling, `%c3%a9` and `%C3%A9` another;
//! - empty segments are dropped (`//admin` is `/admin`) and dot-segments resolved after decoding
//!   (`/x/%2e%2e/admin` is `/admin`, RFC 3986 §5.2.4); a trailing slash is kept;
//! - refused outright, whatever the settings: a path not starting with `/`, a malformed escape,
//!   control characters and NUL (raw or escaped), escapes that do not decode to UTF-8 (overlong
//!   forms such as `%C0%AF` included), and double encoding (`%2561`: an app that decodes twice
//!   would see `a`);
//! - by [`PathRules`]: escaped slashes and backslashes, `;` path parameters, and segments that
//!   end in a dot.
//!
//! Case is not changed: a route decides whether it matches without regard to case.
//! A path that is already canonical (nearly every request) costs one scan and no allocation.

use serde::Deserialize;
use std::borrow::Cow;

/// What to do with `%2F` and `%5C` (an encoded `/` or `\`) and with a raw `\`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// Refuse the request (400): an app that decodes `%2F` into a separator would otherwise
    /// serve `/admin/x` for a path the routes saw as one segment `admin%2Fx`.
    #[default]
    Reject,
    /// Keep them as data inside the segment (`%2F`, `%5C`; a raw `\` becomes `%5C`). Only for
    /// apps that route on the raw path and never turn `%2F` into a separator.
    Keep,
    /// Turn them into `/` separators before routing, so routes and app agree on the segments.
    Unescape,
}

/// What to do with `;` path parameters (`/admin;jsessionid=1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parameters {
    /// Refuse a `;` anywhere in the path, raw or as `%3B` (400). Servlet containers and Spring
    /// cut a segment at `;` (`/admin;x` is `/admin` there, `/..;/` is `/../`) while most other
    /// servers keep it: no single reading is safe for every app, and few apps need parameters.
    #[default]
    Reject,
    /// Cut each segment at its first raw `;` and forward the path without the parameters, so
    /// every app reads what the routes read. `%3B` stays as data.
    Strip,
}

/// What to do with a segment ending in a dot or a space (`/admin.`, `/admin%20`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrailingDots {
    /// Refuse it (400): Windows file systems, IIS and ASP.NET drop trailing dots and spaces, and
    /// suffix matching (older Spring) serves `/admin.` and `/admin.json` as `/admin`.
    #[default]
    Reject,
    /// Keep it: `/admin.` and `/admin%20` are other resources than `/admin`.
    Keep,
}

/// The inbound listener's path rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathRules {
    /// `%2F`, `%5C` and a raw `\`.
    pub escaped_slashes: EscapedSlashes,
    /// `;` path parameters.
    pub parameters: Parameters,
    /// Segments ending in a dot or a space.
    pub trailing_dots: TrailingDots,
}

/// Why a path has no canonical form; the request is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Not origin-form (`*`, an authority, an empty path).
    #[error("the path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// A control character or NUL, raw or escaped.
    #[error("control character")]
    Control,
    /// Escapes that do not decode to UTF-8, overlong forms included.
    #[error("escaped bytes that are not UTF-8")]
    NotUtf8,
    /// `%25` followed by two hex digits: decoded twice, it is another character.
    #[error("double percent-encoding")]
    DoubleEncoded,
    /// `%2F`, `%5C` or a raw `\` under [`EscapedSlashes::Reject`].
    #[error("encoded slash or backslash")]
    EscapedSlash,
    /// A `;` under [`Parameters::Reject`].
    #[error("path parameter (;)")]
    Parameter,
    /// A segment ending in a dot or a space under [`TrailingDots::Reject`].
    #[error("segment ending in a dot or a space")]
    TrailingDot,
}

/// Bytes a canonical segment carries as they are: RFC 3986 unreserved, sub-delims but `;`,
/// `:` and `@`. Every other byte is `%XX`.
const RAW: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~'
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
            | b':' | b'@');
        b += 1;
    }
    t
};

/// [`RAW`] plus the separator: what the one-scan check accepts.
const PLAIN: [bool; 256] = {
    let mut t = RAW;
    t[b'/' as usize] = true;
    t
};

/// The canonical form of `path` (the path of an origin-form request target, no query), or why
/// it has none. Borrowed when `path` is canonical already.
pub fn canonical<'a>(path: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, BadPath> {
    if is_canonical(path.as_bytes()) {
        Ok(Cow::Borrowed(path))
    } else {
        rewrite(path.as_bytes(), rules).map(Cow::Owned)
    }
}

/// Whether `p` is canonical under any rules, in one scan: it starts with `/`, holds only
/// [`PLAIN`] bytes, no `//`, and no segment that ends in a dot (which covers `.` and `..`).
/// Anything else goes the long way, which may still find it canonical.
fn is_canonical(p: &[u8]) -> bool {
    let [b'/', rest @ ..] = p else {
        return false;
    };
    let mut ok = true;
    let mut prev = b'/';
    for &b in rest {
        // `&` and `|`, not `&&` and `||`: no branch per byte (about 10 instructions a byte).
        ok &= PLAIN[usize::from(b)] & !((b == b'/') & ((prev == b'/') | (prev == b'.')));
        prev = b;
    }
    ok & (prev != b'.')
}

/// Decodes `raw` into segments, checks each, resolves dot-segments and encodes the result.
fn rewrite(raw: &[u8], rules: &PathRules) -> Result<String, BadPath> {
    let [b'/', rest @ ..] = raw else {
        return Err(BadPath::NotAbsolute);
    };
    let segments = decode(rest, rules)?;
    let mut kept: Vec<&[u8]> = Vec::with_capacity(segments.len());
    // Whether the path ends with a separator: an empty last segment, or a dot-segment.
    let mut trailing = false;
    for s in &segments {
        check(s, rules)?;
        trailing = true;
        match s.as_slice() {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            _ => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &kept {
        out.push('/');
        encode(s, &mut out);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Splits `rest` (the path after its first `/`) into decoded segments. A separator is a raw
/// `/`, and under [`EscapedSlashes::Unescape`] also `\`, `%2F` and `%5C`; under `Keep` those
/// stay in the segment as data. Raw `;` parameters are refused or cut off here, before decoding,
/// as servlet containers cut them.
fn decode(rest: &[u8], rules: &PathRules) -> Result<Vec<Vec<u8>>, BadPath> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    let mut in_parameter = false;
    let mut i = 0;
    while i < rest.len() {
        let b = rest[i];
        i += 1;
        if b == b'/' {
            segments.push(std::mem::take(&mut current));
            in_parameter = false;
            continue;
        }
        if in_parameter {
            continue;
        }
        let (byte, escaped) = match b {
            b'%' => {
                let hex = |at: usize| rest.get(at).and_then(|&h| (h as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i), hex(i + 1)) else {
                    return Err(BadPath::BadEscape);
                };
                i += 2;
                // Two hex digits make a byte.
                ((hi * 16 + lo) as u8, true)
            }
            b';' => match rules.parameters {
                Parameters::Reject => return Err(BadPath::Parameter),
                Parameters::Strip => {
                    in_parameter = true;
                    continue;
                }
            },
            _ => (b, false),
        };
        let slash = byte == b'\\' || (escaped && byte == b'/');
        match rules.escaped_slashes {
            _ if !slash => current.push(byte),
            EscapedSlashes::Reject => return Err(BadPath::EscapedSlash),
            EscapedSlashes::Keep => current.push(byte),
            EscapedSlashes::Unescape => segments.push(std::mem::take(&mut current)),
        }
    }
    segments.push(current);
    Ok(segments)
}

/// The checks on one decoded segment.
fn check(s: &[u8], rules: &PathRules) -> Result<(), BadPath> {
    if s.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(BadPath::Control);
    }
    if std::str::from_utf8(s).is_err() {
        return Err(BadPath::NotUtf8);
    }
    let double = s
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if double {
        return Err(BadPath::DoubleEncoded);
    }
    if rules.parameters == Parameters::Reject && s.contains(&b';') {
        return Err(BadPath::Parameter);
    }
    let dot_segment = s == b"." || s == b"..";
    let trailing = s.ends_with(b".") || s.ends_with(b" ");
    if rules.trailing_dots == TrailingDots::Reject && !dot_segment && trailing {
        return Err(BadPath::TrailingDot);
    }
    Ok(())
}

/// Appends the canonical spelling of a decoded segment.
fn encode(s: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if RAW[usize::from(b)] {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Whether `path` is `prefix` or lies under it on whole segments (`/api` covers `/api` and
/// `/api/x`, not `/apix`); with `ignore_case`, ASCII letters compared without regard to case and
/// the [`LOOKALIKES`] taken for the letters they fold to.
/// An empty prefix (the route `/`) covers every path.
pub fn under(path: &str, prefix: &str, ignore_case: bool) -> bool {
    if ignore_case && (path.contains('%') || prefix.contains('%')) {
        return under_folded(&fold_lookalikes(path), &fold_lookalikes(prefix));
    }
    let (path, prefix) = (path.as_bytes(), prefix.as_bytes());
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if ignore_case {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && matches!(path.get(prefix.len()), None | Some(b'/'))
}

/// [`under`] without regard to ASCII case, `path` and `prefix` already folded.
fn under_folded(path: &str, prefix: &str) -> bool {
    let (path, prefix) = (path.as_bytes(), prefix.as_bytes());
    path.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && matches!(path.get(prefix.len()), None | Some(b'/'))
}

/// The letters outside ASCII that some runtime ignoring case takes for ASCII ones, as a
/// canonical path spells them, and the letter they are taken for: `ı` (U+0131) and `İ` (U+0130)
/// for `i`, `ſ` (U+017F) for `s`, the Kelvin sign (U+212A) for `k` (Java's `equalsIgnoreCase`
/// folds all four; .NET's ordinal ignore-case and Go's `EqualFold` some of them).
const LOOKALIKES: [(&str, &str); 4] = [
    ("%C4%B0", "i"),
    ("%C4%B1", "i"),
    ("%C5%BF", "s"),
    ("%E2%84%AA", "k"),
];

/// `path` with each of [`LOOKALIKES`] replaced by its ASCII letter, so that a route that ignores
/// case covers what such an app would serve under it (`/adm%C4%B1n` under `/admin`).
fn fold_lookalikes(path: &str) -> std::borrow::Cow<'_, str> {
    let mut folded = std::borrow::Cow::Borrowed(path);
    for (spelled, letter) in LOOKALIKES {
        if folded.contains(spelled) {
            folded = std::borrow::Cow::Owned(folded.replace(spelled, letter));
        }
    }
    folded
}

#[cfg(test)]
mod tests;
