//! A fake issuer on 127.0.0.1:0: discovery and a JWKS whose keys tests change, counting fetches.

use baton::http::{Body, json, text};
use baton::jwt::keys::SigningKey;
use baton::server::{self, Limits};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// State shared with the fake issuer's handler.
pub struct State {
    issuer: String,
    keys: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    up: AtomicBool,
}

/// A running fake issuer.
pub struct FakeIdp {
    /// Its issuer identifier, `http://127.0.0.1:<port>`.
    pub issuer: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl FakeIdp {
    /// Starts serving discovery and a JWKS with the public halves of `keys`.
    pub async fn start(keys: &[&SigningKey]) -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}");
        let state = Arc::new(State {
            issuer: issuer.clone(),
            keys: Mutex::new(keys.iter().map(|k| k.public_jwk()).collect()),
            jwks_fetches: AtomicUsize::new(0),
            up: AtomicBool::new(true),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let s = state.clone();
        let handler = move |req, _| {
            let s = s.clone();
            async move { handle(&s, req) }
        };
        let done = tokio::spawn(async move {
            server::serve(listener, Limits::default(), handler, async {
                let _ = rx.await;
            })
            .await;
        });
        FakeIdp {
            issuer,
            state,
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Publishes another key (rotation: the new key appears before it signs).
    pub fn publish(&self, key: &SigningKey) {
        self.state.keys.lock().expect("lock").push(key.public_jwk());
    }

    /// While false, discovery answers 503 (an IdP that is starting or failing).
    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Stops the server; its port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

fn handle<B>(s: &State, req: Request<B>) -> Response<Body> {
    if !s.up.load(Ordering::SeqCst) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "down");
    }
    match req.uri().path() {
        "/.well-known/openid-configuration" => json(
            StatusCode::OK,
            &json!({"issuer": s.issuer, "jwks_uri": format!("{}/jwks", s.issuer)}),
        ),
        "/jwks" => {
            s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = s.keys.lock().expect("lock").clone();
            let mut rsp = json(StatusCode::OK, &json!({"keys": keys}));
            rsp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("max-age=3600"),
            );
            rsp
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
