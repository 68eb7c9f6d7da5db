//! The outbound part of `sidecar.yaml`: routes by destination, client identity, exchange settings.
//!
//! `RawOutbound` is what the YAML says (unknown fields refused); [`validate`] turns it into a typed
//! [`Outbound`], reading secret and key files, and records every problem with its field path.

use crate::config::Problems;
use crate::jwt::Algorithm;
use crate::jwt::keys::SigningKey;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Default address of the forward-proxy listener (`HTTP_PROXY=http://127.0.0.1:15001`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:15001";

/// `outbound:` as written in `sidecar.yaml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    /// Forward-proxy listen address; default [`DEFAULT_LISTEN`].
    pub listen: Option<String>,
    /// This service's client identity at the IdP.
    pub client: Option<RawClient>,
    /// Token endpoint; when absent it is discovered from the top-level `issuer`.
    pub token_endpoint: Option<String>,
    /// Connect timeout towards the IdP, in milliseconds (default 2000).
    pub connect_timeout_ms: Option<u64>,
    /// Total timeout of one IdP call, in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Exchanged-token cache settings.
    #[serde(default)]
    pub cache: RawCache,
    /// What to do with a destination no route names: `deny` (default) or `passthrough`.
    pub unknown: Option<String>,
    /// What to do with `CONNECT`: `deny` (default) or `passthrough` (a blind tunnel).
    pub connect: Option<String>,
    /// Routes by destination host.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Per-upstream local ports.
    #[serde(default)]
    pub ports: Vec<RawPort>,
}

/// `outbound.client`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// Inline secret, for demos only.
    pub secret: Option<String>,
    /// PKCS#8 PEM key for `private_key_jwt` (RFC 7523).
    pub private_key_file: Option<PathBuf>,
    pub kid: Option<String>,
    pub alg: Option<String>,
}

/// `outbound.cache`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_entries: Option<u64>,
    pub skew_seconds: Option<u64>,
    pub negative_ttl_seconds: Option<u64>,
}

/// `outbound.routes[i]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub scope: Option<String>,
    pub requested_lifetime: Option<u64>,
    pub without_subject: Option<String>,
    pub tls: Option<RawTls>,
}

/// `outbound.routes[i].tls`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<PathBuf>,
}

/// `outbound.ports[i]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub route: Option<String>,
}

/// The validated outbound configuration.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Forward-proxy listen address.
    pub listen: SocketAddr,
    /// Client identity used at the token endpoint.
    pub client: Client,
    /// Explicit token endpoint, else discovered from the issuer.
    pub token_endpoint: Option<Url>,
    /// Connect timeout towards the IdP.
    pub connect_timeout: Duration,
    /// Total timeout of one IdP call (never retried).
    pub timeout: Duration,
    /// Exchanged-token cache settings.
    pub cache: CacheSettings,
    /// Destinations no route names.
    pub unknown: Policy,
    /// `CONNECT` requests.
    pub connect: Policy,
    /// Routes, matched by destination `host:port`.
    pub routes: Vec<Route>,
    /// Per-upstream local ports.
    pub ports: Vec<Port>,
}

/// The sidecar's own client identity at the IdP.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub auth: ClientAuth,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    Secret(Secret),
    /// `private_key_jwt` (RFC 7523 §2.2).
    PrivateKey(Arc<SigningKey>),
}

/// Exchanged-token cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Entries kept at most; the least useful are evicted beyond it.
    pub max_entries: u64,
    /// Seconds before an issued token's `exp` at which the cache stops serving it.
    pub skew: u64,
    /// Seconds an `invalid_*` answer is remembered.
    pub negative_ttl: u64,
}

/// `deny` or `passthrough`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Deny,
    Passthrough,
}

/// What a route does with a call that carries no subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutSubject {
    /// 401 with a body that says how to propagate the token.
    Deny,
    /// The service's own token (`client_credentials`).
    ClientCredentials,
}

/// One destination and the token it gets.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Destination host, lowercase.
    pub host: String,
    /// Destination port (default 80, or 443 with `tls`).
    pub port: u16,
    pub audience: Option<String>,
    pub resources: Vec<String>,
    pub scope: Option<String>,
    /// Requested lifetime in seconds (`requested_lifetime` form parameter).
    pub requested_lifetime: Option<u64>,
    pub without_subject: WithoutSubject,
    /// Upstream TLS; `ca_file` adds a trust anchor to the system roots.
    pub tls: Option<Tls>,
}

/// Upstream TLS settings of a route.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
}

/// A local port that forwards to one upstream through one route.
#[derive(Debug, Clone)]
pub struct Port {
    pub listen: SocketAddr,
    pub upstream: String,
    /// Index into [`Outbound::routes`].
    pub route: usize,
}

impl Outbound {
    /// The route for destination `host:port` (host compared case-insensitively).
    pub fn route_for(&self, host: &str, port: u16) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.port == port && r.host.eq_ignore_ascii_case(host))
    }
}

