//! The echo app over gRPC: one unary method, [`METHOD`], whose answer is the same JSON as the
//! HTTP echo (`{service, claims, next}`) carried as the call's one message. Messages are raw
//! bytes in gRPC's length-prefixed framing (no protobuf schema: a proxy sees frames, and any
//! gRPC library calls it with an identity codec). The next hop is called over h2c with prior
//! knowledge at the sidecar's per-upstream port, passing on `authorization` and
//! `x-request-id`: the sidecar exchanges the token as for HTTP/1.1. A refusal from the next hop
//! (any `grpc-status` but 0) is relayed with its status, message and `www-authenticate`.

use super::{App, CLAIMS_HEADER, claims};
use crate::http::grpc::{Code, GRPC_MESSAGE, GRPC_STATUS, trailers_only};
use crate::http::{Body, BoxError};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tracing::warn;

/// The demo's gRPC method (`/package.Service/Method`).
pub const METHOD: &str = "/baton.demo.Echo/Hop";
/// The largest message the demo reads (its answers are a few KiB).
const MAX_MESSAGE: usize = 1 << 20;
/// `grpc-status` UNKNOWN, for an answer without a readable status.
const UNKNOWN: u32 = 2;
/// How long one call may take, the next hops' included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// An h2c (prior knowledge) client for gRPC calls.
#[derive(Clone)]
pub struct Client(Legacy<HttpConnector, Body>);

impl Default for Client {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Self(
            Legacy::builder(TokioExecutor::new())
                .http2_only(true)
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        )
    }
}

/// How a gRPC call ended.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `grpc-status` (0 is OK), from the trailers or a trailers-only answer.
    pub status: u32,
    /// `grpc-message` as sent (percent-encoded outside visible ASCII), if any.
    pub message: Option<HeaderValue>,
    /// `www-authenticate` metadata, if any.
    pub www_authenticate: Option<HeaderValue>,
    /// The answer's message as JSON (null when none or not JSON).
    pub body: Value,
}

/// Why a gRPC call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call could not be built (an address or metadata value that is not valid).
    #[error("build the call: {0}")]
    Build(#[source] http::Error),
    /// The connection or the stream failed.
    #[error("send the call: {0}")]
    Send(#[source] hyper_util::client::legacy::Error),
    /// The answer's body failed mid-way.
    #[error("read the answer: {0}")]
    Read(#[source] BoxError),
    /// No answer within the call's bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One message in gRPC framing: a flag byte (0, uncompressed), a big-endian length, the bytes.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// The first message of a gRPC body, when it is uncompressed and complete.
pub fn first_message(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    (flag == 0).then_some(())?;
    rest.get(4..4 + len)
}

/// Calls [`METHOD`] at `addr` over h2c with `metadata` (lowercase names), an empty request
/// message, and reads the answer.
pub async fn call(
    client: &Client,
    addr: SocketAddr,
    metadata: &HeaderMap,
) -> Result<Answer, CallError> {
    let uri: Uri = format!("http://{addr}{METHOD}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| CallError::Build(e.into()))?;
    let mut req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(crate::http::full(frame(b"")))
        .map_err(CallError::Build)?;
    for (name, value) in metadata {
        req.headers_mut().append(name, value.clone());
    }
    let send = async {
        let rsp = client.0.request(req).await.map_err(CallError::Send)?;
        let (head, body) = rsp.into_parts();
        let collected = http_body_util::Limited::new(body, MAX_MESSAGE + 5)
            .collect()
            .await
            .map_err(CallError::Read)?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let bytes = collected.to_bytes();
        // A trailers-only answer carries the status in its headers.
        let meta = |name: &header::HeaderName| {
            trailers
                .get(name)
                .or_else(|| head.headers.get(name))
                .cloned()
        };
        let status = meta(&GRPC_STATUS)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(UNKNOWN);
        let body = first_message(&bytes)
            .and_then(|m| serde_json::from_slice(m).ok())
            .unwrap_or(Value::Null);
        Ok(Answer {
            status,
            message: meta(&GRPC_MESSAGE),
            www_authenticate: meta(&header::WWW_AUTHENTICATE),
            body,
        })
    };
    tokio::time::timeout(CALL_TIMEOUT, send)
        .await
        .map_err(|_| CallError::Timeout(CALL_TIMEOUT))?
}

/// Answers a gRPC call of [`METHOD`]: this hop's claims and, when the app has a next hop over
/// gRPC, that hop's answer nested under `next`.
pub(super) async fn handle(app: &App, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.uri().path() != METHOD {
        return trailers_only(Code::Unimplemented, "unknown method");
    }
    let seen = claims(req.headers(), CLAIMS_HEADER);
    let (head, body) = req.into_parts();
    if crate::http::read_limited(body, MAX_MESSAGE).await.is_err() {
        return trailers_only(Code::ResourceExhausted, "request message too large");
    }
    let mut answer = json!({"service": app.cfg.name, "claims": seen, "next": null});
    if let Some(next) = app.cfg.grpc_next {
        let mut metadata = HeaderMap::new();
        for name in [header::AUTHORIZATION.as_str(), "x-request-id"] {
            if let Some(v) = head.headers.get(name) {
                metadata.insert(name, v.clone());
            }
        }
        match call(&app.h2, next, &metadata).await {
            Ok(next) if next.status == 0 => answer["next"] = next.body,
            Ok(refused) => return relay(&refused),
            Err(e) => {
                warn!(error = %e, "next hop failed");
                return trailers_only(Code::Unavailable, "next hop unreachable");
            }
        }
    }
    let message = frame(&serde_json::to_vec(&answer).unwrap_or_default());
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, BoxError>(Frame::data(message)),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut rsp = Response::new(StreamBody::new(frames).boxed());
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    rsp
}

/// `refused` as this hop's own trailers-only answer: the same status, message and challenge.
fn relay(refused: &Answer) -> Response<Body> {
    let mut rsp = trailers_only(Code::Unavailable, "");
    let h = rsp.headers_mut();
    h.insert(GRPC_STATUS, HeaderValue::from(refused.status));
    h.remove(GRPC_MESSAGE);
    if let Some(m) = &refused.message {
        h.insert(GRPC_MESSAGE, m.clone());
    }
    if let Some(www) = &refused.www_authenticate {
        h.insert(header::WWW_AUTHENTICATE, www.clone());
    }
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_reads_back_and_bad_frames_do_not() {
        let f = frame(b"hello");
        assert_eq!(&f[..5], b"\0\0\0\0\x05");
        assert_eq!(first_message(&f), Some(&b"hello"[..]));
        assert_eq!(first_message(&f[..7]), None, "truncated");
        assert_eq!(first_message(b"\x01\0\0\0\x01x"), None, "compressed");
        assert_eq!(first_message(b""), None);
        assert_eq!(first_message(&frame(b"")), Some(&b""[..]));
    }
}
