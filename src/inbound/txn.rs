//! The inbound Transaction Token phase ([`crate::txn`]), after the access token is admitted and
//! before the request is prepared for the app.
//!
//! Every mode first removes the names that could pass for the claims header or the `Txn-Token`
//! in another spelling (`txn_token`, the claims header with `_`): a CGI-style app reads them as
//! the same variable. Then, by `txn_token.mode`:
//! - `issue`: any `Txn-Token` the client sent is dropped; the IdP issues one for this request
//!   (subject: the verified access token; `rctx`: the client's IP and how it authenticated;
//!   `tctx`: the method and path), the sidecar verifies it as any hop would, and the app gets it
//!   in `Txn-Token` with its claims in the claims header;
//! - `require` / `accept`: the `Txn-Token` the client sent is verified (the trust domain's keys,
//!   `typ` `txntoken+jwt`, `aud`, `exp`, `iat`); it goes on to the app unchanged, its claims in
//!   the claims header. Without one, `require` refuses and `accept` passes.
//!
//! A refusal is a complete response (401 `invalid_token` with an `error_description`, or 503 when
//! the IdP or its keys are unavailable); the caller counts it. The headers the app gets are set
//! by [`finish`] once the request is prepared, so the preparation's stripping of baton-owned
//! names cannot remove them.

use crate::config::txn::{TxnMode, TxnToken};
use crate::config::{Config, Mode};
use crate::exchange::{ExchangeError, Exchanger, GRANT_TOKEN_EXCHANGE};
use crate::http::{Body, json};
use crate::jwt::jwks::{Jwks, Verifier, VerifyFailure};
use crate::jwt::{Verified, VerifyError};
use crate::secret::Token;
use crate::server::ConnInfo;
use crate::telemetry::Metrics;
use crate::txn;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tracing::info;

/// Verified Txn-Tokens kept in the cache at most.
const CACHE_CAPACITY: u64 = 10_000;
/// Longest path copied into `tctx`; a longer one is left out.
const MAX_TCTX_PATH: usize = 256;

/// The phase, built once from `txn_token:`.
pub struct Phase {
    settings: TxnToken,
    verifier: Verifier,
    /// `issue`: the IdP's token endpoint, as `outbound.client`.
    client: Option<Exchanger>,
}

/// Why the phase refused a request. `Display` names no token content.
#[derive(Debug, thiserror::Error)]
pub enum TxnReject {
    /// `require` and no `Txn-Token`.
    #[error("this service requires a Txn-Token header")]
    Missing,
    /// More than one `Txn-Token` header.
    #[error("more than one Txn-Token header")]
    Repeated,
    /// The `Txn-Token` did not verify.
    #[error("Txn-Token: {0}")]
    Invalid(VerifyError),
    /// No keys to verify it with.
    #[error("the trust domain's signing keys are unavailable")]
    KeysUnavailable,
    /// `issue`: the IdP refused or could not be asked.
    #[error("no Txn-Token for this request: {0}")]
    Issue(String),
}

impl TxnReject {
    /// The metric and log word.
    pub fn outcome(&self) -> &'static str {
        match self {
            TxnReject::KeysUnavailable | TxnReject::Issue(_) => "txn_unavailable",
            _ => "invalid_txn_token",
        }
    }

    /// 401 with an RFC 6750-style `invalid_token` error for the client's faults, 503 with
    /// `Retry-After` for the IdP's.
    pub fn into_response(self, realm: &str) -> Response<Body> {
        let description = self.to_string();
        if matches!(self, TxnReject::KeysUnavailable | TxnReject::Issue(_)) {
            let mut rsp = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "temporarily_unavailable", "error_description": description}),
            );
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return rsp;
        }
        let mut rsp = json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": description}),
        );
        let clean: String = description
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        let realm: String = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        if let Ok(v) = HeaderValue::try_from(format!(
            "TxnToken realm=\"{realm}\", error=\"invalid_token\", error_description=\"{clean}\""
        )) {
            rsp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        rsp
    }
}

/// What the app gets, set by [`finish`]: kept in the request's extensions between the phase and
/// the preparation.
#[derive(Clone)]
struct ForApp {
    claims_header: HeaderName,
    /// `issue`: the new Txn-Token; otherwise the client's goes on as it came.
    token: Option<HeaderValue>,
    claims: Option<HeaderValue>,
}