/// Validates `outbound:`, recording every problem under `outbound.<field>`.
pub fn validate(raw: RawOutbound, problems: &mut Problems) -> Outbound {
    let listen = addr(
        raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        "outbound.listen",
        problems,
    );
    // A service that calls nobody (the end of a chain) needs no client identity.
    let client = match raw.client {
        None if raw.routes.is_empty() => Client {
            client_id: String::new(),
            auth: ClientAuth::Secret(Secret::new(String::new())),
        },
        raw_client => client(raw_client.unwrap_or_default(), problems),
    };
    let token_endpoint = raw.token_endpoint.and_then(|s| match Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        _ => {
            problems.push("outbound.token_endpoint", "must be an absolute http(s) URL");
            None
        }
    });
    let cache = CacheSettings {
        max_entries: raw.cache.max_entries.unwrap_or(10_000),
        skew: raw.cache.skew_seconds.unwrap_or(30),
        negative_ttl: raw.cache.negative_ttl_seconds.unwrap_or(5),
    };
    if cache.max_entries == 0 {
        problems.push("outbound.cache.max_entries", "must be at least 1");
    }
    let unknown = policy(raw.unknown.as_deref(), "outbound.unknown", problems);
    let connect = policy(raw.connect.as_deref(), "outbound.connect", problems);
    let routes: Vec<Route> = raw
        .routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(i, r, problems))
        .collect();
    let mut seen = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            problems.push(format!("outbound.routes[{i}].name"), "duplicate route name");
        }
    }
    let ports = raw
        .ports
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| port(i, p, &routes, problems))
        .collect();
    Outbound {
        listen,
        client,
        token_endpoint,
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms.unwrap_or(2000)),
        timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(5000)),
        cache,
        unknown,
        connect,
        routes,
        ports,
    }
}

