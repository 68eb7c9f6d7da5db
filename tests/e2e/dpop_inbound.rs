//! DPoP (RFC 9449 §7) at the sidecar's inbound listener: a bound token passes only as
//! `Authorization: DPoP` with one fresh proof of its key, made for this request and this token;
//! every other spelling is refused with `WWW-Authenticate: DPoP` and never reaches the app.

use crate::support::fake_idp::FakeIdp;
use crate::support::tokens::{access, claims, with};
use crate::support::upstream::Upstream;
use baton::config::Config;
use baton::dpop::Holder;
use baton::inbound;
use baton::jwt::keys::SigningKey;
use baton::jwt::{Algorithm, unix_now};
use serde_json::{Value, json};
use std::sync::Arc;

const AUD: &str = "service-b";

struct World {
    key: SigningKey,
    _idp: FakeIdp,
    app: Upstream,
    /// The sidecar's external URL, as its callers name it.
    url: String,
    http: reqwest::Client,
}

async fn world() -> World {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let yaml = format!(
        r#"
issuer: {issuer}
audience: {AUD}
app: "{app}"
jwks: {{retry: 50ms, fetch_timeout: 2s}}
outbound: {{client: {{client_id: service-b, secret: test-only}}}}
dpop:
  mode: optional
  external_url: {url}/
routes:
  - {{name: strict, path: /strict, dpop: required}}
  - {{name: default, path: /}}
"#,
        issuer = idp.issuer,
        app = app.addr,
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("test config");
    let parts = crate::support::sidecar::inbound(&cfg);
    let jwks = parts.jwks.clone();
    let state = Arc::new(parts.state);
    tokio::spawn(inbound::serve(state, listener, std::future::pending()));
    crate::support::sidecar::keys_loaded(&jwks).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    World {
        key,
        _idp: idp,
        app,
        url,
        http,
    }
}

impl World {
    fn token(&self, jkt: Option<&str>) -> String {
        let c = claims(&self._idp.issuer, AUD);
        match jkt {
            Some(j) => access(&self.key, &with(c, json!({"cnf": {"jkt": j}}))),
            None => access(&self.key, &c),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        authorization: &str,
        proofs: &[&str],
    ) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", authorization);
        for p in proofs {
            req = req.header("dpop", *p);
        }
        let rsp = req.send().await.expect("response");
        let status = rsp.status().as_u16();
        let www = rsp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = rsp.json().await.unwrap_or(Value::Null);
        (status, www, body)
    }
}

fn proof(h: &Holder, method: &str, url: &str, token: &str) -> String {
    h.proof(method, url, Some(token), None, unix_now())
        .expect("proof")
}

/// A refusal as RFC 9449 §7.1 words it.
fn refused(got: (u16, String, Value), error: &str) {
    let (status, www, body) = got;
    assert_eq!(status, 401, "{www} {body}");
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(www.contains(&format!("error=\"{error}\"")), "{www}");
    assert!(www.contains("algs=\"ES256"), "{www}");
    assert_eq!(body["error"], error);
}

#[tokio::test]
async fn a_bound_token_passes_only_with_one_fresh_proof_of_its_key_for_this_request() {
    let w = world().await;
    let holder = Holder::generate().expect("key");
    let token = w.token(Some(holder.jkt()));
    let dpop = format!("DPoP {token}");
    let url = format!("{}/orders", w.url);
    let good = proof(&holder, "GET", &url, &token);
    let (status, _, _) = w.send("GET", "/orders?page=2", &dpop, &[&good]).await;
    assert_eq!(status, 200);
    let seen = w.app.last().expect("the app saw it");
    assert!(
        seen.headers.get("dpop").is_none(),
        "the proof stays at the sidecar"
    );
    let forwarded = w.app.requests();

    // The same proof again.
    refused(
        w.send("GET", "/orders", &dpop, &[&good]).await,
        "invalid_dpop_proof",
    );
    // As a bearer token, with or without a proof.
    let bearer = format!("Bearer {token}");
    let fresh = proof(&holder, "GET", &url, &token);
    refused(
        w.send("GET", "/orders", &bearer, &[&fresh]).await,
        "invalid_token",
    );
    refused(
        w.send("GET", "/orders", &bearer, &[]).await,
        "invalid_token",
    );
    // Without a proof, or with two.
    refused(
        w.send("GET", "/orders", &dpop, &[]).await,
        "invalid_dpop_proof",
    );
    let (a, b) = (
        proof(&holder, "GET", &url, &token),
        proof(&holder, "GET", &url, &token),
    );
    refused(
        w.send("GET", "/orders", &dpop, &[&a, &b]).await,
        "invalid_dpop_proof",
    );
    // From another key.
    let thief = Holder::generate().expect("key");
    let other_key = proof(&thief, "GET", &url, &token);
    refused(
        w.send("GET", "/orders", &dpop, &[&other_key]).await,
        "invalid_dpop_proof",
    );
    // For another method, another URL, another token.
    let post = proof(&holder, "POST", &url, &token);
    refused(
        w.send("GET", "/orders", &dpop, &[&post]).await,
        "invalid_dpop_proof",
    );
    for other in [
        format!("{}/other", w.url),
        format!("{}/orders/", w.url),
        "http://127.0.0.1:1/orders".to_owned(),
        format!("{}/orders", w.url.replace("http:", "https:")),
    ] {
        let p = proof(&holder, "GET", &other, &token);
        refused(
            w.send("GET", "/orders", &dpop, &[&p]).await,
            "invalid_dpop_proof",
        );
    }
    let for_another_token = proof(&holder, "GET", &url, &w.token(Some(holder.jkt())));
    refused(
        w.send("GET", "/orders", &dpop, &[&for_another_token]).await,
        "invalid_dpop_proof",
    );
    // Too old.
    let old = holder
        .proof("GET", &url, Some(&token), None, unix_now() - 600)
        .expect("proof");
    refused(
        w.send("GET", "/orders", &dpop, &[&old]).await,
        "invalid_dpop_proof",
    );
    // An unbound token under the DPoP scheme.
    let plain = w.token(None);
    let p = proof(&holder, "GET", &url, &plain);
    refused(
        w.send("GET", "/orders", &format!("DPoP {plain}"), &[&p])
            .await,
        "invalid_token",
    );
    assert_eq!(w.app.requests(), forwarded, "no refusal reached the app");

    // Another spelling of the same path is the same request: the canonical path.
    let p = proof(&holder, "GET", &url, &token);
    let (status, _, _) = w.send("GET", "/x/../orders", &dpop, &[&p]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn required_routes_refuse_bearer_tokens_and_optional_ones_take_them() {
    let w = world().await;
    let plain = format!("Bearer {}", w.token(None));
    let (status, _, _) = w.send("GET", "/orders", &plain, &[]).await;
    assert_eq!(status, 200);
    refused(
        w.send("GET", "/strict/x", &plain, &[]).await,
        "invalid_token",
    );
    let holder = Holder::generate().expect("key");
    let token = w.token(Some(holder.jkt()));
    let p = proof(&holder, "POST", &format!("{}/strict/x", w.url), &token);
    let (status, _, _) = w
        .send("POST", "/strict/x", &format!("DPoP {token}"), &[&p])
        .await;
    assert_eq!(status, 200);
}

#[test]
fn dpop_needs_the_external_url() {
    let yaml = |dpop: &str| {
        format!(
            "issuer: https://idp.example\naudience: b\napp: \"127.0.0.1:8080\"\n\
             outbound: {{client: {{client_id: b, secret: test-only}}}}\n{dpop}\n\
             routes:\n  - {{name: r, path: /, dpop: required}}\n"
        )
    };
    let err = Config::from_yaml(&yaml(""), "s.yaml").expect_err("no external_url");
    assert!(err.to_string().contains("dpop.external_url"), "{err}");
    let err = Config::from_yaml(
        &yaml("dpop: {external_url: \"https://b.example/?q=1\"}"),
        "s.yaml",
    )
    .expect_err("a query");
    assert!(err.to_string().contains("dpop.external_url"), "{err}");
    Config::from_yaml(
        &yaml("dpop: {external_url: \"https://b.example\"}"),
        "s.yaml",
    )
    .expect("valid");
}
