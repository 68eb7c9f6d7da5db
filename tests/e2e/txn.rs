//! e2e: Transaction Tokens. baton-idp as the Txn-Token Service (issuance, replacement, every
//! refusal), and the A (issue) → B (accept) → C (require) chain: C sees the `txn`, `sub`, `scope`
//! and `tctx` issued at A; every invalid Txn-Token is refused with a clear error.

use crate::support::idp::{ACCESS, EXCHANGE, TestIdp, start_with};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, Options, TRUST_DOMAIN};
use baton::idp::config::TxnTokens;
use baton::jwt::keys::SigningKey;
use baton::jwt::{Algorithm, Claims, peek_claims};
use baton::txn;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const TXN: &str = txn::TOKEN_TYPE;

/// The demo IdP as the Txn-Token Service of [`TRUST_DOMAIN`] for service-a and service-b;
/// service-b may also state a subject itself.
async fn service() -> TestIdp {
    start_with(|cfg| {
        cfg.txn_tokens = Some(TxnTokens {
            audience: TRUST_DOMAIN.into(),
            lifetime: 120,
            clients: vec!["service-a".into(), "service-b".into()],
            unsigned_subject_clients: vec!["service-b".into()],
        });
        if let Some(b) = cfg.clients.get_mut("service-b") {
            b.scopes = vec!["jobs.run".into()];
        }
    })
    .await
}

/// alice's access token for service-a.
async fn alice(idp: &TestIdp) -> String {
    let body = idp.login("openid profile").await;
    body["access_token"].as_str().expect("token").to_owned()
}

/// A Txn-Token request as `client` for `subject` of `subject_type`, with `extra` parameters
/// (`scope` is `openid profile` unless they name one).
async fn ask(
    idp: &TestIdp,
    client: &str,
    subject: &str,
    subject_type: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("requested_token_type", TXN),
        ("audience", TRUST_DOMAIN),
        ("subject_token", subject),
        ("subject_token_type", subject_type),
    ];
    if !extra.iter().any(|(k, _)| *k == "scope") {
        form.push(("scope", "openid profile"));
    }
    form.extend_from_slice(extra);
    idp.token(client, &form).await
}

fn header(token: &str) -> Claims {
    let h = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json")
}

fn refused(status: StatusCode, body: &Value, code: &str, says: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(status.is_client_error(), "{status} {body}");
    let d = body["error_description"].as_str().unwrap_or("");
    assert!(d.contains(says), "{d:?} should say {says:?}");
}

