//! `idp.yaml` → validated [`Config`]: clients, users, exchange edges, resources, lifetimes.
//!
//! The file is read by the sidecar config's reader (unknown fields and values of the wrong type
//! are reported, not fatal); validation collects every problem with the file, the line, the
//! field path and the reason ([`Report`]), so `baton-idp` refuses to start with all of them
//! listed at once, and `baton-idp check` lists them with the warnings.
//!
//! Secrets (client secrets, password hashes, TOTP secrets) come from files or environment
//! variables; inline and published example values only with `demo: true` (`secrets`).

mod check;
mod client;
mod secrets;

use crate::config::yaml::Document;
use crate::config::{ConfigErrors, Missing, Problems};
pub use crate::config::{Finding, Report};
use crate::jwt::{Algorithm, Claims, keys::KeySet};
use crate::secret::Secret;
pub use client::absolute_without_fragment;
use client::{RawClient, client};
use secrets::{Sources, Spec, warn_demo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

// === login: abuse limits of the login pages ===

/// How many password checks run and wait at once, and the failure counters' rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Password checks running at once; each holds its hash's memory (19 MiB by default).
    pub hash_workers: usize,
    /// Sign-ins waiting for a check; more are answered 503 with `Retry-After`.
    pub hash_queue: usize,
    /// The failure counters (not in `idp.yaml`: the defaults are documented and tested).
    pub throttle: super::throttle::Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    #[serde(default = "default_hash_workers")]
    hash_workers: usize,
    #[serde(default = "default_hash_queue")]
    hash_queue: usize,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            hash_workers: default_hash_workers(),
            hash_queue: default_hash_queue(),
        }
    }
}

/// One check per core, at most four: the memory bound stays 4 × 19 MiB.
fn default_hash_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

fn default_hash_queue() -> usize {
    16
}

fn login_limits(raw: RawLogin, p: &mut Problems) -> LoginLimits {
    if !(1..=64).contains(&raw.hash_workers) {
        p.push("login.hash_workers", "must be between 1 and 64");
    }
    if raw.hash_queue > 4096 {
        p.push("login.hash_queue", "must be at most 4096");
    }
    LoginLimits {
        hash_workers: raw.hash_workers.clamp(1, 64),
        hash_queue: raw.hash_queue.min(4096),
        throttle: super::throttle::Limits::default(),
    }
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
}

/// A registered client.
#[derive(Clone)]
pub struct Client {
    /// Client id, also the service's audience.
    pub id: String,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Accept inline secrets and the examples' published values (with a warning each).
    #[serde(default)]
    demo: bool,
    #[serde(default)]
    issuer: String,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_admin_listen")]
    admin_listen: String,
    keys: Option<RawKeys>,
    #[serde(default)]
    lifetimes: RawLifetimes,
    #[serde(default = "default_depth")]
    max_chain_depth: usize,
    #[serde(default)]
    clients: Vec<RawClient>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    grants: Vec<RawEdge>,
    #[serde(default)]
    resources: BTreeMap<String, String>,
    #[serde(default = "default_acr")]
    acr: BTreeMap<String, Vec<Factor>>,
    #[serde(default)]
    login: RawLogin,
}

fn default_acr() -> BTreeMap<String, Vec<Factor>> {
    BTreeMap::from([
        ("pwd".into(), vec![Factor::Pwd]),
        ("mfa".into(), vec![Factor::Pwd, Factor::Otp]),
    ])
}

fn default_listen() -> String {
    "127.0.0.1:9000".into()
}

fn default_admin_listen() -> String {
    "127.0.0.1:9001".into()
}

fn default_depth() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    dir: PathBuf,
    #[serde(default = "default_alg")]
    algorithm: String,
}

