//! e2e: gRPC-shaped HTTP/2 through the inbound listener with `app_protocol: http2`, driven with
//! hyper's own HTTP/2 client and server on both ends: trailers and `TE: trailers` reach the
//! other side, `grpc-timeout` against the sidecar's `request_timeout`, refusals as gRPC
//! statuses (IdP unavailable → 14), and a stream that outlives the start of a drain.
//! The grpcio suite (tests/interop/test_grpc.py) drives the same paths with a gRPC library.

use crate::support::fake_idp::FakeIdp;
use crate::support::tokens::{access, claims};
use baton::config::Config;
use baton::http::{Body, BoxError, full};
use baton::inbound::{self, Inbound};
use baton::jwt::Algorithm;
use baton::jwt::jwks::Jwks;
use baton::jwt::keys::SigningKey;
use baton::telemetry::Metrics;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const AUD: &str = "service-b";

/// What the app saw of the last call.
#[derive(Default)]
struct Seen {
    headers: Option<HeaderMap>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

/// An HTTP/2-only (h2c) app: `/echo.Svc/Echo` answers the request's body back, then trailers
/// `grpc-status: 0` and `x-trailer`; `/slow.Svc/Wait` never answers; `/stream.Svc/Feed`
/// sends what the test pushes into `feed`, then trailers.
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl App {
    async fn start(feed: mpsc::Receiver<Bytes>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let feed = Arc::new(Mutex::new(Some(feed)));
        let (s, f) = (seen.clone(), feed);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (s, f) = (s.clone(), f.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (s, f) = (s.clone(), f.clone());
                        async move { Ok::<_, std::convert::Infallible>(app(req, &s, &f).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        App { addr, seen }
    }
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t.insert("x-trailer", HeaderValue::from_static("kept"));
    t
}

async fn app(
    req: Request<Incoming>,
    seen: &Mutex<Seen>,
    feed: &Mutex<Option<mpsc::Receiver<Bytes>>>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    seen.lock().expect("lock").headers = Some(parts.headers.clone());
    match path.as_str() {
        "/slow.Svc/Wait" => std::future::pending().await,
        "/stream.Svc/Feed" => {
            let rx = feed.lock().expect("lock").take().expect("one feed");
            let frames = futures::stream::unfold(Some(rx), |rx| async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(b) => Some((Ok::<_, BoxError>(Frame::data(b)), Some(rx))),
                    None => Some((Ok(Frame::trailers(trailers())), None)),
                }
            });
            Response::new(StreamBody::new(frames).boxed())
        }
        _ => {
            let collected = body.collect().await.expect("request body");
            let mut s = seen.lock().expect("lock");
            s.trailers = collected.trailers().cloned();
            s.body = collected.to_bytes().to_vec();
            let back = Bytes::from(s.body.clone());
            let frames = futures::stream::iter([
                Ok::<_, BoxError>(Frame::data(back)),
                Ok(Frame::trailers(trailers())),
            ]);
            Response::new(StreamBody::new(frames).boxed())
        }
    }
}

struct Sidecar {
    addr: SocketAddr,
    shutdown: baton::shutdown::Trigger,
    jwks: Arc<Jwks>,
}

async fn sidecar(idp: &FakeIdp, app: SocketAddr, request_timeout: &str) -> Sidecar {
    let yaml = format!(
        r#"
issuer: {issuer}
audience: {AUD}
app: "{app}"
inbound: {{app_protocol: http2}}
jwks: {{retry: 50ms, fetch_timeout: 2s}}
limits: {{request_timeout: {request_timeout}, shutdown_grace: 20s}}
outbound: {{client: {{client_id: service-b, secret: test-only}}}}
routes:
  - {{name: default, path: /}}
"#,
        issuer = idp.issuer,
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("test config");
    let metrics = Arc::new(Metrics::new());
    let client = baton::jwt::jwks::http_client().expect("client");
    let jwks = Jwks::start(
        &cfg.issuer,
        &cfg.algorithms,
        cfg.jwks.clone(),
        client,
        metrics.clone(),
    );
    let state = Arc::new(Inbound::new(&cfg, jwks.clone(), metrics));
    let (shutdown, wait) = baton::shutdown::channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(inbound::serve(state, listener, wait.wait()));
    Sidecar {
        addr,
        shutdown,
        jwks,
    }
}

/// An h2c client connection to `addr`.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn grpc_request(addr: SocketAddr, path: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::try_from(format!("Bearer {t}")).expect("value"),
        );
    }
    req
}

