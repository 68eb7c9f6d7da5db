//! One call to the token endpoint: failing fast while the IdP is down, its span, the POST
//! with the client's authentication and DPoP proof, and the answer read within bounds.

use super::answer::{self, Asked};
use super::error::{ErrorResponse, refusal, unavailable};
use super::{ExchangeError, Exchanger, GRANT_TOKEN_EXCHANGE, Issued, RETRY_AFTER_SECS, Target};
use crate::dpop::Holder;
use crate::jwt;
use serde_json::Value;
use std::sync::atomic::Ordering;
use url::Url;

/// Largest token-endpoint or discovery answer read.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

impl Exchanger {
    /// Posts a token request, unless the IdP was found unavailable a moment ago: then it fails
    /// at once, and an `Unavailable` answer starts such a moment.
    pub(super) async fn token_request(
        &self,
        mut form: Vec<(&'static str, String)>,
        asked: Asked<'_>,
        target: &Target,
        dpop: bool,
    ) -> Result<Issued, ExchangeError> {
        let now = jwt::unix_now();
        if self.down_until.load(Ordering::Relaxed) > now {
            return Err(ExchangeError::unavailable(
                "recently unreachable; failing fast",
            ));
        }
        // With tracing on (an outbound span is current), the call is a span `exchange` of its
        // own, and the IdP continues it (`traceparent`).
        let grant = form.first().map_or("", |(_, g)| grant_name(g));
        let span = crate::otel::child(
            "exchange",
            opentelemetry::trace::SpanKind::Client,
            vec![
                opentelemetry::KeyValue::new("http.request.method", "POST"),
                opentelemetry::KeyValue::new("baton.grant_type", grant),
            ],
        );
        let result = match &span {
            None => self.post(&mut form, asked, target, dpop, now).await,
            Some(cx) => {
                self.traced_post(cx, &mut form, asked, target, dpop, now)
                    .await
            }
        };
        if matches!(result, Err(ExchangeError::Unavailable { .. })) {
            self.down_until
                .store(now + RETRY_AFTER_SECS, Ordering::Relaxed);
        }
        result
    }

    /// [`Exchanger::post`] under the span `cx`, which gets the endpoint and the outcome.
    async fn traced_post(
        &self,
        cx: &opentelemetry::Context,
        form: &mut Vec<(&'static str, String)>,
        asked: Asked<'_>,
        target: &Target,
        dpop: bool,
        now: u64,
    ) -> Result<Issued, ExchangeError> {
        use crate::otel::FutureExt as _;
        use opentelemetry::trace::TraceContextExt as _;
        if let Ok(endpoint) = self.token_endpoint().await {
            let host = endpoint.host_str().unwrap_or_default().to_owned();
            let port = endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("{}://{host}{port}{}", endpoint.scheme(), endpoint.path());
            cx.span().set_attributes([
                opentelemetry::KeyValue::new("server.address", host),
                opentelemetry::KeyValue::new("url.full", url),
            ]);
        }
        let r = Box::pin(self.post(form, asked, target, dpop, now))
            .with_context(cx.clone())
            .await;
        let outcome = match &r {
            Ok(_) => "ok",
            Err(ExchangeError::Refused { code, .. }) => crate::otel::error_code(code),
            Err(ExchangeError::BadAnswer(_)) => "bad_answer",
            Err(_) => "unavailable",
        };
        cx.span().set_attribute(opentelemetry::KeyValue::new(
            "baton.exchange.outcome",
            outcome,
        ));
        let status = match &r {
            Err(ExchangeError::Refused { status, .. }) => Some(*status),
            Err(ExchangeError::Unavailable { .. }) => None,
            _ => Some(200),
        };
        crate::otel::end(cx, status, false);
        r
    }

    /// A grant for the edge login (`authorization_code`, `refresh_token`, RFC 6749 §4.1.3, §6)
    /// with this client's authentication: the token response as JSON. Not fail-fast: a browser
    /// sign-in is rare and should see the real answer.
    pub async fn user_grant(
        &self,
        form: Vec<(&'static str, String)>,
    ) -> Result<Value, ExchangeError> {
        let (status, body) = self.send(&form, None, jwt::unix_now()).await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|_| ExchangeError::unavailable("token endpoint answered malformed JSON"));
        }
        Err(refusal(status, &body))
    }

    async fn post(
        &self,
        form: &mut Vec<(&'static str, String)>,
        asked: Asked<'_>,
        target: &Target,
        dpop: bool,
        now: u64,
    ) -> Result<Issued, ExchangeError> {
        let holder = dpop.then(|| self.holder());
        let (status, body) = self.send(form, holder.as_deref(), now).await?;
        if status.is_success() {
            let proof_key = holder.as_ref().map(|h| h.jkt());
            let mut issued = answer::check_for(&body, asked, target, proof_key, now)?;
            if issued.ath.is_some() {
                issued.key = holder;
            }
            return Ok(issued);
        }
        Err(refusal(status, &body))
    }

    /// Authenticates the client, posts `form` to the token endpoint (with a DPoP proof when
    /// `dpop`) and reads the answer.
    ///
    /// An IdP that asks for DPoP nonces (RFC 9449 §8) answers `use_dpop_nonce` with one in
    /// `DPoP-Nonce`: the request is sent once more with it. The latest nonce seen is kept for
    /// the next request.
    async fn send(
        &self,
        form: &[(&'static str, String)],
        dpop: Option<&Holder>,
        now: u64,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ExchangeError> {
        let endpoint = self.token_endpoint().await?;
        let mut answer = self.send_once(endpoint, form.to_vec(), dpop, now).await?;
        if dpop.is_some() && answer.2 {
            answer = self.send_once(endpoint, form.to_vec(), dpop, now).await?;
        }
        Ok((answer.0, answer.1))
    }

    /// One POST of `form`: the status, the body, and whether the IdP asked for a new nonce.
    async fn send_once(
        &self,
        endpoint: &Url,
        mut form: Vec<(&'static str, String)>,
        dpop: Option<&Holder>,
        now: u64,
    ) -> Result<(reqwest::StatusCode, Vec<u8>, bool), ExchangeError> {
        let mut req = self.http.post(endpoint.clone());
        if let Some(holder) = dpop {
            req = req.header(
                crate::dpop::HEADER,
                self.token_proof(holder, endpoint, now)?,
            );
        }
        req = self.authenticate(req, &mut form, endpoint, now)?;
        let mut trace = http::HeaderMap::new();
        crate::otel::inject(&opentelemetry::Context::current(), &mut trace);
        if !trace.is_empty() {
            req = req.headers(trace);
        }
        let rsp = req.form(&form).send().await.map_err(unavailable)?;
        let status = rsp.status();
        let renewed = self.keep_nonce(rsp.headers());
        let body = limited(rsp).await?;
        let retry = renewed
            && status == reqwest::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<ErrorResponse>(&body)
                .is_ok_and(|e| e.error == "use_dpop_nonce");
        Ok((status, body, retry))
    }
}

/// The short name of a `grant_type` value, for spans.
fn grant_name(grant: &str) -> &'static str {
    match grant {
        GRANT_TOKEN_EXCHANGE => "token_exchange",
        "client_credentials" => "client_credentials",
        "authorization_code" => "authorization_code",
        "refresh_token" => "refresh_token",
        _ => "other",
    }
}

/// The body of `rsp`, if it is not larger than an IdP answer may be.
pub(super) async fn limited(mut rsp: reqwest::Response) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    while let Some(chunk) = rsp.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ExchangeError::unavailable("IdP answer too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
