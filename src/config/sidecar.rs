//! The sidecar's settings in `sidecar.yaml`: raw serde types (`deny_unknown_fields`) validated
//! into a typed [`Config`]; every problem is collected with its field path.

use super::{ConfigError, ConfigErrors, Problems, login, outbound, routes};
use crate::http::path::{EscapedSlashes, Parameters, PathRules, TrailingDots};
use crate::jwt::Algorithm;
pub use crate::jwt::jwks::JwksSettings;
use crate::server::Limits;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Whether the inbound listener blocks requests that fail verification or route rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse with RFC 6750 / RFC 9470 errors (the default).
    #[default]
    Enforce,
    /// Record the verdict (metrics and log) but forward anyway, without the claims header when
    /// verification failed: for rolling baton out in front of a live service.
    Observe,
}

/// Where each listener binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    /// Client traffic for the app (`0.0.0.0:15006`).
    pub inbound: SocketAddr,
    /// The app's outgoing calls (`127.0.0.1:15001`).
    pub outbound: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`, `/config` (`0.0.0.0:15020`: kubelet probes and
    /// metric scrapers reach the pod's address; `/config` answers loopback clients only unless
    /// [`AdminSettings::expose_config`]).
    pub admin: SocketAddr,
}

/// How the inbound listener reads requests before any route sees them (`inbound:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundSettings {
    /// How paths are made canonical ([`crate::http::path`]).
    pub paths: PathRules,
    /// Drop every request header whose name holds `_`: CGI-style servers (WSGI, Rack) read
    /// `x_a` and `x-a` as one variable, so any header may have a twin. Off by default; headers
    /// baton owns lose their twins either way.
    pub drop_underscore_headers: bool,
}

/// The admin listener's settings (`admin:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Serve `/config` (routes, public paths, hosts) to any client, not only to loopback ones.
    pub expose_config: bool,
}

/// The validated `sidecar.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub file: String,
    /// The IdP's issuer identifier; `iss` must equal it exactly (RFC 8725 §3.8).
    pub issuer: String,
    /// This service's name; `aud` must contain it (RFC 8725 §3.9). Also the challenge realm.
    pub audience: String,
    /// Enforce or observe.
    pub mode: Mode,
    /// Bind addresses.
    pub listeners: Listeners,
    /// Inbound path canonicalisation and header rules.
    pub inbound: InboundSettings,
    /// Admin listener settings.
    pub admin: AdminSettings,
    /// The app this sidecar fronts, on loopback.
    pub app: SocketAddr,
    /// Header carrying the verified claims to the app (base64url JSON).
    pub claims_header: HeaderName,
    /// Accepted signature algorithms (RFC 8725 §3.1).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds (≤ 60).
    pub leeway: u64,
    /// Discovery and JWKS settings.
    pub jwks: JwksSettings,
    /// Listener limits and timeouts.
    pub limits: Limits,
    /// Inbound routes, first match wins.
    pub routes: Vec<routes::Route>,
    /// The outbound section.
    pub outbound: outbound::Outbound,
    /// Browser sign-in at the edge, when configured.
    pub login: Option<login::Login>,
    /// The file as parsed, with secret-looking values replaced by `[redacted]`, for `/config`.
    pub redacted: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    audience: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    listeners: RawListeners,
    #[serde(default)]
    inbound: RawInbound,
    #[serde(default)]
    admin: RawAdmin,
    app: String,
    #[serde(default = "default_claims_header")]
    claims_header: String,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway: u64,
    #[serde(default)]
    jwks: RawJwks,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    routes: Vec<routes::RawRoute>,
    #[serde(default)]
    outbound: outbound::RawOutbound,
    login: Option<login::RawLogin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawListeners {
    inbound: String,
    outbound: String,
    admin: String,
}