impl Phase {
    /// The phase `cfg.txn_token` asks for, if any. Txn-Tokens are verified with `jwks`, the
    /// issuer's keys (the IdP is the trust domain's Txn-Token Service).
    pub fn new(
        cfg: &Config,
        jwks: Arc<Jwks>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Phase>, ExchangeError> {
        let Some(settings) = cfg.txn_token.clone() else {
            return Ok(None);
        };
        let rules = txn::rules(
            cfg.issuer.clone(),
            settings.audience.clone(),
            cfg.algorithms.clone(),
            cfg.leeway,
        );
        let client = match settings.mode {
            TxnMode::Issue => Some(Exchanger::new(&cfg.outbound, Some(&cfg.issuer))?),
            TxnMode::Require | TxnMode::Accept => None,
        };
        Ok(Some(Phase {
            settings,
            verifier: Verifier::new(jwks, rules, CACHE_CAPACITY, metrics),
            client,
        }))
    }

    /// Whether the phase needs the client's address (`issue` puts it in `rctx`).
    pub fn wants_peer(&self) -> bool {
        self.settings.mode == TxnMode::Issue
    }

    /// Runs the phase on an admitted request. `access`: the verified access token (none on a
    /// public route: nothing is issued there). `require` applies to public routes too: a
    /// service reached with a Txn-Token alone (no per-hop exchange) marks its routes public and
    /// requires the Txn-Token. In observe mode a refusal is logged and the request goes on
    /// without the claims header.
    pub async fn run<B>(
        &self,
        req: &mut Request<B>,
        access: Option<&Verified>,
        mode: Mode,
    ) -> Result<(), TxnReject> {
        strip_twins(req.headers_mut(), &self.settings.claims_header);
        let result = match (self.settings.mode, access) {
            (TxnMode::Issue, Some(v)) => self.issue(req, v).await,
            (TxnMode::Issue, None) => {
                req.headers_mut().remove(txn::HEADER);
                Ok(None)
            }
            (TxnMode::Require, _) => self.check(req.headers(), true).await,
            (TxnMode::Accept, _) => self.check(req.headers(), false).await,
        };
        let (token, claims) = match result {
            Ok(Some((token, v))) => (token, v.claims_header().cloned()),
            Ok(None) => (None, None),
            Err(e) if mode == Mode::Observe => {
                info!(outcome = e.outcome(), reason = %e, "observe mode: forwarding without Txn-Token claims");
                (None, None)
            }
            Err(e) => return Err(e),
        };
        req.extensions_mut().insert(ForApp {
            claims_header: self.settings.claims_header.clone(),
            token,
            claims,
        });
        Ok(())
    }

    /// The client's `Txn-Token`, verified; `None` when there is none and `required` is false.
    async fn check(
        &self,
        headers: &HeaderMap,
        required: bool,
    ) -> Result<Option<(Option<HeaderValue>, Arc<Verified>)>, TxnReject> {
        let mut values = headers.get_all(txn::HEADER).iter();
        let Some(value) = values.next() else {
            return if required {
                Err(TxnReject::Missing)
            } else {
                Ok(None)
            };
        };
        if values.next().is_some() {
            return Err(TxnReject::Repeated);
        }
        let token = value
            .to_str()
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(TxnReject::Invalid(VerifyError::Malformed(
                "Txn-Token must be a compact JWS",
            )))?;
        let verified = self.verify(&Token::new(token)).await?;
        Ok(Some((None, verified)))
    }

    async fn verify(&self, token: &Token) -> Result<Arc<Verified>, TxnReject> {
        let v = self.verifier.verify(token).await.map_err(|e| match e {
            VerifyFailure::Token(e) => TxnReject::Invalid(e),
            VerifyFailure::KeysUnavailable => TxnReject::KeysUnavailable,
        })?;
        txn::check_claims(&v.claims).map_err(TxnReject::Invalid)?;
        Ok(v)
    }

    /// `issue`: drops the client's `Txn-Token`, asks the IdP for one for this request (for
    /// `txn_token.scope`, or the access token's scope), verifies it.
    async fn issue<B>(
        &self,
        req: &mut Request<B>,
        access: &Verified,
    ) -> Result<Option<(Option<HeaderValue>, Arc<Verified>)>, TxnReject> {
        req.headers_mut().remove(txn::HEADER);
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| TxnReject::Issue("no client".into()))?;
        let subject = super::rules::presented(req.headers())
            .ok()
            .and_then(|(_, p)| super::rules::b64token(p).ok())
            .ok_or_else(|| TxnReject::Issue("no bearer access token to issue from".into()))?;
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE.to_owned()),
            ("requested_token_type", txn::TOKEN_TYPE.to_owned()),
            ("audience", self.settings.audience.clone()),
            ("subject_token", subject.expose().to_owned()),
            (
                "subject_token_type",
                crate::exchange::ACCESS_TOKEN_TYPE.to_owned(),
            ),
            ("request_context", request_context(req).to_string()),
            ("request_details", request_details(req).to_string()),
        ];
        // The configured purpose, else the access token's whole scope.
        let scope = match &self.settings.scope {
            Some(s) => s.clone(),
            None => crate::jwt::scopes(&access.claims)
                .collect::<Vec<_>>()
                .join(" "),
        };
        form.push(("scope", scope));
        let answer = client.user_grant(form).await.map_err(|e| match e {
            ExchangeError::Refused { code, .. } => {
                TxnReject::Issue(format!("the IdP refused: {code}"))
            }
            other => TxnReject::Issue(other.to_string()),
        })?;
        let issued = answer
            .get("issued_token_type")
            .and_then(Value::as_str)
            .zip(answer.get("access_token").and_then(Value::as_str));
        let token = match issued {
            Some((txn::TOKEN_TYPE, token)) => token,
            _ => {
                return Err(TxnReject::Issue(
                    "the IdP answered with another token type".into(),
                ));
            }
        };
        let verified = self
            .verify(&Token::new(token))
            .await
            .map_err(|e| TxnReject::Issue(format!("the issued token did not verify: {e}")))?;
        let mut value = HeaderValue::try_from(token)
            .map_err(|_| TxnReject::Issue("the issued token is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(Some((Some(value), verified)))
    }
}

