//! Shared HTTP plumbing: the boxed body type, size-limited body reads, JSON and form helpers;
//! [`cookie`] sealed cookies; [`grpc`] gRPC refusals, statuses and deadlines;
//! [`path`] makes request paths canonical.

pub mod cookie;
pub mod grpc;
pub(crate) mod in_flight;
pub mod path;
pub mod pool;
pub(crate) mod splice;
pub mod upgrade;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::BoxBody};
use serde::Serialize;

/// Error type carried by every body in baton.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type that handlers return and proxies stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body was larger than the listener allows.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("read request body: {0}")]
    Read(BoxError),
}

/// Reads a whole body, refusing more than `limit` bytes (`http-body-util::Limited`).
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// A JSON response with `Cache-Control: no-store` (RFC 6749 §5.1 for anything carrying tokens).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut rsp = Response::new(full(bytes));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    rsp
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut rsp = Response::new(full(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

/// A redirect (`302`/`303`) to `location` with `Cache-Control: no-store`: the URLs carry codes,
/// `state` or return paths that no cache may keep. An unrepresentable location gives no header.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut rsp = text(status, "redirecting\n");
    let h = rsp.headers_mut();
    if let Ok(v) = HeaderValue::try_from(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded by either listener. `Upgrade` is among
/// them: baton does not tunnel upgraded connections (`CONNECT` is handled on its own).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers a `Connection` option can never remove: each proxy hop needs them end to end.
static END_TO_END: [HeaderName; 2] = [header::AUTHORIZATION, header::HOST];

/// The request id header: passed on when the client sent one, generated when absent.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh request id: 32 random lowercase hex digits. An id correlates log lines and is no
/// secret (a client may send its own), so it comes from a fast thread-local generator; the
/// cryptographic one cost the sidecar's every request about 300 instructions.
pub fn new_request_id() -> HeaderValue {
    request_id(fastrand::u128(..))
}

/// 32 lowercase hex digits of `id`.
fn request_id(id: u128) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    // A byte at a time: two digits per step, no 128-bit shift per digit.
    for (pair, byte) in out.chunks_exact_mut(2).zip(id.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// Removes hop-by-hop headers: the fixed list and every header named in `Connection`
/// (RFC 9110 §7.6.1). `Proxy-Authorization` is meant for the proxy only and goes too.
/// `Connection` cannot name `Authorization` or `Host`: those tokens are ignored, so a client
/// cannot have the token it sent removed after verification (the app would get the claims but no
/// token to propagate) or the request sent without `Host`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each header name is cheaper than hashing nine
    // names to remove them.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !END_TO_END.contains(n))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether the request's `TE` holds `trailers` (RFC 9110 §10.1.4), in any case.
pub fn asks_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Whether `name` is one of [`HOP_BY_HOP`]: a jump on the length, then at most two compares,
/// where comparing with each of the nine would cost a byte compare for every custom name.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let s = name.as_str();
    match s.len() {
        2 => s == "te",
        7 => s == "trailer" || s == "upgrade",
        10 => s == "connection" || s == "keep-alive",
        16 => s == "proxy-connection",
        17 => s == "transfer-encoding",
        18 => s == "proxy-authenticate",
        19 => s == "proxy-authorization",
        _ => false,
    }
}

/// Why a form could not be parsed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A parameter that may appear once appeared more than once (RFC 6749 §3.1).
    #[error("parameter {0} repeated")]
    Repeated(String),
}

/// An `application/x-www-form-urlencoded` body as ordered pairs.
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a form body. Never fails: invalid percent-encoding is decoded lossily.
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The single value of `name`; a repeated parameter is an error, and a parameter without a
    /// value counts as omitted (RFC 6749 §3.1).
    pub fn one<'a>(&'a self, name: &str) -> Result<Option<&'a str>, FormError> {
        let mut found = self.values(name);
        let first = found.next();
        if found.next().is_some() {
            return Err(FormError::Repeated(name.to_owned()));
        }
        Ok(first)
    }

    /// Every value of a repeatable parameter such as `resource` or `audience` (RFC 8693 §2.1).
    pub fn all<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.values(name).collect()
    }

    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits() {
        assert_eq!(
            request_id(0x0123_4567_89ab_cdef_0011_2233_4455_6677).as_bytes(),
            b"0123456789abcdef0011223344556677"
        );
        assert_eq!(request_id(u128::MAX).as_bytes(), &[b'f'; 32]);
    }

    #[test]
    fn the_hop_by_hop_check_matches_the_list_and_nothing_else() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        // Names of the same lengths as the nine, standard and custom, and prefixes of them.
        for other in [
            "tz",
            "trailers",
            "upgrade-x",
            "user-agent",
            "set-cookie",
            "connectionx",
            "keep-alivf",
            "x-baton-claims",
            "content-location",
            "proxy-connections",
            "www-authenticate",
            "proxy-authorizatio",
            "content-encoding",
            "te-x",
            "host",
            "x-request-id",
        ] {
            let name = HeaderName::from_bytes(other.as_bytes()).expect("valid name");
            assert!(!is_hop_by_hop(&name), "{other}");
        }
    }

    #[test]
    fn connection_cannot_name_authorization_or_host() {
        for connection in [
            "Authorization",
            "authorization",
            "AUTHORIZATION, close",
            "keep-alive, Host,x-hop",
            " host ",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
            h.insert(header::HOST, HeaderValue::from_static("b.example"));
            h.insert("x-hop", HeaderValue::from_static("1"));
            h.insert(
                header::CONNECTION,
                HeaderValue::try_from(connection).expect("value"),
            );
            strip_hop_by_hop(&mut h);
            assert!(h.get(header::AUTHORIZATION).is_some(), "{connection}");
            assert!(h.get(header::HOST).is_some(), "{connection}");
            assert!(h.get(header::CONNECTION).is_none());
            assert_eq!(h.get("x-hop").is_none(), connection.contains("x-hop"));
        }
    }

    #[test]
    fn form_refuses_repeated_single_parameters() {
        let f = Form::parse(b"grant_type=a&grant_type=b&resource=x&resource=y");
        assert_eq!(
            f.one("grant_type"),
            Err(FormError::Repeated("grant_type".into()))
        );
        assert_eq!(f.all("resource"), vec!["x", "y"]);
        assert_eq!(f.one("missing"), Ok(None));
        let empty_twin = Form::parse(b"scope=&scope=a");
        assert_eq!(empty_twin.one("scope"), Ok(Some("a")));
    }

    #[tokio::test]
    async fn read_limited_refuses_oversized_bodies() {
        let err = read_limited(Full::new(Bytes::from(vec![0u8; 100])), 10).await;
        assert!(matches!(err, Err(BodyError::TooLarge { limit: 10 })));
        let ok = read_limited(Full::new(Bytes::from_static(b"abc")), 10).await;
        assert_eq!(ok.ok(), Some(Bytes::from_static(b"abc")));
    }
}
