//! A fake token endpoint for the outbound tests: counts calls, checks the form and the client's
//! Basic credentials, and answers JWTs signed with a real `SigningKey`. For the edge login it
//! also publishes its JWKS and answers the authorization-code grant with an ID token carrying
//! the nonce set by [`FakeIdp::id_nonce`] (the right one, or another). [`FakeIdp::tamper`]
//! changes its token answers, for the sidecar's checks of them.

use base64::Engine;
use baton::http::{Body, Form, json, read_limited};
use baton::jwt::{self, Algorithm, keys::SigningKey};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Client id and secret the fake IdP accepts.
pub const CLIENT_ID: &str = "svc-a";
pub const CLIENT_SECRET: &str = "s3cret";
/// A subject token the fake IdP refuses with `invalid_request`.
pub const BAD_SUBJECT: &str = "refuse-me";

struct State {
    key: SigningKey,
    issuer: String,
    calls: AtomicUsize,
    fail: AtomicBool,
    forms: Mutex<Vec<Vec<(String, String)>>>,
    nonce: Mutex<String>,
    tamper: Mutex<Tamper>,
}

/// Changes to the next exchange and `client_credentials` answers: members of `response` and of
/// the issued token's `claims` set to these values (`null` removes one).
#[derive(Default, Clone)]
pub struct Tamper {
    pub response: serde_json::Map<String, Value>,
    pub claims: serde_json::Map<String, Value>,
}

/// `value` with each member of `changes` set, or removed when `null`.
fn apply(value: &mut Value, changes: &serde_json::Map<String, Value>) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    for (k, v) in changes {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
}

/// A running fake IdP.
pub struct FakeIdp {
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            key: SigningKey::generate(Algorithm::ES256).expect("key"),
            issuer: format!("http://{addr}"),
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            forms: Mutex::new(Vec::new()),
            nonce: Mutex::new(String::new()),
            tamper: Mutex::default(),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let s = state.clone();
        let handler = move |req, _| {
            let s = s.clone();
            async move { handle(&s, req).await }
        };
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            baton::server::serve(listener, Default::default(), handler, shutdown).await;
        });
        Self {
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// Token-endpoint calls so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// While `on`, the token endpoint answers 500.
    pub fn answer_500(&self, on: bool) {
        self.state.fail.store(on, Ordering::SeqCst);
    }

    /// Every form received, in order.
    pub fn forms(&self) -> Vec<Vec<(String, String)>> {
        self.state.forms.lock().expect("lock").clone()
    }

    /// The `nonce` of the ID tokens the authorization-code grant answers from now on.
    pub fn id_nonce(&self, nonce: &str) {
        *self.state.nonce.lock().expect("lock") = nonce.to_owned();
    }

    /// Answers token requests changed by `tamper` from now on (`Tamper::default()` for none).
    pub fn tamper(&self, tamper: Tamper) {
        *self.state.tamper.lock().expect("lock") = tamper;
    }

    /// A user token as the IdP would have issued it to service A.
    pub fn user_token(&self, sub: &str) -> String {
        user_token_of(&self.state, sub)
    }

    /// Stops accepting and closes every connection; later calls are refused.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn handle(s: &State, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/.well-known/openid-configuration" {
        return json(
            StatusCode::OK,
            &json!({"issuer": s.issuer, "token_endpoint": format!("{}/token", s.issuer),
                "jwks_uri": format!("{}/jwks", s.issuer),
                "authorization_endpoint": format!("{}/authorize", s.issuer)}),
        );
    }
    if req.uri().path() == "/jwks" {
        return json(StatusCode::OK, &json!({"keys": [s.key.public_jwk()]}));
    }
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|raw| raw == format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes());
    let body = read_limited(req.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    s.forms.lock().expect("lock").push(pairs);
    let form = Form::parse(&body);
    // private_key_jwt (RFC 7523): the fake checks the claims, not the signature.
    let asserted = form.one("client_assertion_type").ok().flatten()
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && form
            .one("client_assertion")
            .ok()
            .flatten()
            .and_then(jwt::peek_claims)
            .is_some_and(|c| {
                c["iss"] == CLIENT_ID && c["sub"] == CLIENT_ID && c["aud"] == s.issuer.as_str()
            });
    let authorized = authorized || asserted;
    if s.fail.load(Ordering::SeqCst) {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        );
    }
    let err = |code: &str| json(StatusCode::BAD_REQUEST, &json!({"error": code}));
    if !authorized {
        return json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client"}),
        );
    }
    let now = jwt::unix_now();
    let one = |name: &str| form.one(name).ok().flatten().map(str::to_owned);
    let sub = match one("grant_type").as_deref() {
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
            if one("subject_token_type").as_deref()
                != Some("urn:ietf:params:oauth:token-type:access_token")
            {
                return err("invalid_request");
            }
            let Some(subject) = one("subject_token") else {
                return err("invalid_request");
            };
            if subject == BAD_SUBJECT {
                return err("invalid_request");
            }
            match jwt::peek_claims(&subject).and_then(|c| c.get("sub").cloned()) {
                Some(Value::String(sub)) => sub,
                _ => return err("invalid_request"),
            }
        }
        Some("client_credentials") => CLIENT_ID.to_owned(),
        Some("authorization_code") => {
            let nonce = s.nonce.lock().expect("lock").clone();
            let id = json!({"iss": s.issuer, "sub": "alice", "aud": CLIENT_ID, "nonce": nonce,
                "exp": now + 300, "iat": now, "auth_time": now});
            return json(
                StatusCode::OK,
                &json!({"access_token": user_token_of(s, "alice"), "token_type": "Bearer",
                    "expires_in": 300, "id_token": s.key.sign("JWT", &id).expect("sign")}),
            );
        }
        _ => return err("unsupported_grant_type"),
    };
    let resources = form.all("resource");
    let aud = match (one("audience"), resources.as_slice()) {
        (Some(a), _) => json!(a),
        (None, [one]) => json!(one),
        (None, many) => json!(many),
    };
    let tamper = s.tamper.lock().expect("lock").clone();
    let mut claims = json!({"iss": s.issuer, "sub": sub, "aud": aud, "scope": one("scope"),
        "exp": now + 300, "iat": now, "jti": format!("t{n}"), "n": n,
        "act": {"sub": CLIENT_ID}});
    apply(&mut claims, &tamper.claims);
    let token = s.key.sign("at+jwt", &claims).expect("sign");
    let mut answer = json!({"access_token": token, "issued_token_type":
        "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
        "expires_in": 300});
    apply(&mut answer, &tamper.response);
    json(StatusCode::OK, &answer)
}

fn user_token_of(s: &State, sub: &str) -> String {
    let now = jwt::unix_now();
    let claims = json!({"iss": s.issuer, "sub": sub, "aud": CLIENT_ID,
        "exp": now + 600, "iat": now, "jti": sub});
    s.key.sign("at+jwt", &claims).expect("sign")
}
