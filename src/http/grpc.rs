//! gRPC as a proxy sees it: which requests are gRPC calls, the one mapping from a refusal's HTTP
//! status to a gRPC status, trailers-only answers, `grpc-timeout`, and a limit on the size of
//! each message of a request ([`MessageLimit`]).
//!
//! A gRPC client reads its call's outcome from `grpc-status` in the trailers, and takes any
//! other HTTP status than 200 for a transport failure (`UNAVAILABLE`, "Received http2 header with
//! status: 401"). So a refusal of a gRPC call is a trailers-only response (HTTP 200, `HEADERS`
//! with `END_STREAM`) carrying `grpc-status` and `grpc-message`; the headers a client needs to
//! act on it (`www-authenticate` with its RFC 6750 / RFC 9470 parameters, `retry-after`) stay as
//! response metadata. Every listener builds its refusal as for HTTP and passes it through
//! [`refusal`] when the request was a gRPC call: one place decides the gRPC form.

mod limit;

pub use limit::{MessageLimit, MessageTooLarge, Tripped};

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
mod tests;
