//! The values every section of `sidecar.yaml` shares: durations (`500ms`, `10s`, `5m`, `1h`),
//! socket addresses (`127.0.0.1:8080`), names used as metric labels, signature algorithms, and
//! the files and environment variables secrets come from. Each records its problem under the field's path; a file or variable this machine lacks
//! is recorded as missing (see [`Problems::missing`]), any other failure as an error.

use super::findings::Problems;
use crate::jwt::Algorithm;
use http::HeaderName;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// `500ms`, `10s`, `5m` or `1h`: a whole number and a unit; `None` for anything else.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// The duration written at `field`, `default` when absent; zero allowed.
pub fn duration(p: &mut Problems, field: &str, raw: Option<&str>, default: Duration) -> Duration {
    let Some(raw) = raw else { return default };
    parse_duration(raw).unwrap_or_else(|| {
        p.push(field, "must be a duration like 0s, 500ms, 10s, 5m or 1h");
        default
    })
}

/// The duration written at `field`, `default` when absent; it must be longer than zero.
pub fn positive_duration(
    p: &mut Problems,
    field: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    let Some(raw) = raw else { return default };
    match parse_duration(raw) {
        Some(d) if !d.is_zero() => d,
        _ => {
            p.push(
                field,
                "must be a positive duration like 500ms, 10s, 5m or 1h",
            );
            default
        }
    }
}

/// The `ip:port` written at `field`; a placeholder after recording the problem.
pub fn addr(p: &mut Problems, field: &str, value: &str) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        p.push(field, "must be an IP address and port, e.g. 127.0.0.1:8080");
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// The bytes of the file at `path`, named by `field`.
pub fn read_file(p: &mut Problems, field: &str, path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| {
            let reason = format!("read {}: {e}", path.display());
            match e.kind() {
                std::io::ErrorKind::NotFound => p.missing(field, reason),
                _ => p.push(field, reason),
            }
        })
        .ok()
}

/// The text of the file at `path`, named by `field`.
pub fn read_text(p: &mut Problems, field: &str, path: &Path) -> Option<String> {
    let bytes = read_file(p, field, path)?;
    String::from_utf8(bytes)
        .map_err(|_| p.push(field, format!("{} is not UTF-8 text", path.display())))
        .ok()
}

/// The value of the environment variable `var`, named by `field`; unset or empty is missing.
pub fn read_env(p: &mut Problems, field: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(s) if !s.is_empty() => Some(s),
        _ => {
            p.missing(field, format!("environment variable {var} is not set"));
            None
        }
    }
}

/// A name fit for a metric label: letters, digits, `-`, `_`, `.`.
pub fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Header names an identity header baton writes (`claims_header`, `peer_header`,
/// `txn_token.claims_header`) may not take: credentials, framing and hop-by-hop headers, the
/// ones baton reads or sets otherwise, and the ones browsers and gRPC give a meaning of their
/// own. Writing the identity there would break the request or hand the app a value it reads as
/// something else.
const NOT_AN_IDENTITY_HEADER: [&str; 23] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "te",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "expect",
    "accept",
    "origin",
    "referer",
    "x-request-id",
    "traceparent",
    "tracestate",
    crate::dpop::HEADER,
    crate::txn::HEADER,
];

/// Prefixes of names with a meaning of their own: the browser's `Sec-Fetch-*` and the like, and
/// gRPC's metadata (`grpc-timeout`, `grpc-encoding`, …).
const NOT_AN_IDENTITY_PREFIX: [&str; 2] = ["sec-", "grpc-"];

/// The header name at `field` for an identity header baton writes: a valid name, none of
/// [`NOT_AN_IDENTITY_HEADER`] or [`NOT_AN_IDENTITY_PREFIX`] and none of `taken` (the other
/// identity headers), each compared with `_` read as `-` (CGI-style servers read the two as
/// one); otherwise the problem is recorded and `fallback` stands in.
pub fn identity_header(
    p: &mut Problems,
    field: &str,
    name: &str,
    taken: &[&HeaderName],
    fallback: &'static str,
) -> HeaderName {
    let fold = |n: &str| n.replace('_', "-");
    if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
        let folded = fold(h.as_str());
        let reserved = NOT_AN_IDENTITY_HEADER.contains(&folded.as_str())
            || NOT_AN_IDENTITY_PREFIX.iter().any(|p| folded.starts_with(p));
        let clash = taken.iter().any(|t| fold(t.as_str()) == folded);
        if !reserved && !clash {
            return h;
        }
    }
    let mut others: Vec<&str> = taken.iter().map(|h| h.as_str()).collect();
    others.extend([
        "authorization",
        "cookie",
        "a framing, hop-by-hop, sec- or grpc- header",
    ]);
    p.push(
        field,
        format!(
            "must be a valid header name of its own, not {}",
            others.join(", ")
        ),
    );
    HeaderName::from_static(fallback)
}

