//! Signs a user in through an OpenID Provider's real login form (authorization code + PKCE S256),
//! the way a browser would (cookies kept, `Origin` sent): `baton login`, `baton demo` and the
//! tests use it to get a user token.

mod agent;
mod form;
mod token;

use crate::secret::{Secret, Token};
use reqwest::header::LOCATION;
use serde::Deserialize;
use url::Url;

/// What the sign-in needs: the client, its redirect URI and the user's credentials.
#[derive(Debug, Clone)]
pub struct Request {
    /// The issuer; endpoints are discovered from it.
    pub issuer: String,
    /// The confidential client the user signs in to (e.g. `service-a`).
    pub client_id: String,
    /// That client's secret (`client_secret_basic` at the token endpoint).
    pub client_secret: Secret,
    /// A redirect URI registered for the client; it is never contacted.
    pub redirect_uri: String,
    /// Space-separated scopes to ask for.
    pub scope: String,
    /// The user's name.
    pub username: String,
    /// The user's password.
    pub password: Secret,
    /// A DPoP key: the code is redeemed with a proof of it, so the tokens are bound to it
    /// (RFC 9449 §5).
    pub dpop: Option<std::sync::Arc<crate::dpop::Holder>>,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    /// The access token (RFC 9068 JWT).
    #[serde(deserialize_with = "token")]
    pub access_token: Token,
    /// The ID token, if the IdP sent one.
    #[serde(default, deserialize_with = "opt_token")]
    pub id_token: Option<Token>,
    /// The refresh token, if the IdP sent one.
    #[serde(default, deserialize_with = "opt_token")]
    pub refresh_token: Option<Token>,
    /// Lifetime of the access token in seconds.
    pub expires_in: Option<u64>,
    /// Granted scope.
    pub scope: Option<String>,
}

fn token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Token, D::Error> {
    String::deserialize(d).map(Token::new)
}

fn opt_token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Token>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(Token::new))
}

/// Why a sign-in failed. Never carries a token, code or password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The IdP could not be reached or answered unreadably.
    #[error("{step}: {source}")]
    Http {
        /// Which step failed.
        step: &'static str,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The IdP answered, but not as the flow expects.
    #[error("{step}: {reason}")]
    Flow {
        /// Which step failed.
        step: &'static str,
        /// What was wrong.
        reason: String,
    },
}

fn flow(step: &'static str, reason: impl Into<String>) -> Error {
    Error::Flow {
        step,
        reason: reason.into(),
    }
}

/// A step-up sign-in (OIDC Core §3.1.2.1): the same IdP session, a stronger `acr`.
#[derive(Debug, Clone)]
pub struct StepUp {
    /// `acr_values` to ask for, e.g. `mfa`.
    pub acr_values: String,
    /// The current ID token, sent as `id_token_hint`.
    pub id_token_hint: Token,
    /// The user's base32 TOTP secret: the one-time code is computed from it (RFC 6238).
    pub totp_secret: Secret,
}

/// What a sign-in returned, and which fields the IdP's pages asked for.
#[derive(Debug)]
pub struct Outcome {
    /// The token endpoint's answer.
    pub tokens: Tokens,
    /// The user-facing fields the IdP asked for, in order (`username`, `password`, `code`).
    pub asked: Vec<String>,
}

/// A client that keeps the IdP's session cookie between sign-ins, like one browser.
pub struct Agent {
    http: reqwest::Client,
}

/// Runs the whole flow: discovery, `/authorize`, the login form, the redirect, the code exchange.
pub async fn password_login(req: &Request) -> Result<Tokens, Error> {
    Ok(Agent::new()?.sign_in(req, None).await?.tokens)
}

/// The current RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 `secret` at `now`.
pub fn totp_code(secret: &Secret, now: u64) -> Option<String> {
    let bytes = totp_rs::Secret::Encoded(secret.expose().trim().to_uppercase())
        .to_bytes()
        .ok()?;
    let t = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        String::new(),
    );
    Some(t.generate(now))
}

/// Where a redirect answer sends the client, resolved against `base`; `None` when `rsp` is
/// not a redirect.
fn location(rsp: &reqwest::Response, base: &Url) -> Result<Option<Url>, Error> {
    if !rsp.status().is_redirection() {
        return Ok(None);
    }
    let loc = rsp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| flow("authorize", "redirect without Location"))?;
    base.join(loc)
        .map(Some)
        .map_err(|e| flow("authorize", e.to_string()))
}
