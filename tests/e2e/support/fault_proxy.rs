//! A fault-injecting HTTP proxy on 127.0.0.1:0 in front of a real IdP process: it passes
//! requests through, or answers 500, answers garbage, answers late, hangs the JWKS, or drops the
//! connection, as the test says. Counts what it saw per path.

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// What the proxy does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward to the IdP; if the IdP is not there, drop the connection.
    Pass,
    /// `500` with an OAuth `server_error` body.
    Status500,
    /// `200` with a body that is not JSON.
    Garbage,
    /// Forward after 5 s (beyond the sidecar's 2 s IdP timeout).
    Slow,
    /// Forward everything except `/jwks`, which never answers.
    HangJwks,
    /// Close every connection without a byte (an IdP that is down).
    Drop,
}

struct State {
    backend: String,
    mode: AtomicU8,
    token_calls: AtomicUsize,
    jwks_calls: AtomicUsize,
    http: reqwest::Client,
}

/// A running proxy.
pub struct FaultProxy {
    /// `127.0.0.1:port`.
    pub addr: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Binds 127.0.0.1:0 and forwards to `backend` (`host:port`).
    pub async fn start(backend: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(State {
            backend: backend.to_owned(),
            mode: AtomicU8::new(Mode::Pass as u8),
            token_calls: AtomicUsize::new(0),
            jwks_calls: AtomicUsize::new(0),
            http: super::process::http_client(),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if s.mode() == Mode::Drop {
                    drop(tcp);
                    continue;
                }
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { s.handle(req).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// Switches the behaviour for the following requests.
    pub fn set(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Token-endpoint requests that reached the proxy so far (dropped connections excepted).
    pub fn token_calls(&self) -> usize {
        self.state.token_calls.load(Ordering::SeqCst)
    }

    /// JWKS requests seen so far.
    pub fn jwks_calls(&self) -> usize {
        self.state.jwks_calls.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Rsp = http::Response<http_body_util::Full<bytes::Bytes>>;

impl State {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Status500,
            2 => Mode::Garbage,
            3 => Mode::Slow,
            4 => Mode::HangJwks,
            5 => Mode::Drop,
            _ => Mode::Pass,
        }
    }

    async fn handle(&self, req: http::Request<Incoming>) -> Result<Rsp, std::io::Error> {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/token" => self.token_calls.fetch_add(1, Ordering::SeqCst),
            "/jwks" => self.jwks_calls.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let reply = |status: u16, body: &'static str| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    body.as_bytes(),
                )))
                .map_err(std::io::Error::other)
        };
        match self.mode() {
            Mode::Status500 => return reply(500, r#"{"error":"server_error"}"#),
            Mode::Garbage => return reply(200, "\u{1}<html>not json{{{"),
            Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
            Mode::HangJwks if path == "/jwks" => {
                // Bounded: the sidecar's fetch timeout (1 s) gives up long before this.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Mode::Drop => return Err(std::io::Error::other("dropped")),
            _ => {}
        }
        self.forward(req).await
    }

    async fn forward(&self, req: http::Request<Incoming>) -> Result<Rsp, std::io::Error> {
        use http_body_util::BodyExt;
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let url = format!(
            "http://{}{}",
            self.backend,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut out = self.http.request(parts.method, url).body(body);
        for (k, v) in &parts.headers {
            if k != http::header::HOST {
                out = out.header(k, v);
            }
        }
        // The IdP is not there: behave as it would, a connection that ends without an answer.
        let rsp = out.send().await.map_err(std::io::Error::other)?;
        let mut b = http::Response::builder().status(rsp.status());
        for (k, v) in rsp.headers() {
            if k != http::header::TRANSFER_ENCODING && k != http::header::CONNECTION {
                b = b.header(k, v);
            }
        }
        let bytes = rsp.bytes().await.map_err(std::io::Error::other)?;
        b.body(http_body_util::Full::new(bytes))
            .map_err(std::io::Error::other)
    }
}
