//! Why the inbound listener refuses a request, and the one `match` that turns it into a status,
//! an RFC 6750 / RFC 9470 challenge and a body.

use crate::http::path::BadPath;
use crate::http::{Body, json, text};
use crate::jwt::VerifyError;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

/// Every way the inbound listener refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    // --- the client's fault ---
    /// No `Authorization` header at all (RFC 6750 §3: challenge without an error code).
    #[error("no bearer token")]
    NoToken,
    /// The token was sent in the query string (RFC 6750 §2.3, refused here).
    #[error(
        "access_token in the query string is not accepted; send it in the Authorization header"
    )]
    TokenInQuery,
    /// The path has no canonical form ([`crate::http::path`]): the app might resolve it past a
    /// route.
    #[error("path refused: {0}")]
    BadPath(BadPath),
    /// The `Authorization` header is not a single well-formed `Bearer` credential.
    #[error("malformed Authorization header: {0}")]
    BadHeader(&'static str),
    /// The token did not verify (RFC 6750 §3.1 `invalid_token`).
    #[error("{0}")]
    InvalidToken(VerifyError),
    /// The token's issuer is trusted, but not on this route (`invalid_token`: no token of that
    /// issuer will do here).
    #[error("tokens of this issuer are not accepted on this route")]
    IssuerNotAccepted,
    /// The declared request body is larger than the listener allows.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A message of a gRPC call was larger than the listener allows.
    #[error("a message of the call is larger than the limit")]
    MessageTooLarge,
    /// A sender-constrained token (`cnf`, e.g. DPoP `jkt`, RFC 9449 §7.1; mTLS `x5t#S256`,
    /// RFC 8705 §3) presented as a plain bearer token.
    #[error("sender-constrained token presented as a bearer token")]
    BoundToken,
    /// A token the route's DPoP rules refuse (RFC 9449 §7.1 `invalid_token` with a `DPoP`
    /// challenge): bound but sent as `Bearer`, unbound but sent as `DPoP`, or unbound where
    /// DPoP is required.
    #[error("{0}")]
    DpopToken(&'static str),
    /// The DPoP proof is missing or refused (RFC 9449 §7.1 `invalid_dpop_proof`).
    #[error("{0}")]
    InvalidProof(crate::dpop::ProofError),
    /// No route covers this path and method.
    #[error("no route allows this request")]
    NoRoute,
    /// The route admits only some workloads (`peer:`), and the client's certificate names none
    /// of them, or the client presented none.
    #[error("the client certificate's identity is not allowed on this route")]
    PeerNotAllowed,
    /// Required scopes are missing (RFC 6750 §3.1 `insufficient_scope`).
    #[error("token lacks the required scope")]
    InsufficientScope(String),
    /// A required claim is missing or has another value.
    #[error("token lacks the required claim {0}")]
    Claim(String),
    /// The authentication is too weak or too old (RFC 9470 §3).
    #[error("stronger or more recent authentication required")]
    StepUp {
        /// Acceptable `acr` values, space-separated, in order of preference.
        acr_values: Option<String>,
        /// Largest acceptable authentication age, seconds.
        max_age: Option<u64>,
    },
    // --- the IdP's or the app's fault ---
    /// No usable signing keys from the issuer.
    #[error("the issuer's signing keys are unavailable")]
    KeysUnavailable,
    /// The app could not be reached or failed mid-response.
    #[error("the application is unavailable")]
    AppUnavailable,
    // --- ours ---
    /// A header we built was not valid (should not happen).
    #[error("internal error")]
    Internal,
}

impl Reject {
    /// A fixed word for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reject::NoToken => "no_token",
            Reject::TokenInQuery | Reject::BadHeader(_) => "invalid_request",
            Reject::BadPath(_) => "bad_path",
            Reject::InvalidToken(_)
            | Reject::IssuerNotAccepted
            | Reject::BoundToken
            | Reject::DpopToken(_) => "invalid_token",
            Reject::InvalidProof(_) => "invalid_dpop_proof",
            Reject::BodyTooLarge(_) | Reject::MessageTooLarge => "body_too_large",
            Reject::NoRoute => "no_route",
            Reject::PeerNotAllowed => "peer_not_allowed",
            Reject::InsufficientScope(_) => "insufficient_scope",
            Reject::Claim(_) => "claim",
            Reject::StepUp { .. } => "insufficient_user_authentication",
            Reject::KeysUnavailable => "keys_unavailable",
            Reject::AppUnavailable => "app_unavailable",
            Reject::Internal => "internal",
        }
    }

    /// [`Reject::into_response`], in the form a gRPC client reads when `grpc` (the request was a
    /// gRPC call, [`crate::http::grpc`]): the same challenge, as metadata of a trailers-only
    /// answer.
    pub fn answer(self, realm: &str, hint: &str, grpc: bool) -> Response<Body> {
        if !grpc {
            return self.into_response(realm, hint);
        }
        let message = self.to_string();
        let mut rsp = self.into_response(realm, hint);
        rsp.extensions_mut()
            .insert(crate::http::grpc::Message(message));
        crate::http::grpc::refusal(rsp)
    }

    /// The response: status, `WWW-Authenticate` and a JSON body `{error, error_description}`.
    /// `realm` names this service; `hint` tells a caller without a token how to get one.
    pub fn into_response(self, realm: &str, hint: &str) -> Response<Body> {
        let description = self.to_string();
        let (status, error, extra) = match &self {
            // client 4xx
            Reject::NoToken => {
                let mut rsp = text(StatusCode::UNAUTHORIZED, hint.to_owned());
                set_challenge(&mut rsp, format!("Bearer realm=\"{}\"", quote(realm)));
                return rsp;
            }
            Reject::TokenInQuery | Reject::BadHeader(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request", String::new())
            }
            Reject::InvalidToken(_) | Reject::IssuerNotAccepted | Reject::BoundToken => {
                (StatusCode::UNAUTHORIZED, "invalid_token", String::new())
            }
            Reject::DpopToken(_) | Reject::InvalidProof(_) => {
                let error = self.outcome();
                let mut rsp = json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": error, "error_description": description}),
                );
                set_challenge(
                    &mut rsp,
                    format!(
                        "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
                        quote(&description),
                        crate::dpop::ALGS_PARAM
                    ),
                );
                return rsp;
            }
            Reject::BadPath(_) => {
                return text(StatusCode::BAD_REQUEST, format!("{description}\n"));
            }
            Reject::BodyTooLarge(_) | Reject::MessageTooLarge => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, format!("{description}\n"));
            }
            Reject::NoRoute | Reject::PeerNotAllowed => {
                let rsp = json(
                    StatusCode::FORBIDDEN,
                    &json!({"error": "access_denied", "error_description": description}),
                );
                return rsp;
            }
            Reject::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!(", scope=\"{}\"", quote(scope)),
            ),
            Reject::Claim(_) => (StatusCode::FORBIDDEN, "insufficient_scope", String::new()),
            Reject::StepUp {
                acr_values,
                max_age,
            } => {
                let mut extra = String::new();
                if let Some(acr) = acr_values {
                    extra.push_str(&format!(", acr_values=\"{}\"", quote(acr)));
                }
                if let Some(age) = max_age {
                    extra.push_str(&format!(", max_age={age}"));
                }
                (
                    StatusCode::UNAUTHORIZED,
                    "insufficient_user_authentication",
                    extra,
                )
            }
            // IdP / app 502/503
            Reject::KeysUnavailable => {
                let mut rsp = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "temporarily_unavailable", "error_description": description}),
                );
                rsp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return rsp;
            }
            Reject::AppUnavailable => {
                return text(StatusCode::BAD_GATEWAY, format!("{description}\n"));
            }
            // us 500
            Reject::Internal => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{description}\n"),
                );
            }
        };
        let mut rsp = json(
            status,
            &json!({"error": error, "error_description": description}),
        );
        set_challenge(
            &mut rsp,
            format!(
                "Bearer realm=\"{}\", error=\"{error}\", error_description=\"{}\"{extra}",
                quote(realm),
                quote(&description)
            ),
        );
        rsp
    }
}

fn set_challenge(rsp: &mut Response<Body>, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        rsp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
}

/// Makes a value safe inside an RFC 9110 quoted-string: drops `"`, `\` and control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}
