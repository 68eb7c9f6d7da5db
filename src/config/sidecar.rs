//! The sidecar's settings in `sidecar.yaml`: raw serde types read by [`super::yaml`], then
//! validated into a typed [`Config`] (module `validate`); every problem is collected with its
//! field path and line.

mod validate;

#[cfg(test)]
pub(super) use validate::redact;
pub(crate) use validate::tracing_section;

use super::findings::{ConfigErrors, Finding, Missing, Problems, Report};
use super::yaml::Document;
use super::{dpop, inbound_tls, issuers, limits, login, outbound, routes};
use crate::http::path::{EscapedSlashes, Parameters, PathRules, TrailingDots};
use crate::jwt::Algorithm;
pub use crate::jwt::jwks::JwksSettings;
use crate::server::Limits;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use validate::validate;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundSettings {
    /// How paths are made canonical ([`crate::http::path`]).
    pub paths: PathRules,
    /// Drop every request header whose name holds `_`: CGI-style servers (WSGI, Rack) read
    /// `x_a` and `x-a` as one variable, so any header may have a twin. Off by default; headers
    /// baton owns lose their twins either way.
    pub drop_underscore_headers: bool,
    /// Hand the app an opaque handle instead of the verified token ([`crate::confine`]); the
    /// outbound listener swaps it back.
    pub confine_token: bool,
    /// The protocol the app is spoken to in (`app_protocol:`).
    pub app_protocol: AppProtocol,
    /// TLS on the listener (`tls:`), when set; plain TCP otherwise.
    pub tls: Option<inbound_tls::InboundTls>,
}

/// The protocol the inbound listener speaks to the app, whatever the client spoke to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// HTTP/1.1 over keep-alive connections (the default): an HTTP/2 client's streams become
    /// HTTP/1.1 requests.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), streams multiplexed on one connection: what a gRPC
    /// server speaks. Trailers and bidirectional streams pass through.
    Http2,
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
    /// The primary issuer's identifier (baton's own IdP, `issuers[0]`); `iss` must equal it
    /// exactly (RFC 8725 §3.8).
    pub issuer: String,
    /// Every trusted issuer, the primary first ([`issuers`]).
    pub issuers: Vec<issuers::Issuer>,
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
    /// Header carrying the SPIFFE ID of the client's verified certificate to the app.
    pub peer_header: HeaderName,
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
    /// DPoP (RFC 9449) at the inbound listener.
    pub dpop: dpop::DpopSettings,
    /// Transaction Tokens (`txn_token:`), when this service takes part in them.
    pub txn_token: Option<super::txn::TxnToken>,
    /// The `tracing:` section (OpenTelemetry export), checked; the `OTEL_*` variables fill in
    /// what it leaves out when the sidecar starts ([`crate::otel::Settings::resolve`]).
    pub tracing: Option<crate::otel::RawTracing>,
    /// The file as parsed, with secret-looking values replaced by `[redacted]`, for `/config`.
    pub redacted: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    issuer: String,
    issuers: Option<Vec<issuers::RawIssuer>>,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    listeners: RawListeners,
    #[serde(default)]
    inbound: RawInbound,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    app: String,
    #[serde(default = "default_claims_header")]
    claims_header: String,
    #[serde(default = "default_peer_header")]
    peer_header: String,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway: u64,
    #[serde(default)]
    jwks: limits::RawJwks,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    routes: Vec<routes::RawRoute>,
    #[serde(default)]
    outbound: outbound::RawOutbound,
    login: Option<login::RawLogin>,
    #[serde(default)]
    dpop: dpop::RawDpop,
    txn_token: Option<super::txn::RawTxnToken>,
    tracing: Option<crate::otel::RawTracing>,
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
    confine_token: bool,
    app_protocol: AppProtocol,
    tls: Option<inbound_tls::RawInboundTls>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    expose_config: bool,
}

fn default_claims_header() -> String {
    "x-baton-claims".into()
}

fn default_peer_header() -> String {
    "x-baton-peer".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["ES256".into(), "RS256".into()]
}

fn default_leeway() -> u64 {
    30
}

impl Config {
    /// Parses and validates `sidecar.yaml` text as `baton run` does; `file` names it in every
    /// error. Every problem is reported, each as `file:line:column: field: reason`; a file the
    /// config names that is missing here is an error.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        match read(text, file, Missing::Error) {
            (Some(config), report) if report.errors.is_empty() => Ok(config),
            (_, report) => Err(report.into_config_errors()),
        }
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_yaml(&text, &file),
            Err(e) => Err(ConfigErrors(vec![unreadable(file, &e)])),
        }
    }

    /// What `baton check` reports on `sidecar.yaml` text: the same validation as
    /// [`Config::from_yaml`], except that a file or environment variable the config names but
    /// this machine lacks (a secret mounted only in the deployment) is a warning.
    pub fn check(text: &str, file: &str) -> Report {
        read(text, file, Missing::Warning).1
    }

    /// [`Config::check`] of the file at `path`.
    pub fn check_file(path: &Path) -> Report {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::check(&text, &file),
            Err(e) => Report {
                errors: vec![unreadable(file, &e)],
                warnings: Vec::new(),
            },
        }
    }
}

fn unreadable(file: String, e: &std::io::Error) -> Finding {
    Finding {
        file,
        line: None,
        column: None,
        field: "(file)".into(),
        reason: format!("read: {e}"),
    }
}

/// Reads and validates `text`: the config when it could be read, and everything found.
fn read(text: &str, file: &str, missing: Missing) -> (Option<Config>, Report) {
    let mut p = Problems::new(file);
    let Some(doc) = Document::parse(text, &mut p) else {
        return (None, p.report(|_| None, missing));
    };
    let config = doc
        .read::<RawConfig>(&mut p)
        .map(|raw| validate(raw, &doc, &mut p));
    (config, p.report(|f| doc.position(f), missing))
}