impl Default for RawListeners {
    fn default() -> Self {
        Self {
            inbound: "0.0.0.0:15006".into(),
            outbound: "127.0.0.1:15001".into(),
            admin: "0.0.0.0:15020".into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawInbound {
    escaped_slashes: EscapedSlashes,
    path_parameters: Parameters,
    trailing_dots: TrailingDots,
    drop_underscore_headers: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    expose_config: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    refresh_min: Option<String>,
    refresh_max: Option<String>,
    retry: Option<String>,
    stale_window: Option<String>,
    fetch_timeout: Option<String>,
    max_bytes: Option<usize>,
    kid_cooldown: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    shutdown_grace: Option<String>,
}

fn default_claims_header() -> String {
    "x-baton-claims".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["ES256".into(), "RS256".into()]
}

fn default_leeway() -> u64 {
    30
}

impl Config {
    /// Parses and validates `sidecar.yaml` text; `file` names it in every error.
    ///
    /// Every problem is reported, each as `file: field: reason`.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| Problems::yaml(file, &e))?;
        let raw: RawConfig =
            serde_yaml::from_value(value.clone()).map_err(|e| Problems::yaml(file, &e))?;
        let redacted = serde_json::to_value(&value)
            .map(redact)
            .unwrap_or(serde_json::Value::Null);
        let mut p = Problems::new(file);
        let issuer = match url::Url::parse(&raw.issuer) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                if u.query().is_some() || u.fragment().is_some() {
                    p.push("issuer", "must have no query or fragment (RFC 8414 §2)");
                }
                raw.issuer.clone()
            }
            _ => {
                p.push(
                    "issuer",
                    "must be an absolute http(s) URL, e.g. https://idp.example",
                );
                raw.issuer.clone()
            }
        };
        if raw.audience.trim().is_empty() || raw.audience.contains('"') {
            p.push("audience", "must be this service's name, e.g. service-b");
        }
        let listeners = Listeners {
            inbound: addr(&mut p, "listeners.inbound", &raw.listeners.inbound),
            outbound: addr(&mut p, "listeners.outbound", &raw.listeners.outbound),
            admin: addr(&mut p, "listeners.admin", &raw.listeners.admin),
        };
        let app = addr(&mut p, "app", &raw.app);
        let claims_header = match HeaderName::from_bytes(raw.claims_header.as_bytes()) {
            Ok(h) if h != http::header::AUTHORIZATION => h,
            _ => {
                p.push(
                    "claims_header",
                    "must be a valid header name other than authorization",
                );
                HeaderName::from_static("x-baton-claims")
            }
        };
        let algorithms = algorithms(&mut p, &raw.algorithms);
        if raw.leeway > crate::jwt::MAX_LEEWAY {
            p.push("leeway", "must be at most 60 seconds");
        }
        let jwks = jwks_settings(&mut p, raw.jwks);
        let limits = limits(&mut p, raw.limits);
        let routes = routes::validate(raw.routes, &mut p);
        let outbound = outbound::validate(raw.outbound, &mut p);
        outbound::check_issuer(&outbound, &issuer, &mut p);
        let login = raw.login.map(|l| login::validate(l, &mut p));
        if let Some(i) = routes.iter().position(|r| r.browser_login)
            && login.is_none()
        {
            p.push(
                format!("routes[{i}].login"),
                "needs a top-level login: section (at least login.external_url)",
            );
        }
        if login.is_some() && outbound.client.client_id != raw.audience {
            p.push(
                "login",
                "signs users in as outbound.client, whose client_id must equal audience \
                 (the IdP addresses the user's access token to that client)",
            );
        }
        p.finish(Config {
            file: file.into(),
            issuer,
            audience: raw.audience,
            mode: raw.mode,
            listeners,
            inbound: InboundSettings {
                paths: PathRules {
                    escaped_slashes: raw.inbound.escaped_slashes,
                    parameters: raw.inbound.path_parameters,
                    trailing_dots: raw.inbound.trailing_dots,
                },
                drop_underscore_headers: raw.inbound.drop_underscore_headers,
            },
            admin: AdminSettings {
                expose_config: raw.admin.expose_config,
            },
            app,
            claims_header,
            algorithms,
            leeway: raw.leeway,
            jwks,
            limits,
            routes,
            outbound,
            login,
            redacted,
        })
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_yaml(&text, &file),
            Err(e) => Err(ConfigErrors(vec![ConfigError {
                file,
                field: "(file)".into(),
                reason: format!("read: {e}"),
            }])),
        }
    }
}

fn addr(p: &mut Problems, field: &str, value: &str) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        p.push(field, "must be an IP address and port, e.g. 127.0.0.1:8080");
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn algorithms(p: &mut Problems, names: &[String]) -> Vec<Algorithm> {
    if names.is_empty() {
        p.push("algorithms", "must list at least one of ES256, RS256");
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
                format!("algorithms[{i}]"),
                "must be an asymmetric JWS algorithm (ES256, RS256, ...); none and HS* are never accepted",
            ),
        }
    }
    out
}

fn jwks_settings(p: &mut Problems, raw: RawJwks) -> JwksSettings {
    let d = JwksSettings::default();
    let s = JwksSettings {
        refresh_min: duration(p, "jwks.refresh_min", raw.refresh_min, d.refresh_min),
        refresh_max: duration(p, "jwks.refresh_max", raw.refresh_max, d.refresh_max),
        retry: duration(p, "jwks.retry", raw.retry, d.retry),
        stale_window: duration(p, "jwks.stale_window", raw.stale_window, d.stale_window),
        fetch_timeout: duration(p, "jwks.fetch_timeout", raw.fetch_timeout, d.fetch_timeout),
        max_bytes: raw.max_bytes.unwrap_or(d.max_bytes),
        kid_cooldown: duration(p, "jwks.kid_cooldown", raw.kid_cooldown, d.kid_cooldown),
    };
    if s.refresh_min > s.refresh_max {
        p.push("jwks.refresh_min", "must not exceed jwks.refresh_max");
    }
    if s.stale_window < s.refresh_max {
        p.push("jwks.stale_window", "must be at least jwks.refresh_max");
    }
    if s.max_bytes < 1024 {
        p.push("jwks.max_bytes", "must be at least 1024");
    }
    s
}

fn limits(p: &mut Problems, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let l = Limits {
        header_read_timeout: duration(
            p,
            "limits.header_read_timeout",
            raw.header_read_timeout,
            d.header_read_timeout,
        ),
        request_timeout: duration(
            p,
            "limits.request_timeout",
            raw.request_timeout,
            d.request_timeout,
        ),
        idle_timeout: duration(p, "limits.idle_timeout", raw.idle_timeout, d.idle_timeout),
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_header_bytes: raw.max_header_bytes.unwrap_or(d.max_header_bytes),
        shutdown_grace: duration(
            p,
            "limits.shutdown_grace",
            raw.shutdown_grace,
            d.shutdown_grace,
        ),
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

/// A duration written as a number and a unit: `500ms`, `10s`, `5m`, `1h`.
fn duration(p: &mut Problems, field: &str, raw: Option<String>, default: Duration) -> Duration {
    let Some(raw) = raw else { return default };
    match parse_duration(&raw) {
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

pub(super) fn parse_duration(s: &str) -> Option<Duration> {
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

/// Replaces the values of secret-looking keys (`secret`, `password`, `private_key`, `token`).
pub(super) fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = ["secret", "password", "private_key", "token", "assertion"]
                        .iter()
                        .any(|s| lower.contains(s));
                    if secret && !v.is_null() {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}
