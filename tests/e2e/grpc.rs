//! e2e: gRPC-shaped HTTP/2 through the inbound listener with `app_protocol: http2`, driven with
//! hyper's own HTTP/2 client and server on both ends: trailers and `TE: trailers` reach the
//! other side, `grpc-timeout` against the sidecar's `request_timeout`, refusals as gRPC
//! statuses (IdP unavailable → 14), a stream that outlives the start of a drain, and the same
//! unary call over TLS with HTTP/2 chosen by ALPN.
//! The grpcio suite (tests/interop/test_grpc.py) drives the same paths with a gRPC library.

use crate::support::fake_idp::FakeIdp;
use crate::support::test_ca::TestCa;
use crate::support::tokens::{access, claims};
use baton::config::Config;
use baton::http::{Body, BoxError, full};
use baton::inbound;
use baton::jwt::Algorithm;
use baton::jwt::jwks::Jwks;
use baton::jwt::keys::SigningKey;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
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
    serve(&config(idp, app, request_timeout, ""), None).await
}

/// The sidecar's config for `app`, `inbound` adding keys to `inbound:` after `app_protocol`.
fn config(idp: &FakeIdp, app: SocketAddr, request_timeout: &str, inbound: &str) -> Config {
    let yaml = format!(
        r#"
issuer: {issuer}
audience: {AUD}
app: "{app}"
inbound: {{app_protocol: http2{inbound}}}
jwks: {{retry: 50ms, fetch_timeout: 2s}}
limits: {{request_timeout: {request_timeout}, shutdown_grace: 20s}}
outbound: {{client: {{client_id: service-b, secret: test-only}}}}
routes:
  - {{name: default, path: /}}
"#,
        issuer = idp.issuer,
    );
    Config::from_yaml(&yaml, "sidecar.yaml").expect("test config")
}

/// The inbound listener of `cfg` alone, served in the test, with TLS when `tls` is given.
async fn serve(cfg: &Config, tls: Option<baton::tls::ReloadingAcceptor>) -> Sidecar {
    let parts = crate::support::sidecar::inbound(cfg);
    let jwks = parts.jwks.clone();
    let state = match tls {
        Some(tls) => parts.state.with_tls(tls),
        None => parts.state,
    };
    let (shutdown, wait) = baton::shutdown::channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(inbound::serve(Arc::new(state), listener, wait.wait()));
    Sidecar {
        addr,
        shutdown,
        jwks,
    }
}

/// A sidecar whose inbound listener serves TLS with a certificate for `localhost` from `ca`
/// (no client certificates asked), its files written under `dir`.
async fn tls_sidecar(idp: &FakeIdp, app: SocketAddr, ca: &TestCa, dir: &Path) -> Sidecar {
    let (cert, key) = ca.server_pem();
    std::fs::write(dir.join("server.pem"), cert).expect("write");
    std::fs::write(dir.join("server.key"), key).expect("write");
    let tls = format!(
        r#", tls: {{cert_file: "{d}/server.pem", key_file: "{d}/server.key"}}"#,
        d = dir.display()
    );
    let cfg = config(idp, app, "30s", &tls);
    let t = cfg.inbound.tls.clone().expect("inbound.tls");
    let acceptor = baton::tls::ReloadingAcceptor::load(&t.cert_file, &t.key_file, t.client_ca)
        .expect("TLS files load");
    serve(&cfg, Some(acceptor)).await
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

/// An HTTP/2 client connection to `addr` over TLS, offering ALPN `h2` only and trusting `ca`
/// for `localhost`; with the protocol the server chose.
async fn h2_tls(
    addr: SocketAddr,
    ca: &TestCa,
) -> (
    hyper::client::conn::http2::SendRequest<Body>,
    Option<Vec<u8>>,
) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    (sender, alpn)
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
    // Trailers spelling headers baton owns are a client's forgery, as the headers would be.
    for owned in [
        "x-baton-claims",
        "x_baton_claims",
        "x-baton-peer",
        "x-baton-anything",
    ] {
        sent_trailers.insert(
            http::HeaderName::from_static(owned),
            HeaderValue::from_static("Zm9yZ2Vk"),
        );
    }
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
    let app_trailers = seen.trailers.as_ref().expect("trailers");
    let owned: Vec<_> = app_trailers
        .keys()
        .filter(|k| k.as_str().starts_with("x-baton") || k.as_str().starts_with("x_baton"))
        .collect();
    assert!(
        owned.is_empty(),
        "owned trailers reached the app: {owned:?}"
    );
}