/// The algorithms listed at `field`, each an asymmetric JWS algorithm.
pub fn algorithms(p: &mut Problems, field: &str, names: &[String]) -> Vec<Algorithm> {
    if names.is_empty() {
        p.push(field, "must list at least one of ES256, RS256");
    }
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match name.as_str() {
            "ES256" => out.push(Algorithm::ES256),
            "ES384" => out.push(Algorithm::ES384),
            "RS256" => out.push(Algorithm::RS256),
            "RS384" => out.push(Algorithm::RS384),
            "RS512" => out.push(Algorithm::RS512),
            "PS256" => out.push(Algorithm::PS256),
            "EdDSA" => out.push(Algorithm::EdDSA),
            _ => p.push(
                format!("{field}[{i}]"),
                "must be an asymmetric JWS algorithm (ES256, RS256, ...); none and HS* are never accepted",
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 days"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration(&format!("{}h", u64::MAX)), None);
    }

    #[test]
    fn zero_is_a_duration_but_not_a_positive_one() {
        let mut p = Problems::new("f");
        let d = Duration::from_secs(7);
        assert_eq!(duration(&mut p, "a", Some("0s"), d), Duration::ZERO);
        assert_eq!(duration(&mut p, "b", None, d), d);
        assert!(p.is_clean());
        assert_eq!(positive_duration(&mut p, "c", Some("0s"), d), d);
        assert_eq!(positive_duration(&mut p, "d", Some("soon"), d), d);
        assert_eq!(addr(&mut p, "e", "localhost").port(), 0);
        let fields: Vec<String> = p
            .finish(())
            .expect_err("three problems")
            .0
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["c", "d", "e"]);
    }

    #[test]
    fn an_identity_header_is_a_name_of_its_own() {
        let claims = HeaderName::from_static("x-baton-claims");
        let mut p = Problems::new("f");
        let ok = identity_header(&mut p, "h", "X-Peer-Id", &[&claims], "x-baton-peer");
        assert_eq!(ok, "x-peer-id");
        for bad in [
            "te",
            "Connection",
            "authorization",
            "cookie",
            "host",
            "content-length",
            "transfer-encoding",
            "dpop",
            "txn-token",
            "traceparent",
            "x-baton-claims",
            "x_baton_claims",
            "content_length",
            "grpc-timeout",
            "sec-fetch-site",
            "origin",
            "bad header",
            "",
        ] {
            let mut p = Problems::new("f");
            let got = identity_header(&mut p, "h", bad, &[&claims], "x-baton-peer");
            assert_eq!(got, "x-baton-peer", "{bad}");
            let report = p.report(|_| None, crate::config::findings::Missing::Warning);
            assert_eq!(report.errors.len(), 1, "{bad}");
            assert!(report.errors[0].reason.contains("x-baton-claims"), "{bad}");
        }
    }

    #[test]
    fn a_file_that_is_not_here_is_missing_and_one_that_cannot_be_read_is_an_error() {
        use crate::config::findings::Missing;
        let mut p = Problems::new("f");
        assert!(read_file(&mut p, "a", Path::new("/nonexistent/baton/key")).is_none());
        assert!(read_text(&mut p, "b", Path::new("/")).is_none());
        assert!(read_env(&mut p, "c", "BATON_TEST_UNSET_VARIABLE_0").is_none());
        let report = p.report(|_| None, Missing::Warning);
        let fields = |list: &[crate::config::Finding]| -> Vec<String> {
            list.iter().map(|f| f.field.clone()).collect()
        };
        assert_eq!(fields(&report.errors), ["b"]);
        assert_eq!(fields(&report.warnings), ["a", "c"]);
    }
}
