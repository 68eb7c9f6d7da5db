//! gRPC as a proxy sees it: which requests are gRPC calls, the one mapping from a refusal's HTTP
//! status to a gRPC status, trailers-only answers, and `grpc-timeout`.
//!
//! A gRPC client reads its call's outcome from `grpc-status` in the trailers, and takes any
//! other HTTP status than 200 for a transport failure (`UNAVAILABLE`, "Received http2 header with
//! status: 401"). So a refusal of a gRPC call is a trailers-only response (HTTP 200, `HEADERS`
//! with `END_STREAM`) carrying `grpc-status` and `grpc-message`; the headers a client needs to
//! act on it (`www-authenticate` with its RFC 6750 / RFC 9470 parameters, `retry-after`) stay as
//! response metadata. Every listener builds its refusal as for HTTP and passes it through
//! [`refusal`] when the request was a gRPC call: one place decides the gRPC form.

use super::{Body, empty};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use std::time::Duration;

/// The gRPC status codes a refusal may carry (the numbers are the protocol's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// The request was malformed (an HTTP 400).
    InvalidArgument = 3,
    /// The deadline (the sidecar's or the call's `grpc-timeout`) passed.
    DeadlineExceeded = 4,
    /// Authenticated, but not allowed: missing scope or claim, no route.
    PermissionDenied = 7,
    /// A limit was reached (body size).
    ResourceExhausted = 8,
    /// No such method here.
    Unimplemented = 12,
    /// The sidecar failed.
    Internal = 13,
    /// The IdP, the app or the upstream could not be reached; retrying may help.
    Unavailable = 14,
    /// No valid credentials: missing, bad or too weak a token.
    Unauthenticated = 16,
}

impl Code {
    /// The gRPC status for a refusal answered to HTTP clients with `status`.
    pub fn for_refusal(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 | 405 => Code::Unimplemented,
            413 | 429 => Code::ResourceExhausted,
            502 | 503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => Code::Internal,
        }
    }

    /// The decimal value `grpc-status` carries.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from(u16::from(self as u8))
    }
}

/// The `grpc-status` header (and trailer).
pub const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");

/// The `grpc-message` header (and trailer).
pub const GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");

/// The `grpc-timeout` request header.
pub const GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");

/// The human-readable reason of a refusal, which its builder leaves in the response's extensions
/// for [`refusal`] (an HTTP client reads it in the body instead).
#[derive(Debug, Clone)]
pub struct Message(pub String);

/// Whether the request is a gRPC call: `content-type` is `application/grpc`, alone or followed
/// by `+format` or parameters (case-insensitive, as media types are).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= GRPC.len()
            && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
            && matches!(v.get(GRPC.len()), None | Some(b'+' | b';' | b' '))
    })
}

/// A trailers-only gRPC answer: HTTP 200, `grpc-status` `code`, `grpc-message` `message`
/// (percent-encoded as the protocol asks), no body.
pub fn trailers_only(code: Code, message: &str) -> Response<Body> {
    let mut rsp = Response::new(empty());
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS, code.header_value());
    if let Ok(v) = HeaderValue::try_from(percent_encode(message)) {
        h.insert(GRPC_MESSAGE, v);
    }
    rsp
}

/// A refusal built for HTTP clients, in the form a gRPC client reads: the status mapped by
/// [`Code::for_refusal`], the reason from its [`Message`] (or the status's own words), and its
/// `www-authenticate` and `retry-after` kept as metadata. The HTTP body goes.
pub fn refusal(rsp: Response<Body>) -> Response<Body> {
    let status = rsp.status();
    let message = match rsp.extensions().get::<Message>() {
        Some(m) => m.0.clone(),
        None => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let mut out = trailers_only(Code::for_refusal(status), &message);
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        for v in rsp.headers().get_all(&name) {
            out.headers_mut().append(name.clone(), v.clone());
        }
    }
    out
}

/// `refusal(rsp)` when `grpc`, else `rsp` as it is.
pub fn answer(rsp: Response<Body>, grpc: bool) -> Response<Body> {
    if grpc { refusal(rsp) } else { rsp }
}

/// The call's deadline from `grpc-timeout`: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). Anything else is no deadline, as gRPC servers read it.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A gRPC request body whose every message must be at most `limit` bytes: the stream as a
/// whole may run on (a long-lived bidirectional call), a message larger than the limit ends it
/// with an error before its bytes go further. Messages are read from their 5-byte prefixes
/// (a flag byte, a big-endian length) across frame boundaries; frames pass unchanged and
/// trailers pass too.
pub struct MessageLimit<B> {
    body: B,
    limit: usize,
    /// Bytes of the current prefix read so far, and the prefix itself.
    prefix_len: usize,
    prefix: [u8; 5],
    /// Bytes of the current message's payload still to come.
    payload: usize,
    /// Set when a message went over the limit.
    tripped: Tripped,
}

