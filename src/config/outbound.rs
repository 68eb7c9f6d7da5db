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
//!   # private_key_file + kid (+ alg: ES256|RS256) for private_key_jwt, or
//!   # jwt_svid_file: /run/spiffe/svid.token for a SPIFFE JWT-SVID (jwt-spiffe)
//!   token_endpoint: http://idp:9000/token   # optional: discovered from the top-level issuer
//!   connect_timeout: 2s
//!   timeout: 5s
//!   dpop_key_rotation: 24h  # a fresh DPoP key for new tokens this often
//!   dpop_alg: EdDSA         # the DPoP key's algorithm: EdDSA (Ed25519) or ES256
//!   cache: {max_entries: 10000, skew: 30s, negative_ttl: 5s}
//!   unknown: deny          # or passthrough (forwarded WITHOUT Authorization, and without
//!                          # Txn-Token unless the host is listed in txn_token_hosts)
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
//!       dpop: on                        # ask for DPoP-bound tokens, send a proof per call
//!       tls: {ca_file: /etc/baton/ca.pem}   # optional: upstream over https, trusting only
//!                                           # this file's CAs (`tls: {}`: the system roots);
//!                                           # + cert_file, key_file: mutual TLS
//!   ports:
//!     - {listen: "127.0.0.1:15101", upstream: "service-b:8080", route: b}
//! ```

mod client;
mod raw;
mod routes;

pub use raw::{RawCache, RawClient, RawOutbound, RawPort, RawRoute, RawTls};
pub use routes::{split_authority, split_parsed};

use super::findings::Problems;
use super::values::duration;
use crate::jwt::keys::SigningKey;
use crate::secret::Secret;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

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
    /// How long the sidecar's DPoP key binds new tokens before a fresh one is made.
    pub dpop_key_rotation: Duration,
    /// The algorithm of the sidecar's DPoP key and proofs.
    pub dpop_alg: crate::dpop::ProofAlg,
    /// Exchanged-token cache settings.
    pub cache: CacheSettings,
    /// Destinations no route names.
    pub unknown: Policy,
    /// `CONNECT` requests.
    pub connect: Policy,
    /// `host:port`s no route names to which a passthrough call keeps the app's `Txn-Token`
    /// (lower case).
    pub txn_token_hosts: Vec<String>,
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
            (ClientAuth::Svid(a), ClientAuth::Svid(b)) => a.path() == b.path(),
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
    /// A JWT-SVID from a file a SPIFFE helper keeps fresh, sent as a `jwt-spiffe` client
    /// assertion (draft-ietf-oauth-spiffe-client-auth).
    Svid(Arc<crate::spiffe::svid_file::SvidFile>),
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
    /// `dpop: on`: tokens for this route are asked bound to the sidecar's DPoP key (RFC 9449)
    /// and every call carries a fresh proof.
    pub dpop: bool,
}

/// Upstream TLS settings of a route.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// The only trust anchors (PEM) for this route's upstream; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate for mutual TLS, when the upstream asks for one.
    pub client_cert: Option<ClientCert>,
}

/// A client certificate and its key, PEM files read again whenever they change (a SPIFFE
/// helper renewing an X.509-SVID, a renewed Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
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
        raw_client => client::client(raw_client.unwrap_or_default(), problems),
    };
    let token_endpoint = raw.token_endpoint.and_then(|s| match Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        _ => {
            problems.push("outbound.token_endpoint", "must be an absolute http(s) URL");
            None
        }
    });
    let mut duration = |field: &str, raw: Option<String>, default_ms| {
        let default = Duration::from_millis(default_ms);
        duration(
            problems,
            &format!("outbound.{field}"),
            raw.as_deref(),
            default,
        )
    };
    let cache = CacheSettings {
        max_entries: raw.cache.max_entries.unwrap_or(10_000),
        skew: duration("cache.skew", raw.cache.skew, 30_000).as_secs(),
        negative_ttl: duration("cache.negative_ttl", raw.cache.negative_ttl, 5_000).as_secs(),
    };
    let connect_timeout = duration("connect_timeout", raw.connect_timeout, 2_000);
    let timeout = duration("timeout", raw.timeout, 5_000);
    let dpop_key_rotation = duration("dpop_key_rotation", raw.dpop_key_rotation, 86_400_000);
    if dpop_key_rotation < Duration::from_secs(1) {
        problems.push("outbound.dpop_key_rotation", "must be at least 1s");
    }
    let dpop_alg = match raw.dpop_alg.as_deref() {
        None | Some("EdDSA") => crate::dpop::ProofAlg::EdDSA,
        Some("ES256") => crate::dpop::ProofAlg::ES256,
        Some(other) => {
            problems.push(
                "outbound.dpop_alg",
                format!("{other:?}: use EdDSA or ES256"),
            );
            crate::dpop::ProofAlg::default()
        }
    };
    if cache.max_entries == 0 {
        problems.push("outbound.cache.max_entries", "must be at least 1");
    }
    if connect_timeout.is_zero() || timeout.is_zero() {
        problems.push("outbound.timeout", "timeouts must be longer than zero");
    }
    let unknown = policy(raw.unknown.as_deref(), "outbound.unknown", problems);
    let connect = policy(raw.connect.as_deref(), "outbound.connect", problems);
    let mut txn_token_hosts = Vec::new();
    for (i, h) in raw.txn_token_hosts.into_iter().enumerate() {
        match h
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()))
        {
            Some((host, Ok(_))) if !host.is_empty() => txn_token_hosts.push(h.to_ascii_lowercase()),
            _ => problems.push(
                format!("outbound.txn_token_hosts[{i}]"),
                "must be host:port, e.g. service-b:8080",
            ),
        }
    }
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
        dpop_key_rotation,
        dpop_alg,
        cache,
        unknown,
        connect,
        txn_token_hosts,
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

#[cfg(test)]
mod tests;
