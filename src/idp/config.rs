//! `idp.yaml` → validated [`Config`]: clients, users, exchange edges, resources, lifetimes.
//!
//! The file is read by the sidecar config's reader (unknown fields and values of the wrong type
//! are reported, not fatal); validation collects every problem with the file, the line, the
//! field path and the reason ([`Report`]), so `baton-idp` refuses to start with all of them
//! listed at once, and `baton-idp check` lists them with the warnings.
//!
//! Secrets (client secrets, password hashes, TOTP secrets) come from files or environment
//! variables; inline and published example values only with `demo: true` (`secrets`).

mod branding;
mod check;
mod client;
mod dpop;
mod grants;
mod raw;
mod secrets;
mod spiffe;
mod store;
mod throttle;
pub mod trusted;
mod txn;
mod users;
mod validate;

use crate::config::yaml::Document;
use crate::config::{ConfigErrors, Missing, Problems};
pub use crate::config::{Finding, Report};
use crate::jwt::{Algorithm, Claims, keys::KeySet};
use crate::secret::Secret;
pub use client::absolute_without_fragment;
pub use dpop::Dpop;
use raw::RawConfig;
use serde::{Deserialize, Serialize};
pub use spiffe::Spiffe;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
pub use store::{PostgresConfig, StoreConfig};
pub use throttle::{Limits, Rule};
pub use txn::{DEFAULT_LIFETIME as TXN_DEFAULT_LIFETIME, TxnTokens};
use validate::validate;

/// The RFC 8693 grant type URN.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Claims an edge or a user may never set: the IdP owns them (RFC 9068 §2.2, RFC 8693 §4).
pub const RESERVED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "act",
    "may_act",
    "client_id",
    "scope",
    "grants",
    "acr",
    "amr",
    "auth_time",
    "cnf",
    "sid",
    "grant_id",
];

/// Grant types a client may be allowed (RFC 6749 §4, RFC 8693).
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
];

/// The validated IdP configuration. Fields are public so tests and the demo can adjust a loaded
/// config (typically `issuer` after binding `127.0.0.1:0`).
pub struct Config {
    /// Exact issuer identifier, e.g. `http://127.0.0.1:9000` (no trailing slash).
    pub issuer: String,
    /// Where `baton-idp serve` binds.
    pub listen: SocketAddr,
    /// Where the operator endpoints (`/metrics`) are served: loopback unless configured.
    pub admin_listen: SocketAddr,
    /// Signing key storage.
    pub keys: KeysConfig,
    /// Token lifetimes in seconds.
    pub lifetimes: Lifetimes,
    /// Longest `act` chain a token may carry (RFC 8693 §4.1 nesting).
    pub max_chain_depth: usize,
    /// Clients by id; a service's client id is also its audience.
    pub clients: BTreeMap<String, Client>,
    /// Users by username.
    pub users: BTreeMap<String, User>,
    /// Exchange edges `client → target`.
    pub grants: Vec<Edge>,
    /// RFC 8707 resource URI → audience (a client id).
    pub resources: BTreeMap<String, String>,
    /// Authentication levels: `acr` value → the factors it needs (OIDC Core §2 `acr`).
    pub acr: BTreeMap<String, Vec<Factor>>,
    /// Abuse limits of the login pages.
    pub login: LoginLimits,
    /// The look of the sign-in pages: product name, logo, accent colour, link home.
    pub branding: crate::page::Theme,
    /// Where codes, sessions, refresh families, revocations and replay sets are kept.
    pub store: StoreConfig,
    /// Transaction Tokens (`txn_tokens:`), when this IdP is the trust domain's Txn-Token Service.
    pub txn_tokens: Option<TxnTokens>,
    /// DPoP at the token endpoint (`dpop:`): server nonces and the replay store's share per key.
    pub dpop: Dpop,
    /// Foreign issuers whose access tokens may be exchanged here ([`trusted`]).
    pub trusted_issuers: Vec<trusted::TrustedIssuer>,
    /// Trust domains whose JWT-SVIDs authenticate clients registered by `spiffe_id`.
    pub spiffe: Option<Spiffe>,
    /// The `tracing:` section (OpenTelemetry export); the `OTEL_*` variables fill in what it
    /// leaves out when the IdP starts.
    pub tracing: Option<crate::otel::RawTracing>,
}

