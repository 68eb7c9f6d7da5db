//! `baton-idp`: a minimal, standards-true OpenID Provider and the token-exchange policy.
//!
//! [`Idp`] holds the validated config, the key ring and the server-side stores (login failures,
//! codes, refresh tokens, revocations, client-assertion `jti`s). [`handle`] routes one request
//! without a socket; [`serve`] runs it on a bound listener through the shared accept loop.
//!
//! - [`config`]: `idp.yaml` → validated [`Config`]; [`keys`]: key store and rotation.
//! - [`discovery`]: RFC 8414 / OIDC metadata, JWKS. [`client_auth`]: RFC 6749 §2.3, RFC 7523.
//! - [`token`]: `/token` per grant; [`exchange`]: RFC 8693; [`policy`]: the pure exchange policy;
//!   [`claims`]: how edge claims merge, and when two edges conflict.
//! - [`authorize`], [`login`]: code + PKCE, the login and one-time-code forms; [`session`]:
//!   login sessions; [`totp`]: RFC 6238 codes. [`introspect`]: RFC 7662. [`refresh`]: rotation
//!   and reuse detection (RFC 9700 §4.14.2); [`logout`]: RP-Initiated Logout 1.0;
//!   [`revocation`]: what sign-out, refresh reuse and code replay revoke, down every exchange.
//! - Login abuse: [`pending`]: the request sealed into the login page ([`seal`]: its key);
//!   [`browser`]: login CSRF, device cookies; [`throttle`]: failure counters; [`password`]: the
//!   bounded argon2 pool.
//! - [`userinfo`]: OIDC Core §5.3. [`errors`]: the OAuth error type; [`metrics`]: counters for `/metrics` and tests.

pub mod authorize;
pub mod browser;
pub mod claims;
pub mod cli;
pub mod client_auth;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod exchange;
pub mod introspect;
pub mod keys;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod password;
pub mod pending;
pub mod policy;
pub mod refresh;
pub mod revocation;
pub mod seal;
pub mod session;
pub mod throttle;
pub mod token;
pub mod totp;
pub mod userinfo;

pub use config::Config;

use crate::http::{Body, BoxError, text};
use crate::jwt::unix_now;
use crate::server::{self, Limits};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use moka::sync::Cache;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, instrument, warn};

/// Largest body accepted at `/token`, `/introspect` and `/login`.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// Why the IdP could not start or rotate keys.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The key store failed.
    #[error("signing keys: {0}")]
    Keys(#[from] keys::StoreError),
    /// The sealing key could not be read or made.
    #[error(transparent)]
    Seal(#[from] seal::KeyError),
}

/// Server-side state with bounded lifetimes.
pub(crate) struct Stores {
    pub(crate) logouts: Cache<String, Arc<logout::PendingLogout>>,
    pub(crate) codes: Cache<[u8; 32], Arc<Mutex<token::CodeGrant>>>,
    pub(crate) refresh: Cache<[u8; 32], Arc<refresh::RefreshGrant>>,
    /// Revoked sessions and grant families (what sign-out, refresh reuse and code replay end).
    pub(crate) revocations: Box<dyn revocation::Revocations>,
    pub(crate) assertion_jtis: Cache<String, u64>,
    pub(crate) sessions: Cache<[u8; 32], session::Session>,
    /// `user:step` of one-time codes already used (RFC 6238 §5.2: once per step).
    pub(crate) otp_used: Cache<String, ()>,
}

/// Expires a client-assertion `jti` when the assertion itself expires (value = its `exp`).
struct UntilExp;

impl moka::Expiry<String, u64> for UntilExp {
    fn expire_after_create(
        &self,
        _k: &String,
        exp: &u64,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            exp.saturating_sub(unix_now()) + crate::jwt::MAX_LEEWAY,
        ))
    }
}

/// A running OpenID Provider.
pub struct Idp {
    pub(crate) config: Config,
    store: keys::Store,
    ring: RwLock<Arc<keys::KeyRing>>,
    pub(crate) state: Stores,
    pub(crate) metrics: metrics::Metrics,
    /// Seals pending requests and device cookies into the browser.
    pub(crate) sealer: crate::http::cookie::Sealer,
    /// The bounded password-check pool.
    pub(crate) passwords: password::Checker,
    /// Failure counters of the login pages.
    pub(crate) throttle: throttle::Throttle,
}

