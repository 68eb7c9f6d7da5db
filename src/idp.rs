//! `baton-idp`: a minimal, standards-true OpenID Provider and the token-exchange policy.
//!
//! [`handle`] routes one request to its endpoint's handler without a socket; [`serve`] runs it
//! on a bound listener through the shared accept loop. The modules form layers: a module uses
//! modules of its own layer and of the layers before it, never of a later one.
//!
//! 1. Primitives and stores. [`config`]: `idp.yaml` → validated [`Config`]; [`claims`]: how edge
//!    claims merge and when two edges conflict; [`policy`]: the pure exchange policy; [`keys`]: signing keys and rotation; [`store`]: what the IdP
//!    remembers (codes, refresh families, sessions, sign-out confirmations, revocations,
//!    replay sets); [`revocation`]: revocation by lineage; [`throttle`]: login failure
//!    counters; [`password`]: the bounded argon2 pool; [`totp`]: RFC 6238 codes; [`seal`]: the
//!    sealing key; [`pending`]: the authorization request sealed into the login pages;
//!    [`browser`]: login CSRF and device cookies; [`authn`]: sessions and what a sign-in proved;
//!    [`pages`]: the forms, sign-out and error pages (drawn by [`crate::page`]) and
//!    redirects; [`form`]: form bodies; [`errors`]: every refusal and its response;
//!    [`metrics`]: counters for `/metrics` and tests.
//! 2. [`state`]: [`Idp`], which holds them all.
//! 3. Shared steps: [`session`]: the browser's login session; [`client_auth`]: RFC 6749 §2.3,
//!    RFC 7523; [`verify`]: our own tokens presented back; [`targets`]: audiences and RFC 8707
//!    resources; [`issue`]: claims, signing, user tokens; [`family`]: refresh-token rotation;
//!    [`code`]: authorization codes.
//! 4. Endpoints: [`discovery`] (RFC 8414, JWKS), [`authorize`] (code + PKCE), [`login`] (the
//!    password and one-time-code forms), [`token`] (per grant, RFC 8693 exchange among them),
//!    [`introspect`] (RFC 7662), [`userinfo`] (OIDC Core §5.3), [`logout`] (RP-Initiated
//!    Logout 1.0).
//! 5. This router, and [`cli`]: the `baton-idp` command line.

pub mod authn;
pub mod authorize;
pub mod browser;
pub mod claims;
pub mod cli;
pub mod client_auth;
pub mod code;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod family;
pub mod foreign;
pub mod form;
pub mod introspect;
pub mod issue;
pub mod keys;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod nonce;
pub mod pages;
pub mod password;
pub mod pending;
pub mod policy;
pub mod revocation;
pub mod seal;
pub mod session;
pub mod state;
pub mod store;
pub mod targets;
pub mod throttle;
pub mod token;
pub mod totp;
pub mod userinfo;
pub mod verify;

pub use config::Config;
pub use form::MAX_FORM_BYTES;
pub use state::{Idp, IdpError, keys_in_db, rotate_in_db, rotate_on_disk};

use crate::http::{Body, BoxError, text};
use crate::jwt::unix_now;
use crate::server::{self, Limits};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, instrument, warn};

/// Listener limits: the form endpoints read at most [`MAX_FORM_BYTES`].
pub fn limits() -> Limits {
    Limits {
        max_body_bytes: MAX_FORM_BYTES,
        ..Limits::default()
    }
}

/// Serves the IdP on an already bound `listener` until `shutdown` resolves, then drains.
/// Every 10 s the key manifest is checked for a rotation made by another process; the store's
/// upkeep (database probe, revocations copy, sweep) runs alongside.
pub async fn serve(idp: Arc<Idp>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let watcher = {
        let idp = idp.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Err(e) = idp.reload_keys().await {
                    warn!(error = %e, "key manifest check failed");
                }
            }
        })
    };
    let upkeep = {
        let idp = idp.clone();
        tokio::spawn(async move { idp.store.maintain().await })
    };
    let handler = move |mut req: Request<hyper::body::Incoming>, conn: server::ConnInfo| {
        let idp = idp.clone();
        req.extensions_mut().insert(throttle::Peer(conn.peer.ip()));
        async move { handle(&idp, req).await }
    };
    let drained = server::serve(listener, limits(), handler, shutdown).await;
    watcher.abort();
    upkeep.abort();
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

/// Routes one request to its endpoint; socket-free so tests can call it directly.
#[instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle<B>(idp: &Idp, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let now = unix_now();
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (
            Method::GET,
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server",
        ) => discovery::discovery(idp),
        (Method::GET, "/jwks") => discovery::jwks(idp),
        (Method::GET, "/authorize") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            authorize::authorize(idp, &query, req.headers(), now).await
        }
        (Method::GET, "/readyz") => match idp.ready() {
            true => text(StatusCode::OK, "ready\n"),
            false => text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
        },
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::POST, "/login") => login::login(idp, req, now).await,
        (Method::POST, "/otp") => login::otp(idp, req, now).await,
        (Method::POST, "/token") => token::token(idp, req, now).await,
        (Method::POST, "/introspect") => introspect::introspect(idp, req, now).await,
        (Method::GET | Method::POST, "/end_session") => logout::end_session(idp, req, now).await,
        (Method::GET | Method::POST, "/userinfo") => userinfo::userinfo(idp, req.headers(), now),
        (_, "/token" | "/introspect" | "/login" | "/otp") => {
            errors::OAuthError::request("use POST").response()
        }
        (
            _,
            "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
            | "/jwks"
            | "/authorize"
            | "/end_session"
            | "/readyz"
            | "/healthz",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[cfg(test)]
mod tests;
