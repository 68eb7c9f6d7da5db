//! The `jwks:` and `limits:` sections of `sidecar.yaml`: how keys are fetched and cached, and the
//! listeners' bounds and timeouts. Every field is optional; an absent one keeps its default.

use super::findings::Problems;
use super::values::positive_duration;
use crate::jwt::jwks::JwksSettings;
use crate::server::Limits;
use serde::Deserialize;

/// `jwks:` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwks {
    refresh_min: Option<String>,
    refresh_max: Option<String>,
    retry: Option<String>,
    stale_window: Option<String>,
    fetch_timeout: Option<String>,
    max_bytes: Option<usize>,
    kid_cooldown: Option<String>,
}

/// `limits:` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    shutdown_grace: Option<String>,
}

/// Validates `jwks:`: positive durations, the refresh window inside the stale window.
/// `at` is where the section is (`jwks`, `issuers[1].jwks`).
pub(super) fn jwks(p: &mut Problems, at: &str, raw: RawJwks) -> JwksSettings {
    let d = JwksSettings::default();
    let mut duration = |field: &str, raw: Option<String>, default| {
        positive_duration(p, &format!("{at}.{field}"), raw.as_deref(), default)
    };
    let s = JwksSettings {
        refresh_min: duration("refresh_min", raw.refresh_min, d.refresh_min),
        refresh_max: duration("refresh_max", raw.refresh_max, d.refresh_max),
        retry: duration("retry", raw.retry, d.retry),
        stale_window: duration("stale_window", raw.stale_window, d.stale_window),
        fetch_timeout: duration("fetch_timeout", raw.fetch_timeout, d.fetch_timeout),
        kid_cooldown: duration("kid_cooldown", raw.kid_cooldown, d.kid_cooldown),
        max_bytes: raw.max_bytes.unwrap_or(d.max_bytes),
    };
    if s.refresh_min > s.refresh_max {
        p.push(format!("{at}.refresh_min"), "must not exceed refresh_max");
    }
    if s.stale_window < s.refresh_max {
        p.push(format!("{at}.stale_window"), "must be at least refresh_max");
    }
    if s.max_bytes < 1024 {
        p.push(format!("{at}.max_bytes"), "must be at least 1024");
    }
    s
}

/// Validates `limits:`: positive timeouts, at least one connection, room for bearer tokens.
pub(super) fn limits(p: &mut Problems, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let mut duration = |field: &str, raw: Option<String>, default| {
        positive_duration(p, &format!("limits.{field}"), raw.as_deref(), default)
    };
    let l = Limits {
        header_read_timeout: duration(
            "header_read_timeout",
            raw.header_read_timeout,
            d.header_read_timeout,
        ),
        request_timeout: duration("request_timeout", raw.request_timeout, d.request_timeout),
        idle_timeout: duration("idle_timeout", raw.idle_timeout, d.idle_timeout),
        shutdown_grace: duration("shutdown_grace", raw.shutdown_grace, d.shutdown_grace),
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_header_bytes: raw.max_header_bytes.unwrap_or(d.max_header_bytes),
    };
    if l.max_connections == 0 {
        p.push("limits.max_connections", "must be at least 1");
    }
    if l.max_header_bytes < 8192 {
        p.push(
            "limits.max_header_bytes",
            "must be at least 8192 (bearer tokens are large)",
        );
    }
    l
}
