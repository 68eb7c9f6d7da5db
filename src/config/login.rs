//! The `login:` section of `sidecar.yaml`: browser sign-in at the edge (routes marked
//! `login: browser`). The sidecar signs users in as its own OAuth client, `outbound.client`:
//! the access token it gets is addressed to that client id, so the inbound verifier accepts it
//! and the outbound side may exchange it down the chain.
//!
//! ```yaml
//! login:
//!   external_url: https://a.example     # how browsers reach this inbound listener
//!   scope: openid profile               # openid is always asked for
//!   cookie_key_file: /run/secrets/baton/cookie-key   # ≥ 32 bytes; else a fresh key per start
//!   session_ttl: 8h
//!   max_sessions: 10000
//!   refresh_skew: 30s
//!   post_logout_path: /              # where the IdP sends the browser after sign-out
//! ```

use super::findings::Problems;
use super::values::{positive_duration, read_file};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Reserved path prefix on the inbound listener while `login:` is configured.
pub const RESERVED_PREFIX: &str = "/_baton/";
/// The redirect URI path the sidecar registers at the IdP.
pub const CALLBACK_PATH: &str = "/_baton/callback";
/// Ends the browser session.
pub const LOGOUT_PATH: &str = "/_baton/logout";

/// Validated `login:`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// Scheme, host and optional port browsers use to reach the inbound listener, no path.
    pub external_url: Url,
    /// Space-separated scopes; always contains `openid`.
    pub scope: String,
    /// 32-byte AEAD key for cookies (SHA-256 of the key file), or `None`: generated at start.
    pub cookie_key: Option<[u8; 32]>,
    /// How long a session lives without a new sign-in.
    pub session_ttl: Duration,
    /// Most sessions kept; the least recently used are dropped beyond it.
    pub max_sessions: u64,
    /// Refresh the access token this long before it expires.
    pub refresh_skew: Duration,
    /// Local path the IdP sends the browser to after sign-out (RP-Initiated Logout 1.0 §3).
    pub post_logout_path: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("external_url", &self.external_url.as_str())
            .field("scope", &self.scope)
            .field("cookie_key", &self.cookie_key.map(|_| "[redacted]"))
            .field("session_ttl", &self.session_ttl)
            .field("max_sessions", &self.max_sessions)
            .field("refresh_skew", &self.refresh_skew)
            .field("post_logout_path", &self.post_logout_path)
            .finish()
    }
}

impl Login {
    /// The redirect URI: `external_url` + [`CALLBACK_PATH`].
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}{CALLBACK_PATH}",
            self.external_url.as_str().trim_end_matches('/')
        )
    }

    /// The `post_logout_redirect_uri` to register at the IdP: `external_url` +
    /// `post_logout_path`.
    pub fn post_logout_redirect_uri(&self) -> String {
        format!(
            "{}{}",
            self.external_url.as_str().trim_end_matches('/'),
            self.post_logout_path
        )
    }

    /// Cookies get `Secure` when browsers reach the sidecar over https.
    pub fn secure(&self) -> bool {
        self.external_url.scheme() == "https"
    }
}

/// `login:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    external_url: Option<String>,
    scope: Option<String>,
    cookie_key_file: Option<PathBuf>,
    session_ttl: Option<String>,
    max_sessions: Option<u64>,
    refresh_skew: Option<String>,
    post_logout_path: Option<String>,
}

/// Validates `login:`, recording problems as `login.field`.
pub fn validate(raw: RawLogin, p: &mut Problems) -> Login {
    let mut scope: Vec<&str> = raw
        .scope
        .as_deref()
        .unwrap_or("openid")
        .split_ascii_whitespace()
        .collect();
    if !scope.contains(&"openid") {
        scope.insert(0, "openid");
    }
    let scope = scope.join(" ");
    let mut duration = |field: &str, raw: Option<String>, default: Duration| {
        positive_duration(p, &format!("login.{field}"), raw.as_deref(), default)
    };
    let session_ttl = duration(
        "session_ttl",
        raw.session_ttl,
        Duration::from_secs(8 * 3600),
    );
    let refresh_skew = duration("refresh_skew", raw.refresh_skew, Duration::from_secs(30));
    let max_sessions = raw.max_sessions.unwrap_or(10_000);
    if max_sessions == 0 {
        p.push("login.max_sessions", "must be at least 1");
    }
    Login {
        external_url: external_url(p, raw.external_url.as_deref()),
        post_logout_path: post_logout_path(p, raw.post_logout_path),
        scope,
        cookie_key: raw.cookie_key_file.and_then(|path| cookie_key(p, &path)),
        session_ttl,
        max_sessions,
        refresh_skew,
    }
}

/// Scheme, host and port only: the callback and logout paths are appended to it.
fn external_url(p: &mut Problems, raw: Option<&str>) -> Url {
    let field = "login.external_url";
    let reason = match raw.map(Url::parse) {
        Some(Ok(u))
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none() =>
        {
            return u;
        }
        None => "required: the URL browsers use to reach this sidecar, e.g. https://a.example",
        Some(_) => "must be an http(s) URL with a host and no path, query or fragment",
    };
    p.push(field, reason);
    Url::parse("http://127.0.0.1/").expect("a valid literal URL")
}

/// The cookie key: SHA-256 of a file of at least 32 random bytes.
fn cookie_key(p: &mut Problems, path: &std::path::Path) -> Option<[u8; 32]> {
    let field = "login.cookie_key_file";
    let bytes = read_file(p, field, path)?;
    if bytes.len() < 32 {
        p.push(
            field,
            "must hold at least 32 random bytes, e.g. `head -c 32 /dev/urandom > key`",
        );
        return None;
    }
    Some(crate::secret::sha256(&[&bytes]))
}

/// A local path on this host, outside the reserved prefix: never another site (`//evil`).
fn post_logout_path(p: &mut Problems, raw: Option<String>) -> String {
    let path = raw.unwrap_or_else(|| "/".to_owned());
    let b = path.as_bytes();
    if b.first() != Some(&b'/')
        || matches!(b.get(1), Some(b'/' | b'\\'))
        || path.starts_with(RESERVED_PREFIX)
        || !b.iter().all(|c| c.is_ascii_graphic())
    {
        p.push(
            "login.post_logout_path",
            "must be a local path like / or /signed-out, outside /_baton/",
        );
    }
    path
}
