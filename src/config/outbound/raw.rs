//! `outbound:` as written in `sidecar.yaml`, before validation: every field optional, so that a
//! missing one is reported by [`super::validate`] with its path rather than by serde.

use serde::Deserialize;
use std::path::PathBuf;

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
    /// How long one DPoP key binds new tokens, e.g. `24h` (default).
    pub dpop_key_rotation: Option<String>,
    /// The algorithm of the sidecar's DPoP proofs: `EdDSA` (default) or `ES256`.
    pub dpop_alg: Option<String>,
    /// Exchanged-token cache settings.
    #[serde(default)]
    pub cache: RawCache,
    /// What to do with a destination no route names: `deny` (default) or `passthrough`.
    pub unknown: Option<String>,
    /// What to do with `CONNECT`: `deny` (default) or `passthrough` (a blind tunnel, closed
    /// after `limits.idle_timeout` with no byte moving either way).
    pub connect: Option<String>,
    /// `host:port`s no route names that still belong to the trust domain: a passthrough call
    /// to one of them keeps the app's `Txn-Token`; to any other host it is removed.
    #[serde(default)]
    pub txn_token_hosts: Vec<String>,
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
    /// A JWT-SVID file a SPIFFE helper keeps fresh: sent as a `jwt-spiffe` client assertion,
    /// read again whenever the file changes.
    pub jwt_svid_file: Option<PathBuf>,
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
    /// `on` or `off` (default).
    pub dpop: Option<OnOff>,
}

/// `on`/`off`, however the YAML reader takes the words (a string, or a YAML 1.1 boolean).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OnOff {
    /// `true`/`false`, or `on`/`off` read as booleans.
    Bool(bool),
    /// `on`/`off` read as strings.
    Word(String),
}

/// `outbound.routes[i].tls`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The CA certificates (PEM) this upstream's certificate must chain to, and the only ones
    /// trusted for it; without it, the system roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate chain (PEM, leaf first) presented to this upstream: mutual TLS,
    /// e.g. with an X.509-SVID. Read again whenever the file changes.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
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