#[test_log::test(tokio::test)]
async fn a_grpc_call_over_tls_with_alpn_h2_reaches_an_http2_app_and_refusals_read_as_grpc() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let (_tx, rx) = mpsc::channel(1);
    let app = App::start(rx).await;
    let ca = TestCa::new("inbound-h2");
    let dir = crate::support::process::scratch("grpc-inbound-tls");
    let s = tls_sidecar(&idp, app.addr, &ca, &dir).await;
    ready(&s).await;
    let (mut client, alpn) = h2_tls(s.addr, &ca).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "HTTP/2 chosen by ALPN");
    let https = |req: &mut Request<Body>| {
        *req.uri_mut() = format!("https://localhost:{}{}", s.addr.port(), req.uri().path())
            .parse()
            .expect("uri");
    };

    // A valid token: the app's answer, its body and its trailers, come back over TLS.
    let token = access(&key, &claims(&idp.issuer, AUD));
    let mut req = grpc_request(
        s.addr,
        "/echo.Svc/Echo",
        Some(&token),
        full(&b"\0\0\0\0\x05hello"[..]),
    );
    https(&mut req);
    let rsp = client.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    let collected = rsp.into_body().collect().await.expect("body");
    let got_trailers = collected.trailers().cloned().expect("trailers came back");
    assert_eq!(got_trailers["grpc-status"], "0");
    assert_eq!(got_trailers["x-trailer"], "kept");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x05hello");
    {
        let seen = app.seen.lock().expect("lock");
        let headers = seen.headers.as_ref().expect("app saw the call");
        assert!(headers.contains_key("x-baton-claims"));
        assert_eq!(headers["te"], "trailers");
    }

    // No token: a trailers-only UNAUTHENTICATED with the challenge as metadata, on the same
    // connection, and the app not called.
    app.seen.lock().expect("lock").headers = None;
    let mut req = grpc_request(s.addr, "/echo.Svc/Echo", None, full(""));
    https(&mut req);
    let rsp = client.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "16", "UNAUTHENTICATED");
    assert!(
        rsp.headers()["www-authenticate"]
            .to_str()
            .is_ok_and(|v| v.starts_with("Bearer realm=\"service-b\""))
    );
    assert!(http_body::Body::is_end_stream(rsp.body()), "trailers-only");
    assert!(app.seen.lock().expect("lock").headers.is_none());
    let _ = std::fs::remove_dir_all(&dir);
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

// === outbound ===

