//! Why no token was obtained, and how an IdP's refusal or a transport failure becomes one
//! [`ExchangeError`] that is safe to log.

use super::BadAnswer;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

/// Why no token was obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The IdP answered with an OAuth error (RFC 6749 §5.2, RFC 8693 §2.2.2).
    #[error("identity provider refused the token request: {code}")]
    Refused {
        /// The `error` code, e.g. `invalid_target`.
        code: String,
        /// The HTTP status of the IdP's answer.
        status: u16,
    },
    /// The IdP could not be reached, timed out, or answered 5xx or garbage.
    #[error("identity provider unavailable: {reason}")]
    Unavailable {
        /// What failed, in words safe to log (no URL query, no form).
        reason: Cow<'static, str>,
        /// The transport error behind it, when there is one.
        #[source]
        source: Option<Arc<reqwest::Error>>,
    },
    /// The client assertion could not be signed.
    #[error("sign client assertion: {0}")]
    Assertion(String),
    /// The IdP answered 2xx with something other than what was asked for ([`answer`](super::answer)'s checks).
    #[error("identity provider answer refused: {}", .0.as_str())]
    BadAnswer(BadAnswer),
}

impl ExchangeError {
    /// [`ExchangeError::Unavailable`] with no transport error behind it.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`ExchangeError::Unavailable`] caused by `e`, whose URL is dropped (reqwest's `Display`
    /// names the URL, never the form; the URL may carry a query).
    pub fn transport(reason: &'static str, e: reqwest::Error) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: Some(Arc::new(e.without_url())),
        }
    }
    /// True for `invalid_*` answers, which the cache remembers briefly.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if code.starts_with("invalid_"))
    }
}

/// An OAuth error answer (RFC 6749 §5.2): only its code is read.
#[derive(Deserialize)]
pub(super) struct ErrorResponse {
    pub(super) error: String,
}

/// A non-success answer: an OAuth error for a readable 4xx, else the IdP is unavailable.
pub(super) fn refusal(status: reqwest::StatusCode, body: &[u8]) -> ExchangeError {
    if status.is_client_error()
        && let Ok(err) = serde_json::from_slice::<ErrorResponse>(body)
    {
        // Only the code is kept: a description could echo what was sent.
        return ExchangeError::Refused {
            code: sanitize_code(&err.error),
            status: status.as_u16(),
        };
    }
    ExchangeError::unavailable(format!("token endpoint answered {status}"))
}

/// Keeps an OAuth error code to its RFC 6749 §5.2 character set so it is safe to log and echo.
pub(super) fn sanitize_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "invalid_request".into()
    } else {
        clean
    }
}

/// [`ExchangeError::Unavailable`] for the transport error `e`, named by what failed.
pub(super) fn unavailable(e: reqwest::Error) -> ExchangeError {
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    ExchangeError::transport(reason, e)
}
