//! Header rewriting and the keep-alive connections that forward to the app, streaming both ways.

use super::Reject;
use crate::http::{Body, BoxError, strip_hop_by_hop};
use bytes::Bytes;
use http::header::HeaderName;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use tokio::net::TcpStream;

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

/// Idle keep-alive connections to the app kept at most; more are closed when they fall idle.
const MAX_IDLE: usize = 256;

/// Keep-alive HTTP/1.1 connections to the app, one `hyper::client::conn::http1` sender each.
///
/// The app is one fixed address on loopback, so this is a plain stack of idle senders rather
/// than hyper-util's general pool (keyed by authority, with a task spawned per request to put
/// the connection back): a connection returns to the stack when the response body that came on
/// it has been read to the end, and a request goes out on the most recently used connection.
#[derive(Clone, Default)]
pub struct App {
    idle: Arc<Idle>,
}

/// The idle connections, most recently used last.
type Idle = Mutex<Vec<SendRequest<Body>>>;

impl App {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to the app at `addr` (`authority` is its `host:port`, made once per
    /// configuration, and the `Host` sent when the client gave none), keeping path and query;
    /// the response body streams back.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        authority: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Reject> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = http::Version::HTTP_11;
        if !req.headers().contains_key(http::header::HOST) {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|_| Reject::Internal)?;
            req.headers_mut().insert(http::header::HOST, host);
        }
        let (sender, rsp) = self.send(addr, req).await.map_err(|e| {
            tracing::warn!(app = %addr, error = %e, "forward to app failed");
            Reject::AppUnavailable
        })?;
        let (mut parts, body) = rsp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = Returning {
            body,
            ended: false,
            back: Some((sender, Arc::downgrade(&self.idle))),
        };
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// Sends on an idle connection, or on a new one when none is left. A request that an idle
    /// connection could not take (the app closed it meanwhile) comes back unsent and goes out on
    /// the next; a request that was sent is never sent twice.
    async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<(SendRequest<Body>, Response<Incoming>), BoxError> {
        loop {
            let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut sender) = pooled else { break };
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(rsp) => return Ok((sender, rsp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = connect(addr).await?;
        let rsp = sender.send_request(req).await?;
        Ok((sender, rsp))
    }
}

/// Opens a connection to the app; its connection task runs until either side closes it.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(app = %addr, error = %e, "app connection ended with an error");
        }
    });
    Ok(sender)
}

/// The app's response body; puts its connection back in the pool once read to the end.
struct Returning {
    body: Incoming,
    ended: bool,
    back: Option<(SendRequest<Body>, Weak<Idle>)>,
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body dropped before its end leaves unread bytes on the connection: hyper closes it.
        if !(self.ended || http_body::Body::is_end_stream(&self.body)) {
            return;
        }
        if let Some((sender, pool)) = self.back.take()
            && let Some(pool) = pool.upgrade()
        {
            let mut idle = pool.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(sender);
            }
        }
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

    /// An app on loopback answering `body` to every request; counts the connections it accepts.
    /// With `keep_alive` false it closes each connection after one answer.
    async fn app(
        keep_alive: bool,
        body: &'static [u8],
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(Response::new(crate::http::full(body)))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(tcp), svc),
                );
            }
        });
        (addr, accepted)
    }

    async fn get(pool: &App, addr: SocketAddr) -> Response<Body> {
        let authority = Authority::try_from(addr.to_string()).expect("authority");
        let req = Request::get("http://ignored/x?y=1")
            .body(crate::http::empty())
            .expect("request");
        pool.forward(addr, &authority, req).await.expect("forward")
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_carries_the_next_request() {
        let (addr, accepted) = app(true, b"hello").await;
        let pool = App::new();
        for _ in 0..20 {
            let body = get(&pool, addr).await.into_body().collect().await;
            assert_eq!(body.expect("body").to_bytes(), &b"hello"[..]);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connections_the_app_closes_are_replaced_without_a_failed_request() {
        let (addr, accepted) = app(false, b"bye").await;
        let pool = App::new();
        for _ in 0..10 {
            let body = get(&pool, addr).await.into_body().collect().await;
            assert_eq!(body.expect("body").to_bytes(), &b"bye"[..]);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_does_not_return_its_connection() {
        static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
        let (addr, accepted) = app(true, &BIG).await;
        let pool = App::new();
        drop(get(&pool, addr).await);
        let body = get(&pool, addr).await.into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes().len(), BIG.len());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        let body = get(&pool, addr).await.into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes().len(), BIG.len());
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the connection read to the end is reused"
        );
    }

    #[tokio::test]
    async fn an_app_that_is_down_is_app_unavailable() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let authority = Authority::try_from(addr.to_string()).expect("authority");
        let req = Request::get("/")
            .body(crate::http::empty())
            .expect("request");
        let err = App::new().forward(addr, &authority, req).await.err();
        assert!(matches!(err, Some(Reject::AppUnavailable)));
    }
}
