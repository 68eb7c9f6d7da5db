//! DPoP (RFC 9449) at baton-idp's token endpoint: bound tokens for every grant, the proof rules
//! (method, URL, replay, one header), exchange of bound subject tokens, discovery and
//! introspection.

use crate::support::idp::{self as support, ACCESS, EXCHANGE, REDIRECT, TestIdp, claims};
use baton::dpop::Holder;
use reqwest::StatusCode;
use serde_json::Value;

/// A service-a token for service-b from `client_credentials`, bound to `holder`.
async fn bound_cc(idp: &TestIdp, holder: &Holder) -> String {
    let proof = idp.token_proof(holder);
    let (status, body) = idp
        .token_dpop(
            "service-a",
            &[
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ],
            &[&proof],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    body["access_token"].as_str().expect("token").to_owned()
}

fn jkt(token: &str) -> Option<String> {
    claims(token)
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn refused(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
}

#[tokio::test]
async fn client_credentials_with_a_proof_gives_a_bound_token() {
    let idp = support::start().await;
    let holder = Holder::generate().expect("key");
    let token = bound_cc(&idp, &holder).await;
    assert_eq!(jkt(&token).as_deref(), Some(holder.jkt()));
    // Signed by the IdP like any token.
    let keys = idp.jwks().await;
    let rules = baton::jwt::Rules::access(idp.url.clone(), "service-b");
    baton::jwt::verify(&token, &keys, &rules, baton::jwt::unix_now()).expect("verifies");
    // Without a proof: a bearer token as before.
    let (status, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(jkt(body["access_token"].as_str().expect("token")).is_none());
}

#[tokio::test]
async fn discovery_advertises_the_proof_algorithms() {
    let idp = support::start().await;
    let meta: Value = idp
        .http
        .get(format!("{}/.well-known/openid-configuration", idp.url))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256", "EdDSA"])
    );
}

#[tokio::test]
async fn replayed_misdirected_or_doubled_proofs_are_refused() {
    let idp = support::start().await;
    let holder = Holder::generate().expect("key");
    let form = [
        ("grant_type", "client_credentials"),
        ("audience", "service-b"),
    ];
    let proof = idp.token_proof(&holder);
    let (status, _) = idp.token_dpop("service-a", &form, &[&proof]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = idp.token_dpop("service-a", &form, &[&proof]).await;
    refused(status, &body);

    let now = baton::jwt::unix_now();
    let other_urls = [
        format!("{}/introspect", idp.url),
        format!("{}/token/", idp.url),
        "http://127.0.0.1:1/token".to_owned(),
        format!("{}/token", idp.url.replace("http:", "https:")),
    ];
    for url in &other_urls {
        let p = holder.proof("POST", url, None, None, now).expect("proof");
        let (status, body) = idp.token_dpop("service-a", &form, &[&p]).await;
        refused(status, &body);
    }
    // Other spellings of the same URL are the same URL.
    let same = format!("{}/token?x=1", idp.url.replace("http://", "HTTP://"));
    let p = holder.proof("POST", &same, None, None, now).expect("proof");
    let (status, body) = idp.token_dpop("service-a", &form, &[&p]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let url = format!("{}/token", idp.url);
    for (method, when) in [
        ("GET", now),
        ("post", now),
        ("POST", now - 600),
        ("POST", now + 600),
    ] {
        let p = holder.proof(method, &url, None, None, when).expect("proof");
        let (status, body) = idp.token_dpop("service-a", &form, &[&p]).await;
        refused(status, &body);
    }
    let (a, b) = (idp.token_proof(&holder), idp.token_proof(&holder));
    let (status, body) = idp.token_dpop("service-a", &form, &[&a, &b]).await;
    refused(status, &body);
    let (status, body) = idp.token_dpop("service-a", &form, &["not-a-proof"]).await;
    refused(status, &body);
}

#[tokio::test]
async fn a_client_that_must_use_dpop_gets_no_bearer_token() {
    let idp = support::start_with(|cfg| {
        cfg.clients
            .get_mut("service-a")
            .expect("service-a")
            .dpop_required = true;
    })
    .await;
    let form = [
        ("grant_type", "client_credentials"),
        ("audience", "service-b"),
    ];
    let (status, body) = idp.token("service-a", &form).await;
    refused(status, &body);
    bound_cc(&idp, &Holder::generate().expect("key")).await;
}

#[tokio::test]
async fn exchanging_a_bound_token_needs_a_proof_of_its_key() {
    let idp = support::start_with(|cfg| {
        cfg.clients
            .get_mut("service-b")
            .expect("service-b")
            .dpop_rebind = false;
    })
    .await;
    let first = Holder::generate().expect("key");
    let other = Holder::generate().expect("key");
    let subject = bound_cc(&idp, &first).await;
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS),
        ("audience", "service-c"),
    ];
    let (status, body) = idp.token("service-b", &form).await;
    refused(status, &body);
    let (status, body) = idp
        .token_dpop("service-b", &form, &[&idp.token_proof(&other)])
        .await;
    refused(status, &body);
    let (status, body) = idp
        .token_dpop("service-b", &form, &[&idp.token_proof(&first)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let exchanged = body["access_token"].as_str().expect("token");
    assert_eq!(jkt(exchanged).as_deref(), Some(first.jkt()));

    // Introspection shows the binding.
    let seen = idp.introspect("service-c", exchanged).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["token_type"], "DPoP");
    assert_eq!(seen["cnf"]["jkt"], first.jkt());
}

#[tokio::test]
async fn a_client_allowed_to_rebind_binds_the_exchanged_token_to_its_own_key() {
    // deploy/idp.yaml lets service-b re-bind.
    let idp = support::start().await;
    let first = Holder::generate().expect("key");
    let own = Holder::generate().expect("key");
    let subject = bound_cc(&idp, &first).await;
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS),
        ("audience", "service-c"),
    ];
    // Still not without a proof.
    let (status, body) = idp.token("service-b", &form).await;
    refused(status, &body);
    let (status, body) = idp
        .token_dpop("service-b", &form, &[&idp.token_proof(&own)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jkt(body["access_token"].as_str().expect("token")).as_deref(),
        Some(own.jkt())
    );
}

#[tokio::test]
async fn code_and_refresh_grants_bind_the_access_token() {
    let idp = support::start().await;
    let holder = Holder::generate().expect("key");
    let (verifier, challenge) = support::pkce();
    let code = idp.code("openid", &challenge).await;
    let (status, body) = idp
        .token_dpop(
            "service-a",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
            &[&idp.token_proof(&holder)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let access = body["access_token"].as_str().expect("token");
    assert_eq!(jkt(access).as_deref(), Some(holder.jkt()));
    let refresh = body["refresh_token"].as_str().expect("refresh token");
    let (status, body) = idp
        .token_dpop(
            "service-a",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            &[&idp.token_proof(&holder)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jkt(body["access_token"].as_str().expect("token")).as_deref(),
        Some(holder.jkt())
    );
}

#[tokio::test]
async fn a_code_asked_with_dpop_jkt_is_redeemed_only_with_that_key() {
    let idp = support::start().await;
    let holder = Holder::generate().expect("key");
    let other = Holder::generate().expect("key");
    let (verifier, challenge) = support::pkce();
    let code = idp
        .code_with("openid", &challenge, &[("dpop_jkt", holder.jkt())])
        .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    // Neither without a proof nor with another key's; and neither attempt uses the code up.
    let (status, body) = idp.token("service-a", &form).await;
    refused(status, &body);
    let (status, body) = idp
        .token_dpop("service-a", &form, &[&idp.token_proof(&other)])
        .await;
    refused(status, &body);
    let (status, body) = idp
        .token_dpop("service-a", &form, &[&idp.token_proof(&holder)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jkt(body["access_token"].as_str().expect("token")).as_deref(),
        Some(holder.jkt())
    );
}

#[tokio::test]
async fn a_malformed_dpop_jkt_is_refused_at_authorize() {
    let idp = support::start().await;
    let (_, challenge) = support::pkce();
    let (long, padded) = ("A".repeat(44), format!("{}=", "A".repeat(42)));
    for bad in ["short", padded.as_str(), long.as_str()] {
        let rsp = idp
            .http
            .get(format!("{}/authorize", idp.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid"),
                ("state", "st-1"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("dpop_jkt", bad),
            ])
            .send()
            .await
            .expect("authorize");
        assert!(rsp.status().is_redirection(), "{bad}: {}", rsp.status());
        let loc = rsp.headers()["location"].to_str().expect("ascii");
        assert!(loc.starts_with(REDIRECT), "{loc}");
        assert!(loc.contains("error=invalid_request"), "{loc}");
    }
}
