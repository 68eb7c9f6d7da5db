//! Header rewriting and the pooled client that forwards to the app, streaming both ways.

use super::Reject;
use crate::http::{Body, BoxError, strip_hop_by_hop};
use http::header::HeaderName;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;

/// The request id header, generated when absent.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Rewrites the identity headers: any client-supplied `claims_header` is removed, the verified
/// claims (if any, already base64url JSON: [`crate::jwt::Verified::claims_header`]) are added,
/// and `x-request-id` is generated when absent. `Authorization` stays so the app can propagate
/// it through the outbound listener.
pub fn rewrite_headers(
    headers: &mut HeaderMap,
    claims_header: &HeaderName,
    claims: Option<&HeaderValue>,
) -> Result<(), Reject> {
    strip_hop_by_hop(headers);
    headers.remove(claims_header);
    if let Some(claims) = claims {
        headers.insert(claims_header.clone(), claims.clone());
    }
    if !headers.contains_key(&REQUEST_ID) {
        headers.insert(REQUEST_ID, request_id(rand::random()));
    }
    Ok(())
}

/// 32 lowercase hex digits of `id`.
fn request_id(id: u128) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// A pooled HTTP/1.1 client to the app.
#[derive(Clone)]
pub struct App {
    client: Client<HttpConnector, Body>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// A client with a connection pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `req` to the app at `addr` (`authority` is its `host:port`, made once per
    /// configuration), keeping path and query; the response body streams back.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        authority: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Reject> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Reject::Internal)?;
        *req.version_mut() = http::Version::HTTP_11;
        let rsp = self.client.request(req).await.map_err(|e| {
            tracing::warn!(app = %addr, error = %e, "forward to app failed");
            Reject::AppUnavailable
        })?;
        let (mut parts, body) = rsp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            body.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Claims;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::header;
    use serde_json::json;

    #[test]
    fn request_ids_are_32_hex_digits() {
        assert_eq!(
            request_id(0x0123_4567_89ab_cdef_0011_2233_4455_6677).as_bytes(),
            b"0123456789abcdef0011223344556677"
        );
        assert_eq!(request_id(u128::MAX).as_bytes(), &[b'f'; 32]);
    }

    #[test]
    fn identity_headers_are_replaced_and_hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        let claims_header = HeaderName::from_static("x-baton-claims");
        h.insert(
            &claims_header,
            HeaderValue::from_static("eyJzdWIiOiJhZG1pbiJ9"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        rewrite_headers(&mut h, &claims_header, None).expect("rewrite");
        assert!(
            h.get(&claims_header).is_none(),
            "spoofed claims header stripped"
        );
        assert!(h.get("x-secret-hop").is_none() && h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(
            h.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..])
        );
        assert_eq!(h.get(REQUEST_ID).map(|v| v.len()), Some(32));

        let claims = json!({"sub": "alice"})
            .as_object()
            .cloned()
            .expect("object");
        let value = HeaderValue::try_from(
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json")),
        )
        .expect("header value");
        h.insert(REQUEST_ID, HeaderValue::from_static("given"));
        rewrite_headers(&mut h, &claims_header, Some(&value)).expect("rewrite");
        let sent = URL_SAFE_NO_PAD
            .decode(h.get(&claims_header).expect("claims").as_bytes())
            .expect("b64");
        assert_eq!(
            serde_json::from_slice::<Claims>(&sent).expect("json"),
            claims
        );
        assert_eq!(h.get(REQUEST_ID).map(|v| v.as_bytes()), Some(&b"given"[..]));
    }
}
