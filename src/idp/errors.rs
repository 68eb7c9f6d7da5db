//! The IdP's refusals, each type mapped to its response in one place:
//!
//! - [`OAuthError`]: the token and introspection endpoints, RFC 6749 §5.2 JSON with
//!   `Cache-Control: no-store`;
//! - [`AuthorizeError`]: an authorization request refused back at the client's redirect URI
//!   (RFC 6749 §4.1.2.1), from `/authorize` and the login pages;
//! - [`BearerError`]: `/userinfo`, RFC 6750 §3 challenges.
//!
//! Requests that cannot safely be sent back to a client get a refusal page instead
//! ([`pages::error_page`]). Descriptions never carry token content.

use super::pages;
use crate::http::{Body, json};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

/// An RFC 6749 §5.2 / RFC 8693 §2.2.2 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request, or a bad subject/actor token (RFC 8693 §2.2.2 MUST).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed; `basic` adds `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    #[error("invalid_client: {description}")]
    InvalidClient {
        /// What failed.
        description: String,
        /// Whether the client tried HTTP Basic.
        basic: bool,
    },
    /// Bad, expired, reused or mismatched code or refresh token.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client may not use this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// Unknown grant type.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Scope not allowed.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// Audience or resource refused (RFC 8707 §2, RFC 8693 §2.2.2).
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// A DPoP proof is missing, invalid, replayed or from the wrong key (RFC 9449 §5).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// The proof lacks a current server nonce (RFC 9449 §8): the response's `DPoP-Nonce` has
    /// the one to use.
    #[error("use_dpop_nonce")]
    UseDpopNonce,
    /// Our fault; details are logged, not sent.
    #[error("server_error")]
    Server,
    /// The shared store cannot be reached: 503 with `Retry-After`.
    #[error("temporarily_unavailable")]
    Unavailable,
}

impl OAuthError {
    /// `invalid_request` with a description.
    pub fn request(d: impl Into<String>) -> Self {
        Self::InvalidRequest(d.into())
    }

    /// `invalid_client` with a description.
    pub fn client(d: impl Into<String>, basic: bool) -> Self {
        Self::InvalidClient {
            description: d.into(),
            basic,
        }
    }

    /// The RFC 6749 §5.2 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::Server => "server_error",
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    /// The JSON response: 401 for `invalid_client`, 500 for `server_error`, else 400.
    pub fn response(&self) -> Response<Body> {
        let (status, description) = match self {
            Self::InvalidClient { description, .. } => {
                (StatusCode::UNAUTHORIZED, Some(description.as_str()))
            }
            Self::Server => (StatusCode::INTERNAL_SERVER_ERROR, None),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            Self::UnsupportedGrantType => (StatusCode::BAD_REQUEST, None),
            Self::UseDpopNonce => (
                StatusCode::BAD_REQUEST,
                Some("the DPoP proof must carry the nonce given in DPoP-Nonce"),
            ),
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidDpopProof(d) => (StatusCode::BAD_REQUEST, Some(d.as_str())),
        };
        let body = match description {
            Some(d) => json!({"error": self.code(), "error_description": d}),
            None => json!({"error": self.code()}),
        };
        let mut rsp = json(status, &body);
        if let Self::Unavailable = self {
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
        }
        if let Self::InvalidClient { basic: true, .. } = self {
            rsp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"baton-idp\""),
            );
        }
        rsp
    }
}

impl From<crate::dpop::ProofError> for OAuthError {
    fn from(e: crate::dpop::ProofError) -> Self {
        Self::InvalidDpopProof(e.to_string())
    }
}

/// Seconds a client is asked to wait while the shared store is unreachable.
pub const RETRY_AFTER: &str = "2";

impl From<super::store::StoreError> for OAuthError {
    fn from(e: super::store::StoreError) -> Self {
        match e {
            super::store::StoreError::Unavailable => Self::Unavailable,
            super::store::StoreError::Corrupt => Self::Server,
        }
    }
}

/// The answer of a browser request that needs the shared store while it is unreachable: 503,
/// `Retry-After`, no detail.
pub fn unavailable() -> Response<Body> {
    let mut rsp = crate::http::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "The sign-in service is briefly unavailable. Try again in a moment.\n",
    );
    rsp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    rsp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

impl From<crate::http::FormError> for OAuthError {
    fn from(e: crate::http::FormError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

/// An authorization request refused back at the client (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6):
/// the error code and a description that never echoes a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct AuthorizeError {
    /// The error code, e.g. `invalid_request`, `login_required`.
    pub error: &'static str,
    /// What is wrong.
    pub description: String,
}

impl AuthorizeError {
    /// `error` with a description.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    /// `invalid_request` with a description.
    pub fn request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    /// `unmet_authentication_requirements` (OpenID Connect Core Unmet Authentication
    /// Requirements 1.0): the one-time code is needed and the user has no app for it.
    pub fn no_otp() -> Self {
        Self::new(
            "unmet_authentication_requirements",
            "the user has no one-time-code app enrolled",
        )
    }

    /// The 303 back to `redirect_uri` with `error`, `error_description`, `state` and `iss`
    /// (RFC 9207).
    pub fn response(
        &self,
        issuer: &str,
        redirect_uri: &str,
        state: Option<&str>,
    ) -> Response<Body> {
        let mut pairs = vec![
            ("error", self.error),
            ("error_description", self.description.as_str()),
        ];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pages::to_client(issuer, redirect_uri, &pairs)
    }
}

/// A refused bearer token at `/userinfo` (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No bearer token was sent: 401 with a bare challenge.
    #[error("no bearer token")]
    Missing,
    /// The token is not a valid, unrevoked access token of this IdP: 401 `invalid_token`.
    #[error("invalid_token")]
    InvalidToken,
    /// The token lacks the `openid` scope: 403 `insufficient_scope`.
    #[error("insufficient_scope")]
    InsufficientScope,
    /// Whether the token is revoked cannot be told now: 503 with `Retry-After`.
    #[error("unavailable")]
    Unavailable,
}

impl BearerError {
    /// The JSON response with its `WWW-Authenticate: Bearer` challenge.
    pub fn response(&self) -> Response<Body> {
        let (status, error) = match self {
            Self::Unavailable => return unavailable(),
            Self::Missing => (StatusCode::UNAUTHORIZED, None),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            Self::InsufficientScope => (StatusCode::FORBIDDEN, Some("insufficient_scope")),
        };
        let challenge = match error {
            Some(e) => format!("Bearer realm=\"baton-idp\", error=\"{e}\""),
            None => "Bearer realm=\"baton-idp\"".to_owned(),
        };
        let mut rsp = json(
            status,
            &json!({"error": error.unwrap_or("invalid_request")}),
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            rsp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        rsp
    }
}
