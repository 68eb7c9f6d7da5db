//! DPoP on every hop of the A→B→C chain: the user's token bound to the caller's key, each
//! exchanged token bound to the sending sidecar's key and sent with a fresh proof; tokens
//! copied out of an app are worthless without the key; the exchange cache still serves. The
//! sidecars prove with their default EdDSA (Ed25519) keys unless a test sets `dpop_alg`.

use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, Options};
use baton::dpop::{Holder, ProofAlg};
use baton::jwt::unix_now;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// `GET url` with `Authorization: <scheme> <token>` and these proofs.
async fn get(url: &str, scheme: &str, token: &str, proofs: &[&str]) -> (u16, String, Value) {
    let mut req = http()
        .get(url)
        .header("authorization", format!("{scheme} {token}"));
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
    (status, www, rsp.json().await.unwrap_or(Value::Null))
}

fn refused(got: &(u16, String, Value), error: &str) {
    let (status, www, body) = got;
    assert_eq!(*status, 401, "{www} {body}");
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(www.contains(&format!("error=\"{error}\"")), "{www}");
    assert!(www.contains("algs=\"ES256"), "{www}");
}

fn jkt(v: &Value) -> String {
    v["cnf"]["jkt"].as_str().expect("cnf.jkt").to_owned()
}

/// What a token endpoint call as `client` with a proof of `holder` answers.
async fn token(chain: &Chain, client: &str, holder: &Holder, form: &[(&str, &str)]) -> Value {
    let url = format!("{}/token", chain.issuer);
    let proof = holder
        .proof("POST", &url, None, None, unix_now())
        .expect("proof");
    let rsp = http()
        .post(&url)
        .basic_auth(client, Some(format!("demo-secret-{client}")))
        .header("dpop", proof)
        .form(form)
        .send()
        .await
        .expect("token");
    assert_eq!(rsp.status(), 200);
    rsp.json().await.expect("json")
}