fn addr(s: &str, field: &str, problems: &mut Problems) -> SocketAddr {
    s.parse().unwrap_or_else(|_| {
        problems.push(field, format!("{s:?} is not an ip:port address"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn policy(s: Option<&str>, field: &str, problems: &mut Problems) -> Policy {
    match s {
        None | Some("deny") => Policy::Deny,
        Some("passthrough") => Policy::Passthrough,
        Some(other) => {
            problems.push(field, format!("{other:?}: use deny or passthrough"));
            Policy::Deny
        }
    }
}

fn client(raw: RawClient, problems: &mut Problems) -> Client {
    let client_id = raw.client_id.unwrap_or_else(|| {
        problems.push("outbound.client.client_id", "required");
        String::new()
    });
    let given = [
        raw.secret.is_some(),
        raw.secret_file.is_some(),
        raw.secret_env.is_some(),
        raw.private_key_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        problems.push(
            "outbound.client",
            "set exactly one of secret_file, secret_env, secret (demos) or private_key_file",
        );
    }
    let secret = |s: String| ClientAuth::Secret(Secret::new(s.trim_end_matches(['\n', '\r'])));
    let auth = if let Some(s) = raw.secret {
        secret(s)
    } else if let Some(path) = raw.secret_file {
        match std::fs::read_to_string(&path) {
            Ok(s) => secret(s),
            Err(e) => {
                problems.push(
                    "outbound.client.secret_file",
                    format!("read {}: {e}", path.display()),
                );
                secret(String::new())
            }
        }
    } else if let Some(var) = raw.secret_env {
        match std::env::var(&var) {
            Ok(s) if !s.is_empty() => secret(s),
            _ => {
                problems.push(
                    "outbound.client.secret_env",
                    format!("environment variable {var} is not set"),
                );
                secret(String::new())
            }
        }
    } else if let Some(path) = raw.private_key_file {
        private_key(&path, raw.kid, raw.alg.as_deref(), problems)
            .unwrap_or_else(|| secret(String::new()))
    } else {
        secret(String::new())
    };
    Client { client_id, auth }
}

fn private_key(
    path: &std::path::Path,
    kid: Option<String>,
    alg: Option<&str>,
    problems: &mut Problems,
) -> Option<ClientAuth> {
    let alg = match alg.unwrap_or("ES256") {
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        other => {
            problems.push(
                "outbound.client.alg",
                format!("{other:?}: use ES256 or RS256"),
            );
            return None;
        }
    };
    let Some(kid) = kid else {
        problems.push(
            "outbound.client.kid",
            "required with private_key_file (the kid registered at the IdP)",
        );
        return None;
    };
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) => {
            problems.push(
                "outbound.client.private_key_file",
                format!("read {}: {e}", path.display()),
            );
            return None;
        }
    };
    match SigningKey::from_pem(&kid, alg, &pem) {
        Ok(key) => Some(ClientAuth::PrivateKey(Arc::new(key))),
        Err(e) => {
            problems.push("outbound.client.private_key_file", e.to_string());
            None
        }
    }
}

fn route(i: usize, raw: RawRoute, problems: &mut Problems) -> Option<Route> {
    let at = |f: &str| format!("outbound.routes[{i}].{f}");
    let name = raw.name.filter(|n| !n.is_empty()).or_else(|| {
        problems.push(at("name"), "required");
        None
    })?;
    let tls = raw.tls.map(|t| Tls { ca_file: t.ca_file });
    if let Some(ca) = tls.as_ref().and_then(|t| t.ca_file.as_ref())
        && !ca.is_file()
    {
        problems.push(
            at("tls.ca_file"),
            format!("{} is not a readable file", ca.display()),
        );
    }
    let default_port = if tls.is_some() { 443 } else { 80 };
    let Some((host, port)) = raw
        .host
        .as_deref()
        .and_then(|h| split_authority(h, default_port))
    else {
        problems.push(at("host"), "required as host[:port], e.g. service-b:8080");
        return None;
    };
    if raw.audience.is_none() && raw.resources.is_empty() {
        problems.push(
            at("audience"),
            "set audience or resources: the token's target",
        );
    }
    for (j, r) in raw.resources.iter().enumerate() {
        match Url::parse(r) {
            Ok(u) if u.fragment().is_none() => {}
            _ => problems.push(
                format!("outbound.routes[{i}].resources[{j}]"),
                "must be an absolute URI without a fragment (RFC 8707 §2)",
            ),
        }
    }
    if raw.requested_lifetime == Some(0) {
        problems.push(at("requested_lifetime"), "must be at least 1 second");
    }
    let without_subject = match raw.without_subject.as_deref() {
        None | Some("deny") => WithoutSubject::Deny,
        Some("client_credentials") => WithoutSubject::ClientCredentials,
        Some(other) => {
            problems.push(
                at("without_subject"),
                format!("{other:?}: use deny or client_credentials"),
            );
            WithoutSubject::Deny
        }
    };
    Some(Route {
        name,
        host,
        port,
        audience: raw.audience,
        resources: raw.resources,
        scope: raw.scope.filter(|s| !s.trim().is_empty()),
        requested_lifetime: raw.requested_lifetime,
        without_subject,
        tls,
    })
}

fn port(i: usize, raw: RawPort, routes: &[Route], problems: &mut Problems) -> Option<Port> {
    let at = |f: &str| format!("outbound.ports[{i}].{f}");
    let listen = addr(raw.listen.as_deref().unwrap_or(""), &at("listen"), problems);
    let Some(upstream) = raw.upstream.filter(|u| split_authority(u, 80).is_some()) else {
        problems.push(
            at("upstream"),
            "required as host[:port], e.g. service-b:8080",
        );
        return None;
    };
    let name = raw.route.unwrap_or_default();
    let Some(route) = routes.iter().position(|r| r.name == name) else {
        problems.push(at("route"), format!("no route named {name:?}"));
        return None;
    };
    Some(Port {
        listen,
        upstream,
        route,
    })
}

/// Splits `host[:port]` (IPv6 in brackets) into a lowercase host and a port.
pub fn split_authority(s: &str, default_port: u16) -> Option<(String, u16)> {
    let auth: http::uri::Authority = s.parse().ok()?;
    if auth.as_str().contains('@') || auth.host().is_empty() {
        return None;
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    Some((
        host.to_ascii_lowercase(),
        auth.port_u16().unwrap_or(default_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Outbound, Vec<String>> {
        let raw: RawOutbound = serde_yaml::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let mut problems = Problems::new("sidecar.yaml");
        let out = validate(raw, &mut problems);
        problems
            .finish(out)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_full_config_validates() {
        let out = parse(
            r#"
client: {client_id: service-a, secret: s3cret}
routes:
  - {name: b, host: "Service-B:8080", audience: service-b, scope: "read write"}
  - {name: b-admin, host: "admin.b", resources: ["https://b/admin"], without_subject: client_credentials}
ports:
  - {listen: "127.0.0.1:15101", upstream: "service-b:8080", route: b}
"#,
        )
        .expect("valid");
        assert_eq!(out.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            out.route_for("service-b", 8080).map(|r| &*r.name),
            Some("b")
        );
        assert_eq!(
            out.route_for("admin.b", 80).map(|r| &*r.name),
            Some("b-admin")
        );
        assert!(out.route_for("service-b", 80).is_none());
        assert_eq!(out.ports[0].route, 0);
        assert_eq!(
            out.routes[1].without_subject,
            WithoutSubject::ClientCredentials
        );
        assert!(!format!("{out:?}").contains("s3cret"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let errs = parse(
            r#"
client: {client_id: a, secret: x, secret_env: Y}
unknown: allow
routes:
  - {name: b, host: "service-b:8080"}
  - {name: b, host: "bad host:99999", audience: b, without_subject: maybe}
  - {name: c, host: c, audience: c, resources: ["not a uri"]}
ports:
  - {listen: nope, upstream: "c:1", route: zzz}
"#,
        )
        .expect_err("invalid");
        let all = errs.join("\n");
        for needle in [
            "sidecar.yaml: outbound.client: set exactly one",
            "outbound.unknown: \"allow\"",
            "outbound.routes[0].audience: set audience or resources",
            "outbound.routes[1].host: required",
            "outbound.routes[2].resources[0]: must be an absolute URI",
            "outbound.ports[0].listen",
            "outbound.ports[0].route: no route named \"zzz\"",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let errs = parse("client: {client_id: a, secret: x}\nroutez: []\n").expect_err("unknown");
        assert!(errs[0].contains("routez"), "{errs:?}");
    }
}