mod outbound {
    use super::*;
    use crate::support::token_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp as TokenIdp};
    use baton::config::Problems;
    use baton::config::outbound::{RawOutbound, validate};
    use baton::outbound::Outbound;

    /// What the upstream saw of each call: version, headers.
    type Calls = Arc<Mutex<Vec<(http::Version, HeaderMap)>>>;

    /// An HTTP/2 upstream (h2c, or h2 over TLS when `tls` is given, ALPN `h2` only): answers
    /// the body back with trailers; a call carrying `x-refuse` gets a trailers-only
    /// `UNAUTHENTICATED` with an `invalid_token` challenge.
    async fn upstream(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, Calls) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls: Calls = Arc::default();
        let c = calls.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (c, tls) = (c.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let c = c.clone();
                        async move {
                            c.lock()
                                .expect("lock")
                                .push((req.version(), req.headers().clone()));
                            if req.headers().contains_key("x-refuse") {
                                let mut rsp = Response::new(full(""));
                                let h = rsp.headers_mut();
                                h.insert(
                                    "content-type",
                                    HeaderValue::from_static("application/grpc"),
                                );
                                h.insert("grpc-status", HeaderValue::from_static("16"));
                                h.insert(
                                    "www-authenticate",
                                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                                );
                                return Ok::<_, std::convert::Infallible>(rsp);
                            }
                            let body = req.into_body().collect().await.expect("body").to_bytes();
                            let frames = futures::stream::iter([
                                Ok::<_, BoxError>(Frame::data(body)),
                                Ok(Frame::trailers(trailers())),
                            ]);
                            Ok(Response::new(StreamBody::new(frames).boxed()))
                        }
                    });
                    let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = h2.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = h2.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        (addr, calls)
    }

    /// The outbound state of `yaml`'s routes and ports, served on its first port.
    async fn outbound_port(idp: &TokenIdp, yaml: &str) -> SocketAddr {
        let text = format!("client: {{client_id: {CLIENT_ID}, secret: {CLIENT_SECRET}}}\n{yaml}");
        let raw: RawOutbound = serde_saphyr::from_str(&text).expect("yaml");
        let mut problems = Problems::new("sidecar.yaml");
        let cfg = validate(raw, &mut problems);
        let cfg = problems.finish(cfg).expect("valid outbound config");
        let state = Arc::new(
            Outbound::new(cfg, Some(&idp.issuer()), Default::default()).expect("outbound"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(baton::outbound::serve_port(
            state,
            0,
            listener,
            Default::default(),
            std::future::pending(),
        ));
        addr
    }

    fn ports(host: &str, tls: &str) -> String {
        format!(
            "routes:\n  - {{name: b, host: \"{host}\", audience: service-b{tls}}}\n\
             ports:\n  - {{listen: \"127.0.0.1:1\", upstream: \"{host}\", route: b}}\n"
        )
    }

    /// A gRPC-shaped call through the outbound port: the answer's head, trailers and body.
    async fn call_through(
        port: SocketAddr,
        bearer: Option<&str>,
        refuse: bool,
    ) -> (http::response::Parts, Option<HeaderMap>, Bytes) {
        let mut client = h2(port).await;
        let body = with_trailers(b"ping", HeaderMap::new());
        let mut req = grpc_request(port, "/pkg.Svc/Call", bearer, body);
        if refuse {
            req.headers_mut()
                .insert("x-refuse", HeaderValue::from_static("1"));
        }
        let rsp = tokio::time::timeout(Duration::from_secs(20), client.send_request(req))
            .await
            .expect("answered within the bound")
            .expect("response");
        let (parts, body) = rsp.into_parts();
        let collected = body.collect().await.expect("body");
        (parts, collected.trailers().cloned(), collected.to_bytes())
    }

    fn claims_sent(headers: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
        let auth = headers["authorization"].to_str().expect("ascii");
        let token = auth.strip_prefix("Bearer ").expect("bearer");
        baton::jwt::peek_claims(token).expect("jwt")
    }

    #[test_log::test(tokio::test)]
    async fn an_http2_call_goes_upstream_over_h2c_with_the_exchanged_token() {
        let idp = TokenIdp::start().await;
        let (up, calls) = upstream(None).await;
        let port = outbound_port(&idp, &ports(&up.to_string(), "")).await;
        let user = idp.user_token("alice");
        for _ in 0..2 {
            let (head, trailers, body) = call_through(port, Some(&user), false).await;
            assert_eq!(head.status, 200);
            assert_eq!(&body[..], b"ping");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["x-trailer"], "kept");
            assert_eq!(trailers["grpc-status"], "0");
        }
        assert_eq!(
            idp.calls(),
            1,
            "the second call's token came from the cache"
        );
        let seen = calls.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2);
        for (version, headers) in &seen {
            assert_eq!(*version, http::Version::HTTP_2);
            assert_eq!(headers["te"], "trailers");
            assert_eq!(headers.get_all("authorization").iter().count(), 1);
            assert_ne!(headers["authorization"], format!("Bearer {user}").as_str());
            assert_eq!(claims_sent(headers)["aud"], "service-b");
            assert!(!headers.contains_key("host"));
        }
        // An upstream's UNAUTHENTICATED invalid_token drops the cached token (never a retry
        // of a call whose body may have gone): the next call exchanges again.
        let (head, _, _) = call_through(port, Some(&user), true).await;
        assert_eq!(head.headers["grpc-status"], "16");
        assert_eq!(calls.lock().expect("lock").len(), 3, "not retried");
        call_through(port, Some(&user), false).await;
        assert_eq!(idp.calls(), 2, "a fresh exchange after the refusal");
        // No subject token: refused as gRPC reads it, nothing sent upstream.
        let (head, _, _) = call_through(port, None, false).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["grpc-status"], "16");
        assert_eq!(calls.lock().expect("lock").len(), 4);
    }

    #[test_log::test(tokio::test)]
    async fn an_http2_call_on_a_tls_route_goes_as_h2_negotiated_by_alpn() {
        let idp = TokenIdp::start().await;
        let ca = TestCa::new("h2");
        let mut tls = {
            let leaf = ca.leaf();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(leaf.certs, leaf.key)
                .expect("server config")
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let (up, calls) = upstream(Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await;
        let dir = crate::support::process::scratch("grpc-tls");
        let ca_file = ca.write(&dir, "ca");
        let host = format!("localhost:{}", up.port());
        let tls = format!(", tls: {{ca_file: \"{}\"}}", ca_file.display());
        let port = outbound_port(&idp, &ports(&host, &tls)).await;
        let (head, trailers, body) =
            call_through(port, Some(&idp.user_token("alice")), false).await;
        assert_eq!(head.status, 200);
        assert_eq!(&body[..], b"ping");
        assert_eq!(trailers.expect("trailers")["x-trailer"], "kept");
        let seen = calls.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, http::Version::HTTP_2);
        assert_eq!(claims_sent(&seen[0].1)["aud"], "service-b");
    }
}
