//! Token confinement: the app holds an opaque handle, never a usable token; its own sidecar
//! swaps the handle back on the way out, so the chain works; anywhere else the handle is
//! refused.

use crate::support::fake_idp::FakeIdp;
use crate::support::tokens::{access, claims};
use crate::support::upstream::Upstream;
use baton::config::Config;
use baton::confine::Handles;
use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, Options};
use baton::inbound;
use baton::jwt::Algorithm;
use baton::jwt::keys::SigningKey;
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn the_app_gets_a_handle_that_is_no_token() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let yaml = format!(
        "issuer: {}\naudience: service-b\napp: \"{}\"\njwks: {{retry: 50ms}}\n\
         inbound: {{confine_token: true}}\n\
         outbound: {{client: {{client_id: service-b, secret: test-only}}}}\n\
         routes:\n  - {{name: open, path: /pub, public: true}}\n  - {{name: default, path: /}}\n",
        idp.issuer, app.addr
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("config");
    let parts = crate::support::sidecar::inbound(&cfg);
    let jwks = parts.jwks.clone();
    let handles = Arc::new(Handles::new(100));
    let state = Arc::new(parts.state.with_handles(handles.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/x", listener.local_addr().expect("addr"));
    tokio::spawn(inbound::serve(state, listener, std::future::pending()));
    crate::support::sidecar::keys_loaded(&jwks).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let token = access(&key, &claims(&idp.issuer, "service-b"));
    let rsp = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 200);
    let seen = app.last().expect("the app saw it");
    let given = seen.headers["authorization"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let handle = given.strip_prefix("Bearer ").expect("a bearer value");
    assert!(
        handle.starts_with("bh_") && !handle.contains('.'),
        "{given}"
    );
    assert!(!given.contains(&token));
    // The claims still reach the app.
    assert!(seen.headers.contains_key("x-baton-claims"));
    // Presented back to a sidecar, the handle is no token.
    let rsp = http
        .get(&url)
        .bearer_auth(handle)
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 401);
    // Only this sidecar's store knows what it stands for.
    let now = baton::jwt::unix_now();
    assert!(handles.redeem(handle, now).is_some());
    assert!(Handles::new(100).redeem(handle, now).is_none());
    // On a public route nothing is verified, so nothing is handed over: a client's token does
    // not reach the app there either.
    let public = url.replace("/x", "/pub");
    let rsp = http
        .get(&public)
        .bearer_auth(&token)
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 200);
    let seen = app.last().expect("the app saw it");
    assert!(!seen.headers.contains_key("authorization"), "{seen:?}");
}

#[test_log::test(tokio::test)]
async fn the_chain_works_when_no_app_holds_a_token_and_the_idp_refuses_handles() {
    let chain = Chain::start_with(Options {
        confine: true,
        ..Options::default()
    })
    .await
    .expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    let (status, body) = chain.call(&tokens.access_token, "/").await.expect("call");
    assert_eq!(status, 200, "{body}");
    let c: &Value = &body["next"]["next"]["claims"];
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["act"],
        json!({"sub": "service-b", "act": {"sub": "service-a"}})
    );

    // A handle-shaped subject at the IdP is refused.
    let rsp = reqwest::Client::new()
        .post(format!("{}/token", chain.issuer))
        .basic_auth("service-a", Some("demo-secret-service-a"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token",
                "bh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("audience", "service-b"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(rsp.status(), 400);
    // An unknown handle on A's outbound side is refused before any exchange.
    let exchanges = chain.idp.exchanges();
    let via_a = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://{}", chain.hops[0].sidecar.outbound))
                .expect("proxy"),
        )
        .build()
        .expect("client");
    let rsp = via_a
        .get(format!("http://{}/", chain.hops[1].sidecar.inbound))
        .bearer_auth("bh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .expect("outbound");
    assert_eq!(rsp.status(), 400);
    assert_eq!(chain.idp.exchanges(), exchanges);
    chain.stop().await;
}

#[tokio::test]
async fn a_handle_is_dead_once_its_token_expires() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let yaml = format!(
        "issuer: {}\naudience: service-b\napp: \"{}\"\njwks: {{retry: 50ms}}\n\
         inbound: {{confine_token: true}}\n\
         outbound: {{client: {{client_id: service-b, secret: test-only}}}}\n\
         routes:\n  - {{name: default, path: /}}\n",
        idp.issuer, app.addr
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("config");
    let parts = crate::support::sidecar::inbound(&cfg);
    let jwks = parts.jwks.clone();
    let handles = Arc::new(Handles::new(100));
    let state = Arc::new(parts.state.with_handles(handles.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/x", listener.local_addr().expect("addr"));
    tokio::spawn(inbound::serve(state, listener, std::future::pending()));
    crate::support::sidecar::keys_loaded(&jwks).await;

    // A token that expires in 2 s.
    let mut c = claims(&idp.issuer, "service-b");
    let exp = baton::jwt::unix_now() + 2;
    c.insert("exp".into(), json!(exp));
    let token = access(&key, &c);
    let rsp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 200);
    let seen = app.last().expect("the app saw it");
    let given = seen.headers["authorization"].to_str().expect("ascii");
    let handle = given.strip_prefix("Bearer ").expect("a bearer value");
    let redeemed = handles.redeem(handle, baton::jwt::unix_now());
    assert!(redeemed.is_some(), "live before exp");
    // Past exp, what the outbound side would swap the handle for is gone.
    while baton::jwt::unix_now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(handles.redeem(handle, baton::jwt::unix_now()).is_none());
}
