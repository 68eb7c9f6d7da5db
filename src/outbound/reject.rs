//! The outbound listener's one `Reject` enum and the one `match` that maps it to a response,
//! grouped by who is at fault: the app (4xx), the IdP (401/403/502/503), the upstream (502).

use crate::exchange::{ExchangeError, RETRY_AFTER_SECS};
use crate::http::{Body, json};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use tracing::warn;

/// Every way the outbound listener refuses a call, mapped to a response in one place.
#[derive(Debug)]
pub(super) enum Reject {
    // --- the app's fault: 4xx
    NotAbsolute,
    BadAuthorization(&'static str),
    NoSubject(String),
    UnknownHost(String),
    Connect,
    // --- the IdP's answer or absence
    Exchange(ExchangeError),
    // --- the upstream: 502
    Upstream(String),
}

impl From<ExchangeError> for Reject {
    fn from(e: ExchangeError) -> Self {
        Self::Exchange(e)
    }
}

impl Reject {
    /// [`Reject::into_response`], in the form a gRPC client reads when `grpc` (the app's call
    /// was a gRPC call, [`crate::http::grpc`]).
    pub(super) fn answer(self, grpc: bool) -> Response<Body> {
        crate::http::grpc::answer(self.into_response(), grpc)
    }

    pub(super) fn into_response(self) -> Response<Body> {
        let (status, error, description) = match self {
            Self::NotAbsolute => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "this is a forward proxy: send absolute-form http:// requests (set HTTP_PROXY) \
                 or use a configured local port"
                    .to_owned(),
            ),
            Self::BadAuthorization(why) => (StatusCode::BAD_REQUEST, "invalid_request", why.into()),
            Self::NoSubject(route) => {
                let mut rsp = problem(
                    StatusCode::UNAUTHORIZED,
                    "missing_subject_token",
                    format!(
                        "route {route} needs the caller's token: propagate the inbound \
                         `Authorization: Bearer` header on this outgoing call, or set \
                         `without_subject: client_credentials` on the route to call as the service"
                    ),
                );
                rsp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"baton-outbound\""),
                );
                return rsp;
            }
            Self::UnknownHost(host) => (
                StatusCode::FORBIDDEN,
                "unknown_destination",
                format!("no outbound route for {host}: add one to outbound.routes in sidecar.yaml"),
            ),
            Self::Connect => {
                let mut rsp = problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "connect_refused",
                    "CONNECT tunnels are refused: call http:// URLs so the token can be exchanged"
                        .into(),
                );
                rsp.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
                return rsp;
            }
            Self::Exchange(ExchangeError::Refused { code, .. }) => {
                let status = match code.as_str() {
                    "invalid_request" | "invalid_grant" => StatusCode::UNAUTHORIZED,
                    "invalid_client" => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::FORBIDDEN,
                };
                let mut rsp = problem(
                    status,
                    "exchange_refused",
                    format!("the identity provider refused the token exchange: {code}"),
                );
                if status == StatusCode::UNAUTHORIZED {
                    rsp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(
                            "Bearer realm=\"baton-outbound\", error=\"invalid_token\"",
                        ),
                    );
                }
                return rsp;
            }
            Self::Exchange(e @ ExchangeError::Unavailable { .. }) => {
                warn!(error = %crate::process::Chain(&e), "token exchange unavailable");
                let mut rsp = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "idp_unavailable",
                    "the identity provider is unavailable; retry later".into(),
                );
                rsp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return rsp;
            }
            Self::Exchange(e @ ExchangeError::BadAnswer(why)) => {
                warn!(error = %e, "token-endpoint answer refused");
                (
                    StatusCode::BAD_GATEWAY,
                    "idp_answer_refused",
                    format!(
                        "the identity provider's answer failed the sidecar's checks: {}",
                        why.describe()
                    ),
                )
            }
            Self::Exchange(e @ ExchangeError::Assertion(_)) => {
                warn!(error = %e, "client assertion failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the sidecar could not authenticate to the identity provider".into(),
                )
            }
            Self::Upstream(why) => {
                warn!(error = %why, "upstream call failed");
                (StatusCode::BAD_GATEWAY, "upstream_unavailable", why)
            }
        };
        problem(status, error, description)
    }
}

/// A JSON problem body; the description also goes in the extensions, for a gRPC caller's
/// `grpc-message`.
fn problem(status: StatusCode, error: &str, description: String) -> Response<Body> {
    let mut rsp = json(
        status,
        &json!({"error": error, "error_description": description}),
    );
    rsp.extensions_mut()
        .insert(crate::http::grpc::Message(description));
    rsp
}