#[tokio::test]
async fn the_idp_issues_a_txn_token_with_the_drafts_header_and_claims() {
    let idp = service().await;
    let at = alice(&idp).await;
    let (status, body) = ask(
        &idp,
        "service-a",
        &at,
        ACCESS,
        &[
            ("scope", "profile"),
            (
                "request_context",
                r#"{"req_ip":"192.0.2.7","authn":"bearer"}"#,
            ),
            ("request_details", r#"{"action":"list","order":"o-17"}"#),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["issued_token_type"], TXN);
    assert!(body.get("refresh_token").is_none());
    assert!(
        body["expires_in"]
            .as_u64()
            .is_some_and(|e| e <= 120 && e > 0)
    );
    let token = body["access_token"].as_str().expect("token");
    let h = header(token);
    assert_eq!(h["typ"], "txntoken+jwt");
    assert!(h["kid"].is_string());
    let c = peek_claims(token).expect("claims");
    for name in [
        "iat", "exp", "aud", "txn", "sub", "scope", "req_wl", "tctx", "rctx",
    ] {
        assert!(c.contains_key(name), "{name} missing: {c:?}");
    }
    assert_eq!(c["aud"], TRUST_DOMAIN);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["scope"], "profile");
    assert_eq!(c["req_wl"], "service-a");
    assert_eq!(c["tctx"], json!({"action": "list", "order": "o-17"}));
    assert_eq!(c["rctx"], json!({"req_ip": "192.0.2.7", "authn": "bearer"}));
    assert!(c["exp"].as_u64() > c["iat"].as_u64());
    // Verifies with the trust domain's keys as a Txn-Token, never as an access token.
    let keys = idp.jwks().await;
    let now = baton::jwt::unix_now();
    let rules = txn::rules(&idp.url, TRUST_DOMAIN, vec![Algorithm::ES256], 0);
    txn::verify(token, &keys, &rules, now).expect("verifies as a Txn-Token");
    let access = baton::jwt::Rules::access(&idp.url, TRUST_DOMAIN);
    assert_eq!(
        baton::jwt::verify(token, &keys, &access, now).unwrap_err(),
        baton::jwt::VerifyError::Type
    );
    // Another request, another transaction.
    let (_, again) = ask(&idp, "service-a", &at, ACCESS, &[]).await;
    let again = peek_claims(again["access_token"].as_str().expect("t")).expect("claims");
    assert_ne!(again["txn"], c["txn"]);
    assert_eq!(again["scope"], "openid profile");
}

#[tokio::test]
async fn replacement_narrows_and_adds_but_never_widens_or_changes() {
    let idp = service().await;
    let at = alice(&idp).await;
    let (_, first) = ask(
        &idp,
        "service-a",
        &at,
        ACCESS,
        &[("request_details", r#"{"action":"list"}"#)],
    )
    .await;
    let first_token = first["access_token"].as_str().expect("token");
    let first = peek_claims(first_token).expect("claims");

    // service-b replaces it: narrower scope, more context; txn, sub, aud kept, req_wl chained.
    let (status, body) = ask(
        &idp,
        "service-b",
        first_token,
        TXN,
        &[
            ("scope", "profile"),
            ("request_details", r#"{"batch":"b-9"}"#),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replaced = peek_claims(body["access_token"].as_str().expect("t")).expect("claims");
    assert_eq!(replaced["txn"], first["txn"]);
    assert_eq!(replaced["sub"], "alice");
    assert_eq!(replaced["aud"], TRUST_DOMAIN);
    assert_eq!(replaced["scope"], "profile");
    assert_eq!(replaced["tctx"], json!({"action": "list", "batch": "b-9"}));
    assert_eq!(replaced["req_wl"], "service-a,service-b");
    assert!(replaced["exp"].as_u64() <= first["exp"].as_u64());

    // Widening the scope is refused.
    let (status, body) = ask(
        &idp,
        "service-b",
        first_token,
        TXN,
        &[("scope", "openid profile calendar.edit")],
    )
    .await;
    refused(status, &body, "invalid_scope", "may only narrow");
    // Changing the context is refused; naming "sub" in it changes no subject.
    let (status, body) = ask(
        &idp,
        "service-b",
        first_token,
        TXN,
        &[("request_details", r#"{"action":"delete"}"#)],
    )
    .await;
    refused(status, &body, "invalid_request", "never change it");
    let (status, body) = ask(
        &idp,
        "service-b",
        first_token,
        TXN,
        &[("request_details", r#"{"sub":"mallory"}"#)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = peek_claims(body["access_token"].as_str().expect("t")).expect("claims");
    assert_eq!(c["sub"], "alice");
    // Another trust domain is refused, and so is a second audience.
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("requested_token_type", TXN),
        ("audience", "https://other.example"),
        ("subject_token", first_token),
        ("subject_token_type", TXN),
    ];
    let (status, body) = idp.token("service-b", &form).await;
    refused(status, &body, "invalid_target", "trust domain");
    form[2] = ("audience", TRUST_DOMAIN);
    form.push(("audience", "https://other.example"));
    let (status, body) = idp.token("service-b", &form).await;
    refused(status, &body, "invalid_target", "trust domain");
    // A tampered Txn-Token (another sub, same signature) is no subject.
    let mut parts: Vec<String> = first_token.split('.').map(str::to_owned).collect();
    let mut claims = first.clone();
    claims.insert("sub".into(), json!("mallory"));
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    let (status, body) = ask(&idp, "service-b", &parts.join("."), TXN, &[]).await;
    refused(status, &body, "invalid_request", "signature");
}

#[tokio::test]
async fn only_configured_clients_with_valid_unexpired_subjects_get_one() {
    let idp = service().await;
    let at = alice(&idp).await;
    // builds-api is a client with the exchange grant, but not named in txn_tokens.clients.
    let (status, body) = ask(&idp, "builds-api", &at, ACCESS, &[]).await;
    refused(status, &body, "unauthorized_client", "Txn-Tokens");
    // A token addressed to service-a is no subject for service-b.
    let (status, body) = ask(&idp, "service-b", &at, ACCESS, &[]).await;
    refused(status, &body, "invalid_request", "audience");
    // A refresh token, an unknown type, an unsigned subject from a client not allowed one.
    let (status, body) = ask(&idp, "service-a", &at, "urn:x:y", &[]).await;
    refused(status, &body, "invalid_request", "subject_token_type");
    let (status, body) = ask(
        &idp,
        "service-a",
        r#"{"sub":"job"}"#,
        txn::UNSIGNED_JSON,
        &[],
    )
    .await;
    refused(
        status,
        &body,
        "invalid_request",
        "may not state the subject",
    );
    // service-b may: work started inside the trust domain.
    let (status, body) = ask(
        &idp,
        "service-b",
        r#"{"sub":"nightly-job"}"#,
        txn::UNSIGNED_JSON,
        &[("scope", "jobs.run")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = peek_claims(body["access_token"].as_str().expect("t")).expect("claims");
    assert_eq!(c["sub"], "nightly-job");
    // Context parameters: objects only, bounded.
    for bad in ["[1,2]", "\"x\"", "{", r#"{"a":1,"a":2}"#] {
        let (status, body) = ask(&idp, "service-a", &at, ACCESS, &[("request_details", bad)]).await;
        refused(status, &body, "invalid_request", "request_details");
    }
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(txn::MAX_CONTEXT_BYTES));
    let (status, body) = ask(&idp, "service-a", &at, ACCESS, &[("request_context", &big)]).await;
    refused(status, &body, "invalid_request", "larger than");
    // An access token as subject_token_type txn_token is not a Txn-Token.
    let (status, body) = ask(&idp, "service-a", &at, TXN, &[]).await;
    refused(status, &body, "invalid_request", "wrong token type");
    // The scope is required: the purpose of the transaction.
    let (status, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", EXCHANGE),
                ("requested_token_type", TXN),
                ("audience", TRUST_DOMAIN),
                ("subject_token", &at),
                ("subject_token_type", ACCESS),
            ],
        )
        .await;
    refused(status, &body, "invalid_request", "scope required");
    // An ID token is a subject too, but it says who signed in, not what they granted: it
    // evidences `openid` and nothing more.
    let login = idp.login("openid profile").await;
    let id = login["id_token"].as_str().expect("id token");
    let id_type = "urn:ietf:params:oauth:token-type:id_token";
    let (status, body) = ask(&idp, "service-a", id, id_type, &[("scope", "openid")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = ask(
        &idp,
        "service-a",
        id,
        id_type,
        &[("scope", "openid profile")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an ID token buys no scope: {body}"
    );
}

#[tokio::test]
async fn never_from_an_expired_subject_token() {
    let idp = service().await;
    // An access token that verifies but expired a second ago (within any leeway).
    let key = idp.idp.keys().signer.clone();
    let now = baton::jwt::unix_now();
    let claims = json!({
        "iss": idp.url, "sub": "alice", "aud": "service-a", "client_id": "service-a",
        "scope": "profile", "iat": now - 60, "exp": now - 1, "jti": "j-1",
    });
    let expired = key.sign("at+jwt", &claims).expect("sign");
    let (status, body) = ask(&idp, "service-a", &expired, ACCESS, &[]).await;
    refused(status, &body, "invalid_request", "expired");
    // A Txn-Token of another key is refused as a replacement subject.
    let other = SigningKey::generate(Algorithm::ES256).expect("key");
    let forged = other
        .sign(
            txn::TYP,
            &json!({"iss": idp.url, "aud": TRUST_DOMAIN, "sub": "alice", "txn": "t",
                    "scope": "", "iat": now, "exp": now + 60}),
        )
        .expect("sign");
    let (status, body) = ask(&idp, "service-b", &forged, TXN, &[]).await;
    refused(status, &body, "invalid_request", "subject_token");
}

// === the chain ===

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn chain() -> (Chain, baton::signin::Tokens) {
    let chain = Chain::start_with(Options {
        txn_tokens: true,
        ..Options::default()
    })
    .await
    .expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    (chain, tokens)
}

#[test_log::test(tokio::test)]
async fn c_sees_the_txn_sub_scope_and_tctx_issued_at_a() {
    let (chain, tokens) = chain().await;
    let before = chain.idp.token_requests();
    // The client's own Txn-Token and twin are dropped at the edge.
    let rsp = http()
        .get(format!(
            "http://{}/orders/17",
            chain.hops[0].sidecar.inbound
        ))
        .bearer_auth(tokens.access_token.expose())
        .header("txn-token", "forged.by.client")
        .header("txn_token", "forged.by.client")
        .header("x-baton-txn", "e30")
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.expect("json");
    let (a, b, c) = (
        &body["txn"],
        &body["next"]["txn"],
        &body["next"]["next"]["txn"],
    );
    assert!(a["txn"].is_string(), "{body}");
    for hop in [b, c] {
        for claim in [
            "txn", "sub", "scope", "tctx", "rctx", "req_wl", "iat", "exp", "aud",
        ] {
            assert_eq!(
                hop[claim], a[claim],
                "{claim} changed along the chain: {body}"
            );
        }
    }
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], TRUST_DOMAIN);
    assert_eq!(c["tctx"], json!({"method": "GET", "path": "/orders/17"}));
    assert_eq!(c["rctx"]["req_ip"], "127.0.0.1");
    assert_eq!(c["req_wl"], "service-a");
    // Per-hop exchange still runs beside it.
    assert_eq!(body["next"]["next"]["claims"]["aud"], "service-c");
    // One Txn-Token per external request (plus the two exchanges).
    assert_eq!(chain.idp.token_requests() - before, 3);
    // A second request is a second transaction.
    let (_, again) = chain.call(&tokens.access_token, "/").await.expect("call");
    assert_ne!(again["next"]["next"]["txn"]["txn"], c["txn"]);
    chain.stop().await;
}

/// Calls C directly with a valid access token for C and `txn_token` in `Txn-Token`; the
/// status and the error description.
async fn at_c(chain: &Chain, access: &str, txn_token: Option<&str>) -> (u16, String) {
    let mut req = http()
        .get(format!("http://{}/", chain.hops[2].sidecar.inbound))
        .bearer_auth(access);
    if let Some(t) = txn_token {
        req = req.header("txn-token", t);
    }
    let rsp = req.send().await.expect("C");
    let status = rsp.status().as_u16();
    let body: Value = rsp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error_description"].as_str().unwrap_or("").to_owned(),
    )
}

#[test_log::test(tokio::test)]
async fn c_refuses_every_invalid_txn_token_with_a_clear_error() {
    let (chain, tokens) = chain().await;
    let idp = &chain.idp;
    let now = baton::jwt::unix_now();
    let signer = idp.keys().signer.clone();
    let issuer = chain.issuer.clone();
    // A valid access token for C (as B's exchange would give), signed by the IdP.
    let access = signer
        .sign(
            "at+jwt",
            &json!({"iss": issuer, "sub": "alice", "aud": "service-c", "client_id": "service-b",
                    "grants": ["service-a", "service-b", "service-c"], "scope": "profile",
                    "iat": now, "exp": now + 120, "jti": "j-c"}),
        )
        .expect("sign");
    let txn_claims = json!({"iss": issuer, "aud": TRUST_DOMAIN, "sub": "alice", "txn": "t-1",
                            "scope": "profile", "req_wl": "service-a", "iat": now, "exp": now + 120});
    let good = signer.sign(txn::TYP, &txn_claims).expect("sign");
    let (status, _) = at_c(&chain, &access, Some(&good)).await;
    assert_eq!(status, 200);

    let (status, why) = at_c(&chain, &access, None).await;
    assert_eq!(
        (status, why.as_str()),
        (401, "this service requires a Txn-Token header")
    );
    // Tampered: sub changed under the same signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut c = txn_claims.clone();
    c["sub"] = json!("mallory");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).expect("json"));
    let (status, why) = at_c(&chain, &access, Some(&parts.join("."))).await;
    assert_eq!(
        (status, why.as_str()),
        (401, "Txn-Token: signature does not verify")
    );
    // Expired (beyond the leeway).
    let mut c = txn_claims.clone();
    c["iat"] = json!(now - 600);
    c["exp"] = json!(now - 300);
    let (status, why) = at_c(&chain, &access, Some(&signer.sign(txn::TYP, &c).unwrap())).await;
    assert_eq!((status, why.as_str()), (401, "Txn-Token: token expired"));
    // Issued in the future.
    let mut c = txn_claims.clone();
    c["iat"] = json!(now + 300);
    let (status, why) = at_c(&chain, &access, Some(&signer.sign(txn::TYP, &c).unwrap())).await;
    assert_eq!(
        (status, why.as_str()),
        (401, "Txn-Token: token issued in the future")
    );
    // Another trust domain.
    let mut c = txn_claims.clone();
    c["aud"] = json!("https://other.example");
    let (status, why) = at_c(&chain, &access, Some(&signer.sign(txn::TYP, &c).unwrap())).await;
    assert_eq!(
        (status, why.as_str()),
        (401, "Txn-Token: audience mismatch")
    );
    // Wrong typ, and an access token sent as a Txn-Token.
    let (status, why) = at_c(
        &chain,
        &access,
        Some(&signer.sign("JWT", &txn_claims).unwrap()),
    )
    .await;
    assert_eq!((status, why.as_str()), (401, "Txn-Token: wrong token type"));
    let (status, why) = at_c(&chain, &access, Some(&access)).await;
    assert_eq!((status, why.as_str()), (401, "Txn-Token: wrong token type"));
    // Without txn.
    let mut c = txn_claims.clone();
    c.as_object_mut().unwrap().remove("txn");
    let (status, why) = at_c(&chain, &access, Some(&signer.sign(txn::TYP, &c).unwrap())).await;
    assert_eq!(
        (status, why.as_str()),
        (401, "Txn-Token: missing or invalid claim txn")
    );
    // A Txn-Token sent as the access token.
    let (status, why) = at_c(&chain, &good, Some(&good)).await;
    assert_eq!((status, why.as_str()), (401, "wrong token type"));
    // Two Txn-Token headers.
    let rsp = http()
        .get(format!("http://{}/", chain.hops[2].sidecar.inbound))
        .bearer_auth(&access)
        .header("txn-token", &good)
        .header("txn-token", &good)
        .send()
        .await
        .expect("C");
    assert_eq!(rsp.status(), 401);
    // The user's access token sent to A as a Txn-Token is dropped: A issues its own.
    let rsp = http()
        .get(format!("http://{}/", chain.hops[0].sidecar.inbound))
        .bearer_auth(tokens.access_token.expose())
        .header("txn-token", tokens.access_token.expose())
        .send()
        .await
        .expect("A");
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["next"]["next"]["txn"]["sub"], "alice", "{body}");
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn with_txn_tokens_alone_b_and_c_see_the_transaction_and_no_access_token() {
    let chain = Chain::start_with(Options {
        txn_only: true,
        ..Options::default()
    })
    .await
    .expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    let exchanges = chain.idp.exchanges();
    let before = chain.idp.token_requests();
    let (status, body) = chain.call(&tokens.access_token, "/").await.expect("call");
    assert_eq!(status, 200, "{body}");
    let c = &body["next"]["next"];
    assert_eq!(c["service"], "service-c", "{body}");
    assert_eq!(c["txn"], body["txn"]);
    assert_eq!(c["txn"]["sub"], "alice");
    // No access token past A, no exchange: one Txn-Token request per external request.
    assert!(
        c["claims"].is_null() && body["next"]["claims"].is_null(),
        "{body}"
    );
    assert_eq!(chain.idp.exchanges(), exchanges);
    assert_eq!(chain.idp.token_requests() - before, 1);
    // C's public route still requires the Txn-Token.
    let rsp = http()
        .get(format!("http://{}/", chain.hops[2].sidecar.inbound))
        .send()
        .await
        .expect("C");
    assert_eq!(rsp.status(), 401);
    chain.stop().await;
}

#[tokio::test]
async fn the_chain_of_requesting_workloads_is_bounded() {
    let idp = service().await;
    let at = alice(&idp).await;
    let (_, body) = ask(&idp, "service-a", &at, ACCESS, &[]).await;
    let mut token = body["access_token"].as_str().expect("token").to_owned();
    // service-a, then service-b and service-a in turn: each replacement adds one workload.
    for i in 1..txn::MAX_REQ_WL {
        let client = if i % 2 == 1 { "service-b" } else { "service-a" };
        let (status, body) = ask(&idp, client, &token, TXN, &[]).await;
        assert_eq!(status, StatusCode::OK, "{i}: {body}");
        token = body["access_token"].as_str().expect("token").to_owned();
    }
    let c = peek_claims(&token).expect("claims");
    assert_eq!(txn::requesting_workloads(&c).len(), txn::MAX_REQ_WL);
    // The last replacement was service-b's: service-a's would make nine.
    let (status, body) = ask(&idp, "service-a", &token, TXN, &[]).await;
    refused(
        status,
        &body,
        "invalid_request",
        "req_wl would name more than",
    );
}

#[tokio::test]
async fn a_workload_may_sign_its_own_subject_with_its_registered_key() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let keys = baton::jwt::keys::KeySet::from_signing_keys([&key]);
    let idp = start_with(|cfg| {
        cfg.clients.insert(
            "job-runner".into(),
            baton::idp::config::Client {
                id: "job-runner".into(),
                name: None,
                auth: baton::idp::config::ClientAuth::Jwks(keys),
                redirect_uris: Vec::new(),
                post_logout_redirect_uris: Vec::new(),
                grant_types: vec![EXCHANGE.into()],
                scopes: vec!["jobs.run".into()],
                default_audience: None,
                dpop_required: false,
                dpop_rebind: false,
            },
        );
        cfg.txn_tokens = Some(TxnTokens {
            audience: TRUST_DOMAIN.into(),
            lifetime: 120,
            clients: vec!["job-runner".into(), "service-a".into()],
            unsigned_subject_clients: vec!["job-runner".into()],
        });
    })
    .await;
    let now = baton::jwt::unix_now();
    let signed = |claims: Value| key.sign("JWT", &claims).expect("sign");
    let ask_self = |subject: String| {
        let assertion = signed(
            json!({"iss": "job-runner", "sub": "job-runner", "aud": idp.url,
            "iat": now, "exp": now + 60, "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())}),
        );
        let http = idp.http.clone();
        let url = format!("{}/token", idp.url);
        async move {
            let rsp = http
                .post(url)
                .form(&[
                    ("grant_type", EXCHANGE),
                    ("requested_token_type", TXN),
                    ("audience", TRUST_DOMAIN),
                    ("scope", "jobs.run"),
                    ("subject_token", &subject),
                    ("subject_token_type", txn::SELF_SIGNED),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .expect("token");
            let status = rsp.status();
            (status, rsp.json::<Value>().await.expect("json"))
        }
    };
    let subject = signed(
        json!({"iss": "job-runner", "sub": "nightly-report", "aud": idp.url,
                                "iat": now, "exp": now + 60}),
    );
    let (status, body) = ask_self(subject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = peek_claims(body["access_token"].as_str().expect("t")).expect("claims");
    assert_eq!(
        (c["sub"].as_str(), c["req_wl"].as_str()),
        (Some("nightly-report"), Some("job-runner"))
    );
    // Another audience, an expired one, another key: refused.
    let other_aud = signed(
        json!({"iss": "job-runner", "sub": "x", "aud": "https://elsewhere",
                                  "iat": now, "exp": now + 60}),
    );
    let (status, body) = ask_self(other_aud).await;
    refused(status, &body, "invalid_request", "audience mismatch");
    let expired = signed(json!({"iss": "job-runner", "sub": "x", "aud": idp.url,
                                "iat": now - 120, "exp": now - 1}));
    let (status, body) = ask_self(expired).await;
    refused(status, &body, "invalid_request", "expired");
    let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
    let foreign = stranger
        .sign(
            "JWT",
            &json!({"iss": "job-runner", "sub": "x", "aud": idp.url, "iat": now, "exp": now + 60}),
        )
        .expect("sign");
    let (status, body) = ask_self(foreign).await;
    refused(status, &body, "invalid_request", "subject_token");
    // service-a is not allowed to state a subject, signed or not.
    let (status, body) = ask(&idp, "service-a", "x.y.z", txn::SELF_SIGNED, &[]).await;
    refused(
        status,
        &body,
        "invalid_request",
        "may not state the subject",
    );
}
