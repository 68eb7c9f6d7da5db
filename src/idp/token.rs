//! `/token` (RFC 6749 §3.2): read the form → the grant type → authenticate the client → may it
//! use that grant → the grant → the JSON answer. Every refusal is an [`OAuthError`], answered and
//! counted (by grant type and outcome) in [`token`] alone.
//!
//! The grants: [`code`] (`authorization_code` with PKCE), [`refresh`] (`refresh_token` with
//! rotation and reuse detection), [`client_credentials`] (a token for the client itself) and
//! [`exchange`] (RFC 8693 token exchange), or [`txn`] when the exchange asks for a Transaction
//! Token.

pub mod client_credentials;
pub mod code;
pub mod exchange;
pub mod refresh;
pub mod txn;

use super::client_auth;
use super::config::{Client, TOKEN_EXCHANGE};
use super::discovery::token_endpoint;
use super::errors::OAuthError;
use super::form::read_form;
use super::nonce::Nonces;
use super::state::Idp;
use crate::dpop;
use crate::http::{Body, BoxError, Form, json};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::Value;
use tracing::{info, instrument};

/// The grant types the token endpoint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    TokenExchange,
}

impl Grant {
    /// The `grant_type` parameter; unknown → `unsupported_grant_type`.
    fn parse(form: &Form) -> Result<Grant, OAuthError> {
        let grant_type = form
            .one("grant_type")?
            .ok_or_else(|| OAuthError::request("grant_type required"))?;
        match grant_type {
            "authorization_code" => Ok(Grant::AuthorizationCode),
            "refresh_token" => Ok(Grant::RefreshToken),
            "client_credentials" => Ok(Grant::ClientCredentials),
            TOKEN_EXCHANGE => Ok(Grant::TokenExchange),
            _ => Err(OAuthError::UnsupportedGrantType),
        }
    }

    /// The `grant_type` value, as clients are allowed it in the config.
    fn name(self) -> &'static str {
        match self {
            Grant::TokenExchange => TOKEN_EXCHANGE,
            other => other.label(),
        }
    }

    /// The metric and log label.
    fn label(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::TokenExchange => "token_exchange",
        }
    }
}

/// The token endpoint.
#[instrument(skip_all, fields(grant_type, client_id))]
pub async fn token<B>(idp: &Idp, req: Request<B>, now: u64) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(t) = &idp.tracing {
        return Box::pin(traced(idp, t, req, now)).await;
    }
    let mut label = "unknown";
    let mut rsp = match answer(idp, req, now, &mut label).await {
        Ok(body) => {
            idp.metrics.token(label, "ok");
            json(StatusCode::OK, &body)
        }
        Err(e) => {
            idp.metrics.token(label, e.code());
            info!(error = %e.code(), "token request refused");
            e.response()
        }
    };
    // RFC 9449 §8.2: every answer says which nonce the next proof should carry.
    let d = &idp.config.dpop;
    if d.nonce {
        let nonce = idp.nonces.current(&idp.sealer, d.nonce_period, now);
        if let Ok(v) = HeaderValue::try_from(nonce) {
            rsp.headers_mut().insert(dpop::NONCE_HEADER, v);
        }
    }
    rsp
}

/// The token endpoint under its OpenTelemetry span `token` (a server span continuing the
/// caller's `traceparent`): grant type, client, the decision, the error code and, for an issued
/// exchange, the depth of its `act` chain. Never a token or a secret.
async fn traced<B>(
    idp: &Idp,
    t: &std::sync::Arc<crate::otel::Tracing>,
    req: Request<B>,
    now: u64,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    use crate::otel::FutureExt as _;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TraceContextExt as _;
    let parent = crate::otel::extract(req.headers());
    let cx = t.start_span(
        "token",
        opentelemetry::trace::SpanKind::Server,
        &parent,
        vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", "/token"),
        ],
    );
    let mut label = "unknown";
    let answered = answer(idp, req, now, &mut label)
        .with_context(cx.clone())
        .await;
    let span = cx.span();
    span.set_attribute(KeyValue::new("baton.grant_type", label));
    let rsp = match answered {
        Ok(body) => {
            idp.metrics.token(label, "ok");
            span.set_attribute(KeyValue::new("baton.policy.decision", "allow"));
            let depth = body
                .get("access_token")
                .and_then(Value::as_str)
                .and_then(crate::jwt::peek_claims)
                .map(|c| act_depth(&c));
            if let Some(depth) = depth {
                span.set_attribute(KeyValue::new("baton.act.depth", depth as i64));
            }
            json(StatusCode::OK, &body)
        }
        Err(e) => {
            idp.metrics.token(label, e.code());
            info!(error = %e.code(), "token request refused");
            span.set_attribute(KeyValue::new("baton.policy.decision", "deny"));
            span.set_attribute(KeyValue::new("error.type", e.code()));
            e.response()
        }
    };
    crate::otel::end(&cx, Some(rsp.status().as_u16()), true);
    rsp
}