impl Idp {
    /// Loads (or on first start creates) the signing keys and builds the stores.
    pub fn new(config: Config) -> Result<Self, IdpError> {
        let max = config.max_token_lifetime();
        let store = keys::Store::new(&config.keys.dir, config.keys.algorithm, max);
        let ring = store.load_or_create()?;
        let l = config.lifetimes;
        let ttl = |s: u64| Duration::from_secs(s.max(1));
        let state = Stores {
            logouts: logout::store(),
            codes: Cache::builder()
                .max_capacity(login::CODES_BUDGET)
                .weigher(|_, grant| login::code_weight(grant))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(ttl(l.code + l.access.max(l.id)))
                .build(),
            refresh: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl(l.refresh))
                .build(),
            revocations: Box::new(revocation::Memory::new(
                l.sign_in + crate::jwt::MAX_LEEWAY,
                revocation::PER_USER,
            )),
            assertion_jtis: Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(UntilExp)
                .build(),
            sessions: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl(l.session))
                .build(),
            otp_used: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl(4 * totp::STEP))
                .build(),
        };
        let sealer = seal::sealer(&config.keys.dir)?;
        let hashes: Vec<&str> = config
            .users
            .values()
            .map(|u| u.password_hash.expose())
            .collect();
        let lim = config.login;
        let passwords = password::Checker::new(&hashes, lim.hash_workers, lim.hash_queue);
        info!(
            workers = lim.hash_workers,
            queue = lim.hash_queue,
            memory_mib = passwords.memory_bound() >> 20,
            "password checks bounded"
        );
        let throttle = throttle::Throttle::new(lim.throttle, config.users.len());
        Ok(Self {
            config,
            store,
            ring: RwLock::new(Arc::new(ring)),
            state,
            metrics: metrics::Metrics::default(),
            sealer,
            passwords,
            throttle,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current key ring (signer, verification keys, JWKS).
    pub fn keys(&self) -> Arc<keys::KeyRing> {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_ring(&self, ring: keys::KeyRing) {
        let mut w = match self.ring.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        *w = Arc::new(ring);
    }

    /// Rotates the keys on disk (next → active, active → retired, new next) and uses them.
    pub fn rotate_keys(&self) -> Result<(), IdpError> {
        let ring = self.store.rotate(unix_now())?;
        info!(kid = %ring.signer.kid(), "signing key rotated");
        self.set_ring(ring);
        Ok(())
    }

    /// Re-reads the manifest and switches keys if another process (`baton-idp keys rotate`)
    /// changed it. Returns whether keys changed.
    pub fn reload_keys(&self) -> Result<bool, IdpError> {
        match self.store.reload_if_changed(&self.keys())? {
            Some(ring) => {
                info!(kid = %ring.signer.kid(), "signing keys reloaded");
                self.set_ring(ring);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Successful token exchanges so far: lets tests assert "exactly one exchange happened".
    pub fn exchanges(&self) -> u64 {
        self.metrics.exchanges()
    }

    /// Token requests so far, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.metrics.token_requests()
    }
}

/// Rotates the keys of the store `cfg` names, as `baton-idp keys rotate` does; a running IdP
/// picks the change up on SIGHUP or its periodic manifest check.
pub fn rotate_on_disk(cfg: &Config) -> Result<String, IdpError> {
    let store = keys::Store::new(&cfg.keys.dir, cfg.keys.algorithm, cfg.max_token_lifetime());
    Ok(store.rotate(unix_now())?.signer.kid().to_owned())
}

/// Listener limits: the token endpoint reads at most [`MAX_FORM_BYTES`].
pub fn limits() -> Limits {
    Limits {
        max_body_bytes: MAX_FORM_BYTES,
        ..Limits::default()
    }
}

/// Serves the IdP on an already bound `listener` until `shutdown` resolves, then drains.
/// Every 10 s the key manifest is checked for a rotation made by another process.
pub async fn serve(idp: Arc<Idp>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let watcher = {
        let idp = idp.clone();
        tokio::spawn(async move {
            let mut tick = crate::timer::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Err(e) = idp.reload_keys() {
                    warn!(error = %e, "key manifest check failed");
                }
            }
        })
    };
    let handler = move |mut req: Request<hyper::body::Incoming>, conn: server::ConnInfo| {
        let idp = idp.clone();
        req.extensions_mut().insert(throttle::Peer(conn.peer.ip()));
        async move { handle(&idp, req).await }
    };
    let drained = server::serve(listener, limits(), handler, shutdown).await;
    watcher.abort();
    info!(?drained, "idp stopped");
}

/// Serves the operator endpoints ([`handle_admin`]) on an already bound `listener`, the
/// config's `admin_listen` (loopback unless configured), until `shutdown` resolves. They are
/// kept off the public listener: the counters of failed sign-ins are for the operator.
pub async fn serve_admin(idp: Arc<Idp>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let limits = Limits {
        request_timeout: Duration::from_secs(5),
        max_connections: 64,
        max_body_bytes: 0,
        ..Limits::default()
    };
    let handler = move |req: Request<hyper::body::Incoming>, _conn: server::ConnInfo| {
        let idp = idp.clone();
        async move { handle_admin(&idp, &req) }
    };
    server::serve(listener, limits, handler, shutdown).await;
}

/// Answers one operator request: `GET /metrics` (Prometheus text).
pub fn handle_admin<B>(idp: &Idp, req: &Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => idp.metrics.render(),
        (_, "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Routes one request; socket-free so tests can call it directly.
#[instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle<B>(idp: &Idp, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (
            Method::GET,
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server",
        ) => discovery::discovery(idp),
        (Method::GET, "/jwks") => discovery::jwks(idp),
        (Method::GET, "/authorize") => authorize::authorize(idp, &req, unix_now()),
        (Method::POST, "/login") => login::login(idp, req, unix_now()).await,
        (Method::POST, "/otp") => login::otp(idp, req, unix_now()).await,
        (Method::POST, "/token") => token::token(idp, req, unix_now()).await,
        (Method::POST, "/introspect") => introspect::introspect(idp, req, unix_now()).await,
        (Method::GET | Method::POST, "/end_session") => {
            logout::end_session(idp, req, unix_now()).await
        }
        (Method::GET | Method::POST, "/userinfo") => {
            userinfo::userinfo(idp, req.headers(), unix_now())
        }
        (_, "/token" | "/introspect" | "/login" | "/otp") => {
            errors::OAuthError::request("use POST").response()
        }
        (
            _,
            "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
            | "/jwks"
            | "/authorize"
            | "/end_session",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Random URL-safe string of `n` bytes of entropy, for codes, refresh tokens, `jti`, CSRF.
pub(crate) fn random(n: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    async fn call(idp: &Idp, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
        let rsp = handle(idp, req).await;
        let (parts, body) = rsp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn idp() -> Idp {
        let dir = std::env::temp_dir().join(format!(
            "baton-idp-unit-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        Idp::new(Config::demo("http://idp.test", dir)).expect("idp")
    }

    #[tokio::test]
    async fn login_page_is_plain_accessible_and_bound_to_the_browser() {
        let idp = idp();
        let uri = "/authorize?response_type=code&client_id=service-a&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=%3Cscript%3E";
        let req = Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, headers, html) = call(&idp, req).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(r#"<label for="username">"#)
                && html.contains(r#"<label for="password">"#)
        );
        assert!(
            !html.contains("<script") && !html.contains("src="),
            "no external assets, no echo"
        );
        assert_eq!(headers["cache-control"], "no-store");
        // Under `no-referrer` a browser's POST would carry `Origin: null`, refused as cross-site.
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .is_ok_and(|c| c.contains("default-src 'none'"))
        );
        let cookie = headers["set-cookie"].to_str().expect("ascii");
        assert!(cookie.starts_with("baton-idp-login="), "{cookie}");

        // The form without the browser's pre-login cookie never reaches the password check.
        let at = html
            .find(r#"name="request" value=""#)
            .expect("request field")
            + 22;
        let sealed = &html[at..at + html[at..].find('"').expect("quote")];
        let body = format!("request={sealed}&username=alice&password=wonderland-demo");
        let req = Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let (status, headers, _) = call(&idp, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(headers.get("location").is_none());
        assert!(headers.get("set-cookie").is_none());
    }

    #[test]
    fn a_rotation_on_disk_is_picked_up_by_the_running_idp() {
        let idp = idp();
        let before = idp.keys().signer.kid().to_owned();
        assert!(!idp.reload_keys().expect("reload"), "nothing changed yet");
        let kid = rotate_on_disk(idp.config()).expect("rotate");
        assert_ne!(kid, before);
        assert!(idp.reload_keys().expect("reload"));
        assert_eq!(idp.keys().signer.kid(), kid);
        assert!(
            idp.keys().verify.contains(&before),
            "the retired key stays published"
        );
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused_plainly() {
        let idp = idp();
        let get = |p: &str| {
            Request::get(p)
                .body(Full::new(Bytes::new()))
                .expect("request")
        };
        assert_eq!(call(&idp, get("/nope")).await.0, StatusCode::NOT_FOUND);
        let (status, _, body) = call(&idp, get("/token")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("invalid_request"));
    }
}
