//! The outbound listener's one `Reject` enum and the table that maps each refusal to a response,
//! grouped by who is at fault: the app (4xx), the IdP (401/403/502/503), the upstream (502).

use crate::exchange::{ExchangeError, RETRY_AFTER_SECS};
use crate::http::{Body, json};
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
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
        self.problem().into_response()
    }

    /// What the app gets for this refusal, one row per way to refuse; the failures that are
    /// not the app's (the IdP's, the upstream's, the sidecar's own) are logged here.
    fn problem(self) -> Problem {
        use StatusCode as S;
        match self {
            Self::NotAbsolute => Problem::new(S::BAD_REQUEST, "invalid_request", NOT_ABSOLUTE),
            Self::BadAuthorization(why) => Problem::new(S::BAD_REQUEST, "invalid_request", why),
            Self::NoSubject(route) => {
                Problem::new(S::UNAUTHORIZED, "missing_subject_token", no_subject(&route)).with(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                )
            }
            Self::UnknownHost(host) => Problem::new(
                S::FORBIDDEN,
                "unknown_destination",
                format!("no outbound route for {host}: add one to outbound.routes in sidecar.yaml"),
            ),
            Self::Connect => Problem::new(S::METHOD_NOT_ALLOWED, "connect_refused", NO_CONNECT)
                .with(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS)),
            Self::Exchange(e) => exchange_problem(e),
            Self::Upstream(why) => {
                warn!(error = %why, "upstream call failed");
                Problem::new(S::BAD_GATEWAY, "upstream_unavailable", why)
            }
        }
    }
}

const NOT_ABSOLUTE: &str = "this is a forward proxy: send absolute-form http:// requests (set \
                            HTTP_PROXY) or use a configured local port";

const NO_CONNECT: &str =
    "CONNECT tunnels are refused: call http:// URLs so the token can be exchanged";

/// The methods a refused `CONNECT` is told to use instead.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The challenge of a call that lacks the caller's token.
const CHALLENGE: &str = "Bearer realm=\"baton-outbound\"";

/// The challenge of a call whose token the IdP refused to exchange.
const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"baton-outbound\", error=\"invalid_token\"";

fn no_subject(route: &str) -> String {
    format!(
        "route {route} needs the caller's token: propagate the inbound `Authorization: Bearer` \
         header on this outgoing call, or set `without_subject: client_credentials` on the \
         route to call as the service"
    )
}

/// The IdP's refusal or absence, as the app gets it.
fn exchange_problem(e: ExchangeError) -> Problem {
    use StatusCode as S;
    match e {
        ExchangeError::Refused { code, .. } => {
            let status = refused_status(&code);
            let description = format!("the identity provider refused the token exchange: {code}");
            let problem = Problem::new(status, "exchange_refused", description);
            if status == S::UNAUTHORIZED {
                let challenge = HeaderValue::from_static(INVALID_TOKEN_CHALLENGE);
                problem.with(header::WWW_AUTHENTICATE, challenge)
            } else {
                problem
            }
        }
        e @ ExchangeError::Unavailable { .. } => {
            warn!(error = %crate::process::Chain(&e), "token exchange unavailable");
            let retry = "the identity provider is unavailable; retry later";
            Problem::new(S::SERVICE_UNAVAILABLE, "idp_unavailable", retry)
                .with(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS))
        }
        e @ ExchangeError::BadAnswer(why) => {
            warn!(error = %e, "token-endpoint answer refused");
            let description = format!(
                "the identity provider's answer failed the sidecar's checks: {}",
                why.describe()
            );
            Problem::new(S::BAD_GATEWAY, "idp_answer_refused", description)
        }
        e @ ExchangeError::Assertion(_) => {
            warn!(error = %e, "client assertion failed");
            let description = "the sidecar could not authenticate to the identity provider";
            Problem::new(S::INTERNAL_SERVER_ERROR, "server_error", description)
        }
    }
}

/// The status the app gets when the IdP refused the exchange with the OAuth error `code`: the
/// caller's token was refused (401, the app may get a new one), the sidecar's own client
/// credentials were (502, not the app's fault), or the policy said no (403).
fn refused_status(code: &str) -> StatusCode {
    match code {
        "invalid_request" | "invalid_grant" => StatusCode::UNAUTHORIZED,
        "invalid_client" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::FORBIDDEN,
    }
}

/// A refusal's answer: a JSON problem body and at most one header beside it.
struct Problem {
    status: StatusCode,
    error: &'static str,
    description: String,
    header: Option<(HeaderName, HeaderValue)>,
}

impl Problem {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Problem {
            status,
            error,
            description: description.into(),
            header: None,
        }
    }

    fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The JSON problem body; the description also goes in the extensions, for a gRPC caller's
    /// `grpc-message`.
    fn into_response(self) -> Response<Body> {
        let mut rsp = json(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        );
        rsp.extensions_mut()
            .insert(crate::http::grpc::Message(self.description));
        if let Some((name, value)) = self.header {
            rsp.headers_mut().insert(name, value);
        }
        rsp
    }
}

#[cfg(test)]
mod tests;
