//! One OAuth error type for the token and introspection endpoints, mapped in one `match` to
//! RFC 6749 §5.2 JSON with `Cache-Control: no-store`. Descriptions never carry token content.

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
    /// Our fault; details are logged, not sent.
    #[error("server_error")]
    Server,
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
            Self::Server => "server_error",
        }
    }

    /// The JSON response: 401 for `invalid_client`, 500 for `server_error`, else 400.
    pub fn response(&self) -> Response<Body> {
        let (status, description) = match self {
            Self::InvalidClient { description, .. } => {
                (StatusCode::UNAUTHORIZED, Some(description.as_str()))
            }
            Self::Server => (StatusCode::INTERNAL_SERVER_ERROR, None),
            Self::UnsupportedGrantType => (StatusCode::BAD_REQUEST, None),
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d) => (StatusCode::BAD_REQUEST, Some(d.as_str())),
        };
        let body = match description {
            Some(d) => json!({"error": self.code(), "error_description": d}),
            None => json!({"error": self.code()}),
        };
        let mut rsp = json(status, &body);
        if let Self::InvalidClient { basic: true, .. } = self {
            rsp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"baton-idp\""),
            );
        }
        rsp
    }
}

impl From<crate::http::FormError> for OAuthError {
    fn from(e: crate::http::FormError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}