#[test_log::test(tokio::test)]
async fn every_hop_is_dpop_bound_and_copied_tokens_are_worthless() {
    let chain = Chain::start_with(Options {
        dpop: true,
        ..Options::default()
    })
    .await
    .expect("chain");
    let user_key = Arc::new(Holder::generate().expect("key"));
    let mut req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    req.dpop = Some(user_key.clone());
    let user = baton::signin::password_login(&req).await.expect("sign in");
    let user_token = user.access_token.expose().to_owned();
    let a_url = format!("http://{}/", chain.hops[0].sidecar.inbound);

    // Twice, each with a fresh proof: the chain answers, and the cache serves the second call.
    for _ in 0..2 {
        let p = user_key
            .proof("GET", &a_url, Some(&user_token), None, unix_now())
            .expect("proof");
        let (status, www, body) = get(&a_url, "DPoP", &user_token, &[&p]).await;
        assert_eq!(status, 200, "{www} {body}");
        let (a, b, c) = (
            &body["claims"],
            &body["next"]["claims"],
            &body["next"]["next"]["claims"],
        );
        assert_eq!(c["sub"], "alice", "{body}");
        assert_eq!(jkt(a), user_key.jkt());
        let (b_key, c_key) = (jkt(b), jkt(c));
        assert!(b_key != user_key.jkt() && c_key != b_key && c_key != user_key.jkt());
    }
    assert_eq!(
        chain.idp.exchanges(),
        2,
        "one exchange per hop for both calls"
    );

    // A token as B's app holds it: exchanged by a sidecar of A (here a stand-in key), and the
    // token C's app would hold after B's sidecar exchanged it in turn.
    let a_key = Holder::generate().expect("key");
    let b_token = token(
        &chain,
        "service-a",
        &a_key,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &user_token),
            ("subject_token_type", ACCESS),
            ("audience", "service-b"),
        ],
    )
    .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let b_url = format!("http://{}/", chain.hops[1].sidecar.inbound);
    let c_url = format!("http://{}/", chain.hops[2].sidecar.inbound);
    let b_key = Holder::generate().expect("key");
    let c_token = token(
        &chain,
        "service-b",
        &b_key,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &b_token),
            ("subject_token_type", ACCESS),
            ("audience", "service-c"),
        ],
    )
    .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    // Replayed as bearer tokens.
    refused(&get(&b_url, "Bearer", &b_token, &[]).await, "invalid_token");
    refused(&get(&c_url, "Bearer", &c_token, &[]).await, "invalid_token");
    // With a proof from another key.
    let thief = Holder::generate().expect("key");
    let p = thief
        .proof("GET", &c_url, Some(&c_token), None, unix_now())
        .expect("proof");
    refused(
        &get(&c_url, "DPoP", &c_token, &[&p]).await,
        "invalid_dpop_proof",
    );
    // For another URL, or another method.
    let p = b_key
        .proof("GET", &b_url, Some(&c_token), None, unix_now())
        .expect("proof");
    refused(
        &get(&c_url, "DPoP", &c_token, &[&p]).await,
        "invalid_dpop_proof",
    );
    let p = b_key
        .proof("POST", &c_url, Some(&c_token), None, unix_now())
        .expect("proof");
    refused(
        &get(&c_url, "DPoP", &c_token, &[&p]).await,
        "invalid_dpop_proof",
    );
    // The holder's own proof passes once; replayed, it is refused.
    let p = b_key
        .proof("GET", &c_url, Some(&c_token), None, unix_now())
        .expect("proof");
    let (status, www, body) = get(&c_url, "DPoP", &c_token, &[&p]).await;
    assert_eq!(status, 200, "{www} {body}");
    refused(
        &get(&c_url, "DPoP", &c_token, &[&p]).await,
        "invalid_dpop_proof",
    );
    // The user's token without its proof at the edge.
    let (status, _, _) = get(&a_url, "Bearer", &user_token, &[]).await;
    assert_eq!(status, 401);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn the_chain_answers_when_the_idp_asks_for_dpop_nonces() {
    let chain = Chain::start_with(Options {
        dpop: true,
        dpop_nonce: true,
        ..Options::default()
    })
    .await
    .expect("chain");
    // The IdP does ask: a proof without its nonce is refused, with the nonce to use.
    let url = format!("{}/token", chain.issuer);
    let key = Holder::generate().expect("key");
    let rsp = http()
        .post(&url)
        .basic_auth("service-a", Some("demo-secret-service-a"))
        .header(
            "dpop",
            key.proof("POST", &url, None, None, unix_now())
                .expect("proof"),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "service-b"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(rsp.status(), 400);
    assert!(rsp.headers().contains_key("dpop-nonce"));
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["error"], "use_dpop_nonce");

    // The sign-in and every sidecar's exchange pick the nonce up and retry once.
    let user_key = Arc::new(Holder::generate().expect("key"));
    let mut req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    req.dpop = Some(user_key.clone());
    let user = baton::signin::password_login(&req).await.expect("sign in");
    let user_token = user.access_token.expose().to_owned();
    let a_url = format!("http://{}/", chain.hops[0].sidecar.inbound);
    for _ in 0..2 {
        let p = user_key
            .proof("GET", &a_url, Some(&user_token), None, unix_now())
            .expect("proof");
        let (status, www, body) = get(&a_url, "DPoP", &user_token, &[&p]).await;
        assert_eq!(status, 200, "{www} {body}");
        assert_eq!(body["next"]["next"]["claims"]["sub"], "alice", "{body}");
    }
    assert_eq!(chain.idp.exchanges(), 2, "one exchange per hop");
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn the_chain_keeps_working_across_a_sidecar_key_rotation() {
    let chain = Chain::start_with(Options {
        dpop: true,
        dpop_key_rotation: Some("2s"),
        ..Options::default()
    })
    .await
    .expect("chain");
    let a_url = format!("http://{}/", chain.hops[0].sidecar.inbound);
    let call = |key: Arc<Holder>, token: String| {
        let a_url = a_url.clone();
        async move {
            let p = key
                .proof("GET", &a_url, Some(&token), None, unix_now())
                .expect("proof");
            let (status, www, body) = get(&a_url, "DPoP", &token, &[&p]).await;
            assert_eq!(status, 200, "{www} {body}");
            (
                jkt(&body["next"]["claims"]),
                jkt(&body["next"]["next"]["claims"]),
            )
        }
    };
    let sign_in = || async {
        let key = Arc::new(Holder::generate().expect("key"));
        let mut req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
        req.dpop = Some(key.clone());
        let user = baton::signin::password_login(&req).await.expect("sign in");
        (key, user.access_token.expose().to_owned())
    };
    let (key1, token1) = sign_in().await;
    let before = call(key1.clone(), token1.clone()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The cached tokens keep the key they are bound to: no new exchange, still accepted.
    let exchanges = chain.idp.exchanges();
    assert_eq!(call(key1.clone(), token1.clone()).await, before);
    assert_eq!(chain.idp.exchanges(), exchanges, "served from the cache");
    // A new exchange binds to the sidecars' new keys, and the chain answers.
    let (key2, token2) = sign_in().await;
    let after = call(key2, token2).await;
    assert_ne!(after.0, before.0, "B's token is bound to A's new key");
    assert_ne!(after.1, before.1, "C's token is bound to B's new key");
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn the_chain_binds_every_hop_with_es256_sidecar_keys_and_an_eddsa_caller() {
    let chain = Chain::start_with(Options {
        dpop: true,
        dpop_alg: Some("ES256"),
        ..Options::default()
    })
    .await
    .expect("chain");
    // An outside client with an Ed25519 key, at the IdP and at the edge sidecar.
    let user_key = Arc::new(Holder::generate_alg(ProofAlg::EdDSA).expect("key"));
    let mut req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    req.dpop = Some(user_key.clone());
    let user = baton::signin::password_login(&req).await.expect("sign in");
    let user_token = user.access_token.expose().to_owned();
    let a_url = format!("http://{}/", chain.hops[0].sidecar.inbound);
    let mut bound = Vec::new();
    for _ in 0..2 {
        let p = user_key
            .proof("GET", &a_url, Some(&user_token), None, unix_now())
            .expect("proof");
        let (status, www, body) = get(&a_url, "DPoP", &user_token, &[&p]).await;
        assert_eq!(status, 200, "{www} {body}");
        assert_eq!(body["next"]["next"]["claims"]["sub"], "alice", "{body}");
        assert_eq!(jkt(&body["claims"]), user_key.jkt());
        bound.push((
            jkt(&body["next"]["claims"]),
            jkt(&body["next"]["next"]["claims"]),
        ));
    }
    assert_eq!(
        bound[0], bound[1],
        "the cached tokens serve the second call"
    );
    assert_ne!(bound[0].0, bound[0].1, "each sidecar has its own key");
    assert_eq!(chain.idp.exchanges(), 2, "one exchange per hop");
    // The edge refuses the caller's proof replayed.
    let p = user_key
        .proof("GET", &a_url, Some(&user_token), None, unix_now())
        .expect("proof");
    let (status, ..) = get(&a_url, "DPoP", &user_token, &[&p]).await;
    assert_eq!(status, 200);
    refused(
        &get(&a_url, "DPoP", &user_token, &[&p]).await,
        "invalid_dpop_proof",
    );
    chain.stop().await;
}