/// A request body of `data` then `trailers`.
fn with_trailers(data: &'static [u8], trailers: HeaderMap) -> Body {
    let frames = futures::stream::iter([
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(data))),
        Ok(Frame::trailers(trailers)),
    ]);
    StreamBody::new(frames).boxed()
}

async fn ready(s: &Sidecar) {
    tokio::time::timeout(Duration::from_secs(20), s.jwks.wait_ready())
        .await
        .expect("JWKS loads");
}

#[test_log::test(tokio::test)]
async fn trailers_and_te_pass_both_ways_over_http2_with_the_claims_header() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let (_tx, rx) = mpsc::channel(1);
    let app = App::start(rx).await;
    let s = sidecar(&idp, app.addr, "30s").await;
    ready(&s).await;
    let token = access(&key, &claims(&idp.issuer, AUD));
    let mut client = h2(s.addr).await;
    let mut sent_trailers = HeaderMap::new();
    sent_trailers.insert("x-client-trailer", HeaderValue::from_static("c"));
    let mut req = grpc_request(
        s.addr,
        "/echo.Svc/Echo",
        Some(&token),
        with_trailers(b"\0\0\0\0\x05hello", sent_trailers),
    );
    req.headers_mut()
        .insert("x_baton_claims", HeaderValue::from_static("c3Bvb2Y"));
    let rsp = client.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 200);
    let collected = rsp.into_body().collect().await.expect("body");
    let got_trailers = collected.trailers().cloned().expect("trailers came back");
    assert_eq!(got_trailers["grpc-status"], "0");
    assert_eq!(got_trailers["x-trailer"], "kept");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x05hello");
    let seen = app.seen.lock().expect("lock");
    let headers = seen.headers.as_ref().expect("app saw the call");
    assert_eq!(
        headers["te"], "trailers",
        "TE: trailers asked again on the app's hop"
    );
    assert!(headers.contains_key("x-baton-claims"));
    assert!(!headers.contains_key("x_baton_claims"), "twin removed");
    assert_eq!(
        seen.trailers
            .as_ref()
            .map(|t| t["x-client-trailer"].clone()),
        Some(HeaderValue::from_static("c")),
        "the client's trailers reach the app"
    );
}

#[test_log::test(tokio::test)]
async fn the_smaller_of_grpc_timeout_and_request_timeout_wins() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let (_tx, rx) = mpsc::channel(1);
    let app = App::start(rx).await;
    // The sidecar's own limit is long; the call's deadline is short, and answers first.
    let s = sidecar(&idp, app.addr, "1h").await;
    ready(&s).await;
    let token = access(&key, &claims(&idp.issuer, AUD));
    let mut client = h2(s.addr).await;
    let mut req = grpc_request(s.addr, "/slow.Svc/Wait", Some(&token), full(""));
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("200m"));
    let rsp = tokio::time::timeout(Duration::from_secs(60), client.send_request(req))
        .await
        .expect("answered within the test's bound")
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    // The sidecar's limit short, the call's long: the sidecar's wins, answered the same way.
    let s = sidecar(&idp, app.addr, "300ms").await;
    ready(&s).await;
    let mut client = h2(s.addr).await;
    let mut req = grpc_request(s.addr, "/slow.Svc/Wait", Some(&token), full(""));
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("1H"));
    let rsp = tokio::time::timeout(Duration::from_secs(60), client.send_request(req))
        .await
        .expect("answered within the test's bound")
        .expect("response");
    assert_eq!(rsp.headers()["grpc-status"], "4");
    // Not a gRPC call: HTTP clients keep their 504.
    let mut req = grpc_request(s.addr, "/slow.Svc/Wait", Some(&token), full(""));
    req.headers_mut().remove("content-type");
    let rsp = tokio::time::timeout(Duration::from_secs(60), client.send_request(req))
        .await
        .expect("answered within the test's bound")
        .expect("response");
    assert_eq!(rsp.status(), 504);
}