/// Whether a [`MessageLimit`] refused a message: the request's sender reads it after the send
/// failed (HTTP/2 reports the stream's reset, not the body's error), to answer
/// `RESOURCE_EXHAUSTED` rather than blame the peer.
#[derive(Debug, Clone, Default)]
pub struct Tripped(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Tripped {
    /// Whether the limit was hit.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A gRPC message larger than the listener allows.
#[derive(Debug, thiserror::Error)]
#[error("gRPC message of {size} bytes is larger than the limit of {limit}")]
pub struct MessageTooLarge {
    /// The declared size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

impl<B> MessageLimit<B> {
    /// `body` with messages of at most `limit` bytes.
    pub fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            limit,
            prefix_len: 0,
            prefix: [0; 5],
            payload: 0,
            tripped: Tripped::default(),
        }
    }

    /// The flag this body sets when it refuses a message.
    pub fn tripped(&self) -> Tripped {
        self.tripped.clone()
    }

    /// Walks `data` through the message framing; the first message over the limit is an error.
    fn check(&mut self, mut data: &[u8]) -> Result<(), MessageTooLarge> {
        while !data.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(data.len());
                self.payload -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let size = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
                if size > self.limit {
                    self.tripped
                        .0
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(MessageTooLarge {
                        size,
                        limit: self.limit,
                    });
                }
                self.payload = size;
            }
        }
        Ok(())
    }
}

impl<B> http_body::Body for MessageLimit<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<super::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        let std::task::Poll::Ready(Some(Ok(frame))) = polled else {
            return polled.map(|f| f.map(|r| r.map_err(Into::into)));
        };
        if let Some(data) = frame.data_ref() {
            this.check(data)?;
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// `grpc-message` encoding: bytes outside visible ASCII and space, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::text;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn grpc_content_types_and_nothing_else() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(&headers(&[("content-type", yes)])), "{yes}");
        }
        for no in [
            "application/grpcx",
            "application/grpc-web",
            "application/json",
            "text/grpc",
            "application/grp",
        ] {
            assert!(!is_grpc(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn a_refusal_becomes_trailers_only_with_the_challenge_kept() {
        let mut rsp = text(StatusCode::UNAUTHORIZED, "no token\n");
        rsp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"b\", error=\"insufficient_user_authentication\", acr_values=\"mfa\""),
        );
        rsp.extensions_mut()
            .insert(Message("stronger authentication: 100% é\n".into()));
        let g = refusal(rsp);
        assert_eq!(g.status(), StatusCode::OK);
        assert_eq!(g.headers()[GRPC_STATUS], "16");
        assert_eq!(
            g.headers()[GRPC_MESSAGE],
            "stronger authentication: 100%25 %C3%A9%0A"
        );
        assert_eq!(g.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(
            g.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .is_ok_and(|v| v.contains("acr_values=\"mfa\""))
        );
        assert!(http_body::Body::is_end_stream(g.body()), "trailers-only");
    }

    #[test]
    fn statuses_map_to_the_codes_a_client_acts_on() {
        for (status, code) in [
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (503, Code::Unavailable),
            (502, Code::Unavailable),
            (504, Code::DeadlineExceeded),
            (400, Code::InvalidArgument),
            (413, Code::ResourceExhausted),
            (500, Code::Internal),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(Code::for_refusal(status), code, "{status}");
        }
    }

    #[tokio::test]
    async fn messages_over_the_limit_end_the_stream_whatever_the_framing() {
        use http_body_util::BodyExt;
        let message = |n: usize| {
            let mut m = vec![0u8];
            m.extend_from_slice(&u32::try_from(n).expect("size").to_be_bytes());
            m.extend(std::iter::repeat_n(b'x', n));
            m
        };
        // Many messages at the limit: a stream longer than the limit passes.
        let stream: Vec<u8> = (0..10).flat_map(|_| message(100)).collect();
        // One message over it, after two that pass.
        let mut over = message(100);
        over.extend(message(100));
        over.extend(message(101));
        for split in [1, 3, 5, 7, 64, 10_000] {
            let frames = |bytes: &[u8]| {
                let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, crate::http::BoxError>> =
                    bytes
                        .chunks(split)
                        .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
                        .collect();
                http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
            };
            let passed = MessageLimit::new(frames(&stream), 100).collect().await;
            assert_eq!(
                passed.map(|c| c.to_bytes().len()).ok(),
                Some(stream.len()),
                "split {split}"
            );
            let limited = MessageLimit::new(frames(&over), 100);
            let tripped = limited.tripped();
            assert!(!tripped.is_set());
            let refused = limited.collect().await;
            assert!(
                refused.is_err_and(|e| e.is::<MessageTooLarge>()),
                "split {split}"
            );
            assert!(tripped.is_set());
        }
    }

    #[test]
    fn grpc_timeout_is_read_as_the_protocol_spells_it() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "1", "123456789S", "1s", "-1S", "1.5S", "1 S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }
}
