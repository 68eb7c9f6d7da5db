//! A recording upstream: remembers every request's method, path and headers, answers 200 with
//! the number of the request, or 401 `invalid_token` for the first `reject_first` requests.

use baton::http::{Body, json, read_limited};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    /// The one `Authorization` value, panicking on zero or several.
    pub fn authorization(&self) -> String {
        let all: Vec<_> = self.headers.get_all("authorization").iter().collect();
        assert_eq!(all.len(), 1, "exactly one Authorization header: {all:?}");
        all[0].to_str().expect("ascii").to_owned()
    }

    /// The bearer token's claims.
    pub fn claims(&self) -> serde_json::Map<String, serde_json::Value> {
        let auth = self.authorization();
        let token = auth.strip_prefix("Bearer ").expect("bearer");
        baton::jwt::peek_claims(token).expect("jwt")
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    reject_first: AtomicUsize,
}

/// A running recording upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let s = state.clone();
        let handler = move |req, _| {
            let s = s.clone();
            async move { handle(&s, req).await }
        };
        tokio::spawn(baton::server::serve(
            listener,
            Default::default(),
            handler,
            std::future::pending(),
        ));
        Self { addr, state }
    }

    /// The same upstream behind TLS (tests/e2e/fixtures: `localhost`, `127.0.0.1`, signed by
    /// `ca.pem`), HTTP/1.1 only.
    pub async fn start_tls() -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fixtures");
        let certs = CertificateDer::pem_file_iter(format!("{dir}/upstream.pem"))
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(format!("{dir}/upstream.key")).expect("key");
        Self::start_tls_with(certs, key).await
    }

    /// The same upstream behind TLS with the certificate chain `certs` and its `key`.
    pub async fn start_tls_with(
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&s, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// Answer the next `n` requests with 401 `invalid_token`.
    pub fn reject_next(&self, n: usize) {
        self.state.reject_first.store(n, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    pub fn requests(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }
}

async fn handle(s: &State, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = read_limited(body, 1 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    let n = {
        let mut seen = s.seen.lock().expect("lock");
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
        });
        seen.len()
    };
    let reject = s
        .reject_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
        .is_ok();
    if reject {
        let mut rsp = json(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
        rsp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return rsp;
    }
    json(StatusCode::OK, &json!({"n": n}))
}