fn default_alg() -> String {
    "ES256".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLifetimes {
    access: u64,
    id: u64,
    code: u64,
    refresh: u64,
    session: u64,
    sign_in: u64,
}

impl Default for RawLifetimes {
    fn default() -> Self {
        Self {
            access: 300,
            id: 300,
            code: 60,
            refresh: 86_400,
            session: 28_800,
            sign_in: 86_400,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    password_hash: Option<String>,
    password_hash_file: Option<PathBuf>,
    password_hash_env: Option<String>,
    #[serde(default)]
    claims: Claims,
    #[serde(default)]
    scope: String,
    totp_secret: Option<String>,
    totp_secret_file: Option<PathBuf>,
    totp_secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    client: String,
    target: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: Claims,
    max_lifetime: Option<u64>,
    #[serde(default)]
    scope_beyond_subject: bool,
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
    /// with the process environment; every problem, with its line, and the warnings.
    pub fn load(text: &str, file: &str, opts: &Options) -> Result<Loaded, Report> {
        let mut p = Problems::new(file);
        let Some(doc) = Document::parse(text, &mut p) else {
            return Err(p.report(|_| None, Missing::Error));
        };
        let config = doc
            .read::<RawConfig>(&mut p)
            .map(|raw| validate(raw, file, opts, &mut p));
        let report = p.report(|f| doc.position(f), Missing::Error);
        match config {
            Some(config) if report.errors.is_empty() => Ok(Loaded {
                config,
                warnings: report.warnings,
            }),
            _ => Err(report),
        }
    }

    /// [`Config::load`] with the process environment, errors only (without their lines).
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
        edges.chain([l.access, l.id]).max().unwrap_or(l.access)
    }
}

/// Validates `raw` into `p`; the config is whole when `p` holds no error.
fn validate(raw: RawConfig, file: &str, opts: &Options, p: &mut Problems) -> Config {
    let base = Path::new(file)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let sources = Sources {
        base: &base,
        env: opts.env,
        allow_demo: raw.demo || opts.allow_inline_secrets,
    };
    let issuer = raw.issuer.trim_end_matches('/').to_owned();
    match url::Url::parse(&issuer) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => p.push(
            "issuer",
            "must be an absolute http(s) URL without query or fragment",
        ),
    }
    let listen = raw.listen.parse().unwrap_or_else(|_| {
        p.push("listen", "must be an address like 127.0.0.1:9000");
        SocketAddr::from(([127, 0, 0, 1], 9000))
    });
    let admin_listen = raw.admin_listen.parse().unwrap_or_else(|_| {
        p.push("admin_listen", "must be an address like 127.0.0.1:9001");
        SocketAddr::from(([127, 0, 0, 1], 9001))
    });
    let keys = raw.keys.unwrap_or_else(|| {
        p.push(
            "keys",
            "required: where the signing keys live, e.g. {dir: keys}",
        );
        RawKeys {
            dir: PathBuf::new(),
            algorithm: default_alg(),
        }
    });
    let algorithm = match keys.algorithm.as_str() {
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        _ => {
            p.push("keys.algorithm", "must be ES256 or RS256");
            Algorithm::ES256
        }
    };
    let l = &raw.lifetimes;
    for (name, v, max) in [
        ("access", l.access, 86_400),
        ("id", l.id, 86_400),
        ("code", l.code, 600),
        ("refresh", l.refresh, 90 * 86_400),
        ("session", l.session, 30 * 86_400),
        ("sign_in", l.sign_in, 90 * 86_400),
    ] {
        if v == 0 || v > max {
            p.push(
                format!("lifetimes.{name}"),
                format!("must be between 1 and {max} seconds"),
            );
        }
    }
    if l.sign_in < l.session {
        // A session older than `sign_in` would keep handing out codes whose tokens are refused.
        p.push(
            "lifetimes.sign_in",
            "must be at least lifetimes.session: a session may not outlive the tokens it yields",
        );
    }
    if raw.max_chain_depth == 0 || raw.max_chain_depth > 32 {
        p.push("max_chain_depth", "must be between 1 and 32");
    }

    let mut clients = BTreeMap::new();
    let mut client_fields = Vec::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let f = format!("clients[{i}]");
        if let Some(client) = client(c, &f, &sources, p) {
            if clients.contains_key(&client.id) {
                p.push(format!("{f}.id"), "duplicate client id");
            }
            client_fields.push((client.id.clone(), f));
            clients.insert(client.id.clone(), client);
        }
    }

    let mut users = BTreeMap::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        let f = format!("users[{i}]");
        let (password_hash, totp_secret) = user_secrets(&u, &f, &sources, p);
        for name in u.claims.keys().filter(|k| RESERVED.contains(&k.as_str())) {
            p.push(format!("{f}.claims.{name}"), "is reserved: the IdP sets it");
        }
        if users.contains_key(&u.username) {
            p.push(format!("{f}.username"), "duplicate username");
        }
        users.insert(
            u.username.clone(),
            User {
                username: u.username,
                password_hash: Secret::new(password_hash.unwrap_or_default()),
                claims: u.claims,
                scope: u
                    .scope
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
                totp_secret: totp_secret.map(Secret::new),
            },
        );
    }
    for (name, factors) in &raw.acr {
        if factors.first() != Some(&Factor::Pwd) {
            p.push(
                format!("acr.{name}"),
                "must start with pwd: the password is always the first factor",
            );
        }
    }

    for (uri, aud) in &raw.resources {
        let f = format!("resources.{uri}");
        if !absolute_without_fragment(uri) {
            p.push(
                &f,
                "must be an absolute URI without a fragment (RFC 8707 §2)",
            );
        }
        if !clients.contains_key(aud) {
            p.push(&f, format!("audience {aud} is not a configured client"));
        }
    }

    let mut grants: Vec<Edge> = Vec::new();
    for (i, e) in raw.grants.into_iter().enumerate() {
        let f = format!("grants[{i}]");
        if !clients.contains_key(&e.client) {
            p.push(
                format!("{f}.client"),
                format!("unknown client {}", e.client),
            );
        }
        if !clients.contains_key(&e.target) {
            p.push(
                format!("{f}.target"),
                format!("unknown target {}: targets are client ids", e.target),
            );
        }
        for name in e.claims.keys().filter(|k| RESERVED.contains(&k.as_str())) {
            p.push(format!("{f}.claims.{name}"), "is reserved: the IdP sets it");
        }
        if e.max_lifetime.is_some_and(|m| m == 0 || m > 30 * 86_400) {
            p.push(
                format!("{f}.max_lifetime"),
                "must be between 1 and 2592000 seconds",
            );
        }
        if grants
            .iter()
            .any(|g| g.client == e.client && g.target == e.target)
        {
            p.push(&f, format!("duplicate edge {} → {}", e.client, e.target));
        }
        for (j, other) in grants.iter().enumerate() {
            if other.target == e.target
                && let Some(path) = super::claims::conflict(&other.claims, &e.claims)
            {
                p.push(
                    format!("{f}.claims.{path}"),
                    format!(
                        "grants[{j}] also reaches {} and sets a different value",
                        e.target
                    ),
                );
            }
        }
        grants.push(Edge {
            client: e.client,
            target: e.target,
            scopes: e.scopes,
            claims: e.claims,
            max_lifetime: e.max_lifetime,
            scope_beyond_subject: e.scope_beyond_subject,
        });
    }

    let login = login_limits(raw.login, p);
    let cfg = Config {
        issuer,
        listen,
        admin_listen,
        keys: KeysConfig {
            dir: base.join(keys.dir),
            algorithm,
        },
        lifetimes: Lifetimes {
            access: l.access,
            id: l.id,
            code: l.code,
            refresh: l.refresh,
            session: l.session,
            sign_in: l.sign_in,
        },
        max_chain_depth: raw.max_chain_depth,
        clients,
        users,
        grants,
        resources: raw.resources,
        acr: raw.acr,
        login,
    };
    for (id, f) in &client_fields {
        if let Some(aud) = &cfg.clients[id].default_audience {
            if !cfg.clients.contains_key(aud) {
                p.push(
                    format!("{f}.default_audience"),
                    format!("{aud} is not a configured client"),
                );
            } else if cfg.edge(id, aud).is_none() {
                p.push(
                    format!("{f}.default_audience"),
                    format!("no grants edge {id} → {aud}: a token for it would be refused"),
                );
            }
        }
    }
    check::warnings(&cfg, &client_fields, p);
    cfg
}