/// How many `act` claims nest in `claims` (RFC 8693 §4.1).
fn act_depth(claims: &serde_json::Map<String, Value>) -> usize {
    let mut depth = 0;
    let mut act = claims.get("act");
    while let Some(a) = act {
        depth += 1;
        act = a.get("act");
    }
    depth
}

/// The token response for `req`; `label` is set to the grant type as soon as it is known.
async fn answer<B>(
    idp: &Idp,
    req: Request<B>,
    now: u64,
    label: &mut &'static str,
) -> Result<Value, OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, form) = read_form(req).await?;
    let grant = Grant::parse(&form)?;
    // A Txn-Token request is an exchange counted apart: it issues no access token.
    *label = match grant {
        Grant::TokenExchange if txn::requested(&form) => "txn_token",
        g => g.label(),
    };
    tracing::Span::current().record("grant_type", *label);
    let client = client_auth::authenticate(idp, &parts.headers, &form, now).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    if idp.tracing.is_some() {
        crate::otel::note(opentelemetry::KeyValue::new(
            "baton.client_id",
            client.id.clone(),
        ));
    }
    if !client.allows(grant.name()) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "client may not use {}",
            grant.name()
        )));
    }
    let jkt = proof(idp, client, &parts, now).await?;
    dispatch(idp, grant, client, &form, jkt.as_deref(), now).await
}

/// The request's DPoP proof (RFC 9449 §4.3), checked against this endpoint's own URL as
/// discovery publishes it, then for a current nonce when nonces are on (§8), then against the
/// replay store every replica shares (§11.1): the thumbprint of its key, or `None` without a
/// proof (refused for a client that must send one). A proof refused before the replay store
/// is not remembered.
async fn proof(
    idp: &Idp,
    client: &Client,
    parts: &http::request::Parts,
    now: u64,
) -> Result<Option<String>, OAuthError> {
    let Some(proof) = dpop::header(&parts.headers)? else {
        if client.dpop_required {
            return Err(OAuthError::InvalidDpopProof(
                "this client must send a DPoP proof".into(),
            ));
        }
        return Ok(None);
    };
    let htu = token_endpoint(idp);
    // `Expect::htu` must be a URI `normalize_htu` takes; the issuer's check at load does not
    // refuse user info.
    if dpop::normalize_htu(&htu).is_none() {
        return Err(dpop::ProofError::Uri.into());
    }
    let expect = dpop::Expect {
        htm: parts.method.as_str(),
        htu: &htu,
        token: None,
    };
    let p = dpop::check_cached(&idp.dpop_headers, proof, &expect, now, dpop::DEFAULT_WINDOW)?;
    let d = &idp.config.dpop;
    if d.nonce
        && !p
            .nonce
            .as_deref()
            .is_some_and(|n| Nonces::accepts(&idp.sealer, d.nonce_period, n, now))
    {
        return Err(OAuthError::UseDpopNonce);
    }
    let until = dpop::Verifier::remember_until(p.iat, dpop::DEFAULT_WINDOW);
    idp.store
        .first_dpop_use(&p.jkt, &p.jti, until, now)
        .await??;
    Ok(Some(p.jkt))
}

async fn dispatch(
    idp: &Idp,
    grant: Grant,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    match grant {
        Grant::AuthorizationCode => code::authorization_code(idp, client, form, jkt, now).await,
        Grant::RefreshToken => refresh::refresh(idp, client, form, jkt, now).await,
        Grant::ClientCredentials => {
            client_credentials::client_credentials(idp, client, form, jkt, now)
        }
        Grant::TokenExchange if txn::requested(form) => txn::issue(idp, client, form, jkt, now),
        Grant::TokenExchange => exchange::exchange(idp, client, form, jkt, now),
    }
}
