//! The outbound part of `sidecar.yaml`: routes by destination, client identity, exchange settings.
//!
//! `RawOutbound` is what the YAML says (unknown fields refused); [`validate`] turns it into a typed
//! [`Outbound`], reading secret and key files, and records every problem with its field path.
//! Every field here is applied by a reload (SIGHUP or a changed file: the files are read again,
//! see [`crate::sidecar::reload`]) except `ports[].listen`, whose listeners are bound at start.
//!
//! ```yaml
//! outbound:
//!   client: {client_id: service-a, secret_file: /run/secrets/client}  # or secret_env, or
//!   # private_key_file + kid (+ alg: ES256|RS256) for private_key_jwt
//!   token_endpoint: http://idp:9000/token   # optional: discovered from the top-level issuer
//!   connect_timeout: 2s
//!   timeout: 5s
//!   cache: {max_entries: 10000, skew: 30s, negative_ttl: 5s}
//!   unknown: deny          # or passthrough (forwarded WITHOUT Authorization)
//!   connect: deny          # or passthrough (a blind tunnel: nothing is exchanged; closed
//!                          # after limits.idle_timeout with no byte moving)
//!   routes:
//!     - name: b
//!       host: service-b:8080            # matched against the request's destination
//!       audience: service-b
//!       resources: [https://service-b/api]
//!       scope: openid profile
//!       requested_lifetime: 600         # seconds
//!       without_subject: deny           # or client_credentials
//!       tls: {ca_file: /etc/baton/ca.pem}   # optional: upstream over https, trusting only
//!                                           # this file's CAs (`tls: {}`: the system roots)
//!   ports:
//!     - {listen: "127.0.0.1:15101", upstream: "service-b:8080", route: b}
//! ```

mod routes;

pub use routes::{split_authority, split_parsed};

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

/// `outbound:` as written in `sidecar.yaml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    /// This service's client identity at the IdP.
    pub client: Option<RawClient>,
    /// Token endpoint; when absent it is discovered from the top-level `issuer`.
    pub token_endpoint: Option<String>,
    /// Connect timeout towards the IdP and upstreams, e.g. `2s` (default).
    pub connect_timeout: Option<String>,
    /// Total timeout of one IdP call, e.g. `5s` (default).
    pub timeout: Option<String>,
    /// Exchanged-token cache settings.
    #[serde(default)]
    pub cache: RawCache,
    /// What to do with a destination no route names: `deny` (default) or `passthrough`.
    pub unknown: Option<String>,
    /// What to do with `CONNECT`: `deny` (default) or `passthrough` (a blind tunnel, closed
    /// after `limits.idle_timeout` with no byte moving either way).
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
    /// The client id registered at the IdP.
    pub client_id: Option<String>,
    /// File holding the client secret (`client_secret_basic`).
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    pub secret_env: Option<String>,
    /// Inline secret, for demos only.
    pub secret: Option<String>,
    /// PKCS#8 PEM key for `private_key_jwt` (RFC 7523).
    pub private_key_file: Option<PathBuf>,
    /// The key's `kid` as registered at the IdP.
    pub kid: Option<String>,
    /// `ES256` (default) or `RS256`.
    pub alg: Option<String>,
}

/// `outbound.cache`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Most tokens kept (default 10000).
    pub max_entries: Option<u64>,
    /// e.g. `30s` (default).
    pub skew: Option<String>,
    /// e.g. `5s` (default).
    pub negative_ttl: Option<String>,
}

/// `outbound.routes[i]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, used in metrics, logs and `ports`.
    pub name: Option<String>,
    /// Destination `host[:port]`.
    pub host: Option<String>,
    /// `audience` of the exchange.
    pub audience: Option<String>,
    /// RFC 8707 `resource` values of the exchange.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Space-separated `scope` of the exchange.
    pub scope: Option<String>,
    /// Seconds, sent as `requested_lifetime`.
    pub requested_lifetime: Option<u64>,
    /// `deny` (default) or `client_credentials`.
    pub without_subject: Option<String>,
    /// Upstream TLS.
    pub tls: Option<RawTls>,
}

/// `outbound.routes[i].tls`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The CA certificates (PEM) this upstream's certificate must chain to, and the only ones
    /// trusted for it; without it, the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `outbound.ports[i]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    /// Local `ip:port` the app calls.
    pub listen: Option<String>,
    /// Destination `host[:port]`.
    pub upstream: Option<String>,
    /// Name of the route whose token it gets.
    pub route: Option<String>,
}

/// The validated outbound configuration.
#[derive(Debug, Clone)]
pub struct Outbound {
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
    /// The client id registered at the IdP.
    pub client_id: String,
    /// Its credential.
    pub auth: ClientAuth,
}