/// A user's password hash (required, argon2 PHC) and TOTP secret (optional, base32), each from
/// the file, the environment or inline, under the demo-material rule.
fn user_secrets(
    u: &RawUser,
    f: &str,
    sources: &Sources,
    p: &mut Problems,
) -> (Option<String>, Option<String>) {
    let hash = Spec {
        name: "password_hash",
        what: "password hash",
        make: "baton-idp hash-password",
        inline: u.password_hash.as_deref(),
        file: u.password_hash_file.as_deref(),
        env: u.password_hash_env.as_deref(),
    };
    let totp = Spec {
        name: "totp_secret",
        what: "TOTP secret",
        make: "head -c 20 /dev/urandom | base32",
        inline: u.totp_secret.as_deref(),
        file: u.totp_secret_file.as_deref(),
        env: u.totp_secret_env.as_deref(),
    };
    let mut demo = Vec::new();
    let password_hash = sources.read(f, &hash, p);
    match &password_hash {
        Some(found) if argon2::PasswordHash::new(&found.value).is_ok() => {
            sources.vet(f, &hash, found, &mut demo, p);
        }
        Some(_) => p.push(
            format!("{f}.password_hash"),
            "must be an argon2 PHC string: make one with `baton-idp hash-password`",
        ),
        None if hash.given() => {}
        None => p.push(
            f,
            "needs password_hash_file or password_hash_env (make the hash with \
             `baton-idp hash-password`)",
        ),
    }
    let totp_secret = sources.read(f, &totp, p);
    if let Some(found) = &totp_secret {
        if super::totp::decode(&found.value).is_some() {
            sources.vet(f, &totp, found, &mut demo, p);
        } else {
            p.push(
                format!("{f}.totp_secret"),
                "must be base32 of at least 16 bytes (e.g. `head -c 20 /dev/urandom | base32`)",
            );
        }
    }
    warn_demo(f, &format!("user {}", u.username), &demo, p);
    (password_hash.map(|h| h.value), totp_secret.map(|t| t.value))
}

#[cfg(test)]
mod tests;