/// `rctx`: the client's IP address (when the connection is known) and how it authenticated.
fn request_context<B>(req: &Request<B>) -> Value {
    let mut rctx = Map::new();
    if let Some(conn) = req.extensions().get::<ConnInfo>() {
        rctx.insert("req_ip".into(), json!(conn.peer.ip().to_string()));
    }
    rctx.insert(
        "authn".into(),
        json!("urn:ietf:params:oauth:token-type:access_token"),
    );
    Value::Object(rctx)
}

/// `tctx`: the request's method and (when short) path: what the transaction was asked to do.
fn request_details<B>(req: &Request<B>) -> Value {
    let mut tctx = Map::new();
    // Routes match methods in any case; the context names the method one way.
    tctx.insert(
        "method".into(),
        json!(req.method().as_str().to_ascii_uppercase()),
    );
    let path = req.uri().path();
    if path.len() <= MAX_TCTX_PATH {
        tctx.insert("path".into(), json!(path));
    }
    Value::Object(tctx)
}

/// Removes `txn_token` and the claims header spelled with `_` (any case): CGI-style servers read
/// them as `Txn-Token` and the claims header.
fn strip_twins(headers: &mut HeaderMap, claims_header: &HeaderName) {
    let claims = claims_header.as_str().as_bytes();
    let twin = |name: &HeaderName| {
        let n = name.as_str().as_bytes();
        n.contains(&b'_') && (folded_eq(n, txn::HEADER.as_bytes()) || folded_eq(n, claims))
    };
    if !headers.keys().any(twin) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| twin(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// ASCII case-insensitive equality with `_` read as `-`.
fn folded_eq(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

/// Sets what the phase left for the app on the prepared request's headers: the claims header
/// (replacing any the client sent), and in `issue` mode the new `Txn-Token`. A request the
/// phase did not see is left as it is.
pub fn finish(headers: &mut HeaderMap, extensions: &mut http::Extensions) {
    let Some(f) = extensions.remove::<ForApp>() else {
        return;
    };
    match f.claims {
        Some(c) => headers.insert(f.claims_header, c),
        None => headers.remove(&f.claims_header),
    };
    if let Some(t) = f.token {
        headers.insert(HeaderName::from_static(txn::HEADER), t);
    }
}

#[cfg(test)]
mod tests;