impl Client {
    /// Whether `other` is the same identity: the same client id and credential (a private key
    /// by its `kid`, algorithm and public key).
    pub fn same_identity(&self, other: &Client) -> bool {
        let auth = match (&self.auth, &other.auth) {
            (ClientAuth::Secret(a), ClientAuth::Secret(b)) => a == b,
            (ClientAuth::PrivateKey(a), ClientAuth::PrivateKey(b)) => {
                a.kid() == b.kid() && a.alg() == b.alg() && a.public_jwk() == b.public_jwk()
            }
            _ => false,
        };
        self.client_id == other.client_id && auth
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Refuse (403 for unknown hosts, 405 for CONNECT).
    Deny,
    /// Forward without exchange (unknown hosts lose `Authorization`; CONNECT is a blind tunnel).
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
    /// Unique name.
    pub name: String,
    /// Destination host, lowercase.
    pub host: String,
    /// Destination port (default 80, or 443 with `tls`).
    pub port: u16,
    /// `audience` of the exchange.
    pub audience: Option<String>,
    /// RFC 8707 `resource` values of the exchange.
    pub resources: Vec<String>,
    /// `scope` of the exchange.
    pub scope: Option<String>,
    /// Requested lifetime in seconds (`requested_lifetime` form parameter).
    pub requested_lifetime: Option<u64>,
    /// What a call without a subject token gets.
    pub without_subject: WithoutSubject,
    /// Upstream TLS, with this route's own trust: its `ca_file`, or the system roots.
    pub tls: Option<Tls>,
}

/// Upstream TLS settings of a route.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// The only trust anchors (PEM) for this route's upstream; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
}

/// A local port that forwards to one upstream through one route.
#[derive(Debug, Clone)]
pub struct Port {
    /// Local address the app calls.
    pub listen: SocketAddr,
    /// Destination `host[:port]`.
    pub upstream: String,
    /// Index into [`Outbound::routes`].
    pub route: usize,
}

impl Outbound {
    /// The route for destination `host:port` (host compared case-insensitively). When several
    /// routes name one destination the first serves the forward proxy; the others are reached
    /// through `ports` (e.g. one port per scope).
    pub fn route_for(&self, host: &str, port: u16) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.port == port && r.host.eq_ignore_ascii_case(host))
    }
}

/// Validates `outbound:`, recording every problem under `outbound.<field>`.
pub fn validate(raw: RawOutbound, problems: &mut Problems) -> Outbound {
    // Without routes nothing is exchanged, so `outbound: {}` (deny everything) needs no client.
    let client = match raw.client {
        None if raw.routes.is_empty() => Client {
            client_id: String::new(),
            auth: ClientAuth::Secret(Secret::new("")),
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
        skew: duration(raw.cache.skew, "outbound.cache.skew", 30_000, problems).as_secs(),
        negative_ttl: duration(
            raw.cache.negative_ttl,
            "outbound.cache.negative_ttl",
            5_000,
            problems,
        )
        .as_secs(),
    };
    if cache.max_entries == 0 {
        problems.push("outbound.cache.max_entries", "must be at least 1");
    }
    let connect_timeout = duration(
        raw.connect_timeout,
        "outbound.connect_timeout",
        2_000,
        problems,
    );
    let timeout = duration(raw.timeout, "outbound.timeout", 5_000, problems);
    if connect_timeout.is_zero() || timeout.is_zero() {
        problems.push("outbound.timeout", "timeouts must be longer than zero");
    }
    let unknown = policy(raw.unknown.as_deref(), "outbound.unknown", problems);
    let connect = policy(raw.connect.as_deref(), "outbound.connect", problems);
    let routes: Vec<Route> = raw
        .routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| routes::route(i, r, problems))
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
        .filter_map(|(i, p)| routes::port(i, p, &routes, problems))
        .collect();
    Outbound {
        client,
        token_endpoint,
        connect_timeout,
        timeout,
        cache,
        unknown,
        connect,
        routes,
        ports,
    }
}

/// With an `https` issuer, a configured token endpoint must be `https` too: the client secret or
/// assertion and the users' tokens never cross plain HTTP for an issuer that has TLS.
pub fn check_issuer(outbound: &Outbound, issuer: &str, problems: &mut Problems) {
    if issuer.starts_with("https:")
        && outbound
            .token_endpoint
            .as_ref()
            .is_some_and(|u| u.scheme() != "https")
    {
        problems.push(
            "outbound.token_endpoint",
            "must be https when the issuer is https",
        );
    }
}

/// A duration like `500ms`, `10s`, `5m`, `1h` (the same syntax as the rest of `sidecar.yaml`).
fn duration(
    raw: Option<String>,
    field: &str,
    default_ms: u64,
    problems: &mut Problems,
) -> Duration {
    let Some(raw) = raw else {
        return Duration::from_millis(default_ms);
    };
    super::sidecar::parse_duration(&raw).unwrap_or_else(|| {
        problems.push(field, "must be a duration like 500ms, 10s, 5m or 1h");
        Duration::from_millis(default_ms)
    })
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

#[cfg(test)]
mod tests;