#[test_log::test(tokio::test)]
async fn refusals_are_grpc_statuses_and_http_clients_keep_theirs() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    // The IdP is down from the start: no signing keys ever load.
    idp.set_up(false);
    let (_tx, rx) = mpsc::channel(1);
    let app = App::start(rx).await;
    let s = sidecar(&idp, app.addr, "30s").await;
    let token = access(&key, &claims(&idp.issuer, AUD));
    let mut client = h2(s.addr).await;
    let rsp = client
        .send_request(grpc_request(
            s.addr,
            "/echo.Svc/Echo",
            Some(&token),
            full(""),
        ))
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "14", "UNAVAILABLE");
    assert!(rsp.headers().contains_key("retry-after"));
    assert!(http_body::Body::is_end_stream(rsp.body()), "trailers-only");
    // No token: 16 with the RFC 6750 challenge as metadata.
    let rsp = client
        .send_request(grpc_request(s.addr, "/echo.Svc/Echo", None, full("")))
        .await
        .expect("response");
    assert_eq!(rsp.headers()["grpc-status"], "16");
    assert!(
        rsp.headers()["www-authenticate"]
            .to_str()
            .is_ok_and(|v| v.starts_with("Bearer realm=\"service-b\""))
    );
    // The same calls from an HTTP client: today's answers.
    let mut req = grpc_request(s.addr, "/echo.Svc/Echo", None, full(""));
    req.headers_mut().remove("content-type");
    let rsp = client.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 401);
    assert!(!rsp.headers().contains_key("grpc-status"));
    let mut req = grpc_request(s.addr, "/echo.Svc/Echo", Some(&token), full(""));
    req.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/grpc-web"),
    );
    let rsp = client.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 503);
    assert!(app.seen.lock().expect("lock").headers.is_none());
}

#[test_log::test(tokio::test)]
async fn a_stream_in_flight_when_the_drain_begins_finishes_with_its_trailers() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let (tx, rx) = mpsc::channel(1);
    let app = App::start(rx).await;
    let s = sidecar(&idp, app.addr, "30s").await;
    ready(&s).await;
    let token = access(&key, &claims(&idp.issuer, AUD));
    let mut client = h2(s.addr).await;
    tx.send(Bytes::from_static(b"first")).await.expect("feed");
    let rsp = client
        .send_request(grpc_request(
            s.addr,
            "/stream.Svc/Feed",
            Some(&token),
            full(""),
        ))
        .await
        .expect("response");
    let mut body = rsp.into_body();
    let first = body.frame().await.expect("frame").expect("ok");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"first"[..]));
    // SIGTERM's effect: the listener drains. The open stream goes on.
    s.shutdown.fire();
    tx.send(Bytes::from_static(b"second")).await.expect("feed");
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the stream ends within the grace")
        .expect("body");
    assert_eq!(
        rest.trailers().map(|t| t["x-trailer"].clone()),
        Some(HeaderValue::from_static("kept"))
    );
    assert_eq!(&rest.to_bytes()[..], b"second");
    // A new connection is no longer accepted once the drain began.
    let refused = tokio::net::TcpStream::connect(s.addr).await;
    assert!(refused.is_err() || h2_refused(refused.expect("tcp")).await);
}

/// Whether an HTTP/2 handshake on `tcp` fails or its first request does (a listener that
/// closed).
async fn h2_refused(tcp: tokio::net::TcpStream) -> bool {
    match hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Body>(TokioIo::new(tcp))
        .await
    {
        Err(_) => true,
        Ok((mut sender, conn)) => {
            tokio::spawn(conn);
            let req = Request::get("http://x/").body(full("")).expect("request");
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
                .await
                .map_or(true, |r| r.is_err())
        }
    }
}