/// How many password checks run and wait at once, and the failure counters' rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Password checks running at once; each holds its hash's memory (19 MiB by default).
    pub hash_workers: usize,
    /// Sign-ins waiting for a check; more are answered 503 with `Retry-After`.
    pub hash_queue: usize,
    /// The failure counters (not in `idp.yaml`: the defaults are documented and tested).
    pub throttle: Limits,
}

/// An authentication factor a user can prove at the login pages (RFC 8176 `amr` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Factor {
    /// The user's password.
    Pwd,
    /// A one-time code from the user's TOTP app (RFC 6238).
    Otp,
}

impl Factor {
    /// The RFC 8176 `amr` value.
    pub fn amr(self) -> &'static str {
        match self {
            Factor::Pwd => "pwd",
            Factor::Otp => "otp",
        }
    }
}

/// Where keys live and which algorithm new keys use.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Directory holding PKCS#8 PEM files and `manifest.json`.
    pub dir: PathBuf,
    /// ES256 (default) or RS256.
    pub algorithm: Algorithm,
}

/// Token lifetimes, seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Access tokens (also the default for exchanged tokens, bounded by the subject's `exp`).
    pub access: u64,
    /// ID tokens.
    pub id: u64,
    /// Authorization codes (RFC 6749 §4.1.2 recommends at most 10 minutes).
    pub code: u64,
    /// Refresh tokens.
    pub refresh: u64,
    /// IdP login sessions (the browser cookie).
    pub session: u64,
    /// The latest any token derived from one sign-in may expire, counted from its `auth_time`:
    /// refreshes and exchanges (self-edges included) never reach past it. At least `session`.
    pub sign_in: u64,
}

/// How a client authenticates at the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret(Secret),
    /// `private_key_jwt` (RFC 7523) with the client's registered keys.
    Jwks(KeySet),
    /// A JWT-SVID whose `sub` is this SPIFFE ID (`client_assertion_type` `jwt-spiffe`),
    /// verified with its trust domain's bundle from `spiffe:`.
    Spiffe(crate::spiffe::SpiffeId),
}

/// A registered client.
#[derive(Clone)]
pub struct Client {
    /// Client id, also the service's audience.
    pub id: String,
    /// The name the sign-in pages show ("Sign in to continue to …"); the id when `None`.
    pub name: Option<String>,
    /// Credentials.
    pub auth: ClientAuth,
    /// Exact redirect URIs (RFC 9700 §2.1).
    pub redirect_uris: Vec<String>,
    /// Exact URIs end-session may send the browser back to (RP-Initiated Logout 1.0 §3).
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Scopes for `client_credentials`.
    pub scopes: Vec<String>,
    /// The audience (a client id) of a `client_credentials` token when the request names neither
    /// `audience` nor `resource`.
    pub default_audience: Option<String>,
    /// Every token request of this client must carry a DPoP proof (RFC 9449), so every token
    /// it gets is bound to its key.
    pub dpop_required: bool,
    /// An exchange by this client of a DPoP-bound subject token may bind the new token to the
    /// client's own proof key; otherwise the proof must come from the subject token's key.
    pub dpop_rebind: bool,
}

impl Client {
    /// Whether the client may use `grant_type`.
    pub fn allows(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// A user who can sign in through the login form.
#[derive(Clone)]
pub struct User {
    /// Username, also the `sub`.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: Secret,
    /// Extra claims such as `account_id`, `email`.
    pub claims: Claims,
    /// Scopes the user may be granted.
    pub scope: Vec<String>,
    /// Base32 TOTP secret (RFC 6238), if the user enrolled a one-time-code app.
    pub totp_secret: Option<Secret>,
}

/// An exchange edge: `client` may exchange a token addressed to it for one addressed to `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// The requesting client.
    pub client: String,
    /// The audience of the new token.
    pub target: String,
    /// Scopes the new token may carry.
    pub scopes: Vec<String>,
    /// Claims the edge adds (objects merge, arrays union).
    pub claims: Claims,
    /// A lifetime the new token may have even past the subject's `exp` (long-running jobs).
    pub max_lifetime: Option<u64>,
    /// Whether the new scope may exceed the subject's scope.
    pub scope_beyond_subject: bool,
}

/// What [`Config::load`] may read besides the text.
pub struct Options<'a> {
    /// `--allow-inline-secrets`: accept inline secrets and the examples' published values (each
    /// client or user holding one gets a warning), as `demo: true` in the file does.
    pub allow_inline_secrets: bool,
    /// Looks up the environment variables the file names (`secret_env`, …).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Options<'_> {
    /// The process environment; inline secrets only if the file says `demo: true`.
    pub fn process() -> Options<'static> {
        Options {
            allow_inline_secrets: false,
            env: &|name| std::env::var(name).ok(),
        }
    }
}

/// A config that passed validation, and what it warned about.
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// Warnings, each with its line: log them at start.
    pub warnings: Vec<Finding>,
}

impl Config {
    /// Parses and validates `text`, read from `file` (used in messages and for relative paths),
    /// as `baton-idp serve` does; every problem, with its line, and the warnings. A file or
    /// environment variable the config names but this machine lacks is an error.
    pub fn load(text: &str, file: &str, opts: &Options) -> Result<Loaded, Report> {
        match read(text, file, opts, Missing::Error) {
            (Some(config), report) if report.errors.is_empty() => Ok(Loaded {
                config,
                warnings: report.warnings,
            }),
            (_, report) => Err(report),
        }
    }

    /// What `baton-idp check` reports on `text`: the validation of [`Config::load`], except that
    /// a file or environment variable this machine lacks (a secret mounted only in the
    /// deployment) is a warning.
    pub fn check(text: &str, file: &str, opts: &Options) -> Report {
        read(text, file, opts, Missing::Warning).1
    }

    /// [`Config::check`] of the file at `path`.
    pub fn check_file(path: &std::path::Path, opts: &Options) -> Report {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::check(&text, &file, opts),
            Err(e) => Report {
                errors: vec![Finding {
                    file,
                    line: None,
                    column: None,
                    field: "(file)".into(),
                    reason: format!("read: {e}"),
                }],
                warnings: Vec::new(),
            },
        }
    }

    /// [`Config::load`] with the process environment, its errors only.
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        Self::load(text, file, &Options::process())
            .map(|l| l.config)
            .map_err(Report::into_config_errors)
    }

    /// The demo chain of `deploy/idp.yaml` with `issuer` and a key directory of the caller's
    /// choosing: what the e2e tests and `baton demo` start from. Read as `demo: true` (its inline
    /// secrets are the demo's) and without the environment, so a `SERVICE_A_SECRET` set in the
    /// shell does not change the demo.
    pub fn demo(issuer: &str, keys_dir: impl Into<PathBuf>) -> Self {
        let opts = Options {
            allow_inline_secrets: true,
            env: &|_| None,
        };
        let mut cfg = Self::load(
            include_str!("../../deploy/idp.yaml"),
            "deploy/idp.yaml",
            &opts,
        )
        .map(|l| l.config)
        .expect("deploy/idp.yaml is valid (tested)");
        cfg.issuer = issuer.trim_end_matches('/').to_owned();
        cfg.keys.dir = keys_dir.into();
        cfg
    }

    /// The edge `client → target`, if configured.
    pub fn edge(&self, client: &str, target: &str) -> Option<&Edge> {
        self.grants
            .iter()
            .find(|e| e.client == client && e.target == target)
    }

    /// The longest lifetime any token may have: how long a retired key stays published.
    pub fn max_token_lifetime(&self) -> u64 {
        let l = &self.lifetimes;
        let edges = self.grants.iter().filter_map(|e| e.max_lifetime);
        let txn = self.txn_tokens.as_ref().map(|t| t.lifetime);
        edges
            .chain([l.access, l.id])
            .chain(txn)
            .max()
            .unwrap_or(l.access)
    }
}

/// Reads and validates `text`: the config when it could be read (whole only when the report has
/// no error), and everything found.
fn read(text: &str, file: &str, opts: &Options, missing: Missing) -> (Option<Config>, Report) {
    let mut p = Problems::new(file);
    let Some(doc) = Document::parse(text, &mut p) else {
        return (None, p.report(|_| None, missing));
    };
    let config = doc
        .read::<RawConfig>(&mut p)
        .map(|raw| validate(raw, file, opts, &mut p));
    (config, p.report(|f| doc.position(f), missing))
}

#[cfg(test)]
mod tests;
