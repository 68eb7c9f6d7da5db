//! e2e: baton-idp over HTTP on 127.0.0.1:0: the seed chain, the exchange policy and its errors,
//! code + PKCE, redirect URI tricks, key rotation, private_key_jwt, and bad bodies.

use crate::support::idp::{self as support, REDIRECT, claims, pkce};
use baton::jwt::{self, Rules};
use baton::secret::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

#[test_log::test(tokio::test)]
async fn seed_chain_keeps_user_claims_and_records_every_hop() {
    let idp = support::start().await;
    // The user signs in at A through the real form (follows redirects, reads hidden fields).
    let user = baton::signin::password_login(&baton::signin::Request {
        issuer: idp.url.clone(),
        client_id: "service-a".into(),
        client_secret: Secret::new(support::secret("service-a")),
        redirect_uri: REDIRECT.into(),
        scope: "openid profile".into(),
        username: "alice".into(),
        password: Secret::new(support::ALICE_PASSWORD),
        dpop: None,
    })
    .await
    .expect("login");
    let a = claims(user.access_token.expose());
    assert_eq!(a["aud"], "service-a");
    assert_eq!(a["grants"], json!(["service-a"]));
    assert_eq!(a["acr"], "pwd");
    let id = claims(user.id_token.as_ref().expect("id token").expose());
    assert_eq!(id["aud"], "service-a");
    assert!(id["nonce"].is_string());

    let (st, to_b) = idp
        .exchange(
            "service-a",
            user.access_token.expose(),
            &[("audience", "service-b")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{to_b}");
    assert_eq!(to_b["issued_token_type"], support::ACCESS);
    assert_eq!(to_b["token_type"], "Bearer");
    assert!(
        to_b.get("refresh_token").is_none(),
        "delegated tokens are access-only"
    );
    let (st, to_c) = idp
        .exchange(
            "service-b",
            &s(&to_b, "access_token"),
            &[("audience", "service-c")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{to_c}");

    let c_token = s(&to_c, "access_token");
    let keys = idp.jwks().await;
    let c = jwt::verify(
        &c_token,
        &keys,
        &Rules::access(idp.url.clone(), "service-c"),
        jwt::unix_now(),
    )
    .expect("C verifies")
    .claims;
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["account_id"], "acct-1001");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["grants"], json!(["service-a", "service-b", "service-c"]));
    assert_eq!(
        c["act"],
        json!({"sub": "service-b", "act": {"sub": "service-a"}})
    );
    assert_eq!(c["aud"], "service-c");
    assert_eq!(c["client_id"], "service-b");
    assert_eq!(c["acr"], "pwd");
    assert_eq!(c["auth_time"], a["auth_time"]);
    assert_ne!(c["jti"], a["jti"]);
    assert!(c["exp"].as_u64() <= a["exp"].as_u64());
    assert_eq!(idp.idp.exchanges(), 2);

    let info: Value = idp
        .http
        .get(format!("{}/userinfo", idp.url))
        .bearer_auth(user.access_token.expose())
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (info["sub"].as_str(), info["account_id"].as_str()),
        (Some("alice"), Some("acct-1001"))
    );
    let rsp = idp
        .http
        .get(format!("{}/userinfo", idp.url))
        .bearer_auth("forged.token.x")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        rsp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains(r#"error="invalid_token""#)
    );

    let seen = idp.introspect("service-c", &c_token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["act"]["sub"], "service-b");
    assert_eq!(
        idp.introspect("service-b", &c_token).await,
        json!({"active": false}),
        "not its audience"
    );
}

#[test_log::test(tokio::test)]
async fn long_job_token_outlives_the_subject_only_where_an_edge_allows() {
    let idp = support::start().await;
    let user = idp.login("openid update:builds").await;
    let subject = s(&user, "access_token");
    let (st, job) = idp
        .exchange(
            "service-a",
            &subject,
            &[
                ("resource", "https://builds.example/api"),
                ("scope", "update:builds"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{job}");
    let job_token = s(&job, "access_token");
    let job_claims = claims(&job_token);
    assert_eq!(job_claims["aud"], "builds-api");
    assert_eq!(job_claims["scope"], "update:builds");

    // builds-api re-issues itself a long-lived, narrow token: the edge has max_lifetime.
    let (st, long) = idp
        .exchange(
            "builds-api",
            &job_token,
            &[
                ("audience", "builds-api"),
                ("scope", "update:builds"),
                ("requested_lifetime", "3600"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{long}");
    let long = claims(&s(&long, "access_token"));
    assert!(
        long["exp"].as_u64() > job_claims["exp"].as_u64(),
        "outlives the subject"
    );
    assert_eq!(long["sub"], "alice");
    assert_eq!(long["scope"], "update:builds");

    // service-a → builds-api has no max_lifetime: the same ask is refused.
    let (st, err) = idp
        .exchange(
            "service-a",
            &subject,
            &[("audience", "builds-api"), ("requested_lifetime", "3600")],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_request");
}

#[test_log::test(tokio::test)]
async fn delegation_scope_adds_the_edge_claim_and_resources_make_an_aud_array() {
    let idp = support::start().await;
    let user = idp.login("openid calendar.edit update:builds").await;
    let subject = s(&user, "access_token");
    let (st, cal) = idp
        .exchange(
            "service-a",
            &subject,
            &[("audience", "resource-api"), ("scope", "calendar.edit")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{cal}");
    let cal = claims(&s(&cal, "access_token"));
    assert_eq!(cal["user-access"], "resource-api");
    assert_eq!(cal["scope"], "calendar.edit");
    assert_eq!(cal["aud"], "resource-api");

    let (st, two) = idp
        .exchange(
            "service-a",
            &subject,
            &[
                ("resource", "https://builds.example/api"),
                ("resource", "https://calendar.example/api"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{two}");
    assert_eq!(
        claims(&s(&two, "access_token"))["aud"],
        json!(["builds-api", "resource-api"])
    );
}

#[test_log::test(tokio::test)]
async fn exchange_errors_follow_rfc8693() {
    let idp = support::start().await;
    let user = idp.login("openid profile").await;
    let subject = s(&user, "access_token");
    let refresh = s(&user, "refresh_token");
    let b = ("audience", "service-b");
    // (client, subject token, extra parameters, expected error)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("service-a", "not.a.jwt".into(), vec![b], "invalid_request"),
        (
            "service-b",
            subject.clone(),
            vec![("audience", "service-c")],
            "invalid_request",
        ), // aud is not B
        (
            "service-a",
            refresh.clone(),
            vec![
                b,
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            "invalid_request",
        ),
        (
            "service-a",
            subject.clone(),
            vec![
                b,
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            "invalid_request",
        ),
        (
            "service-a",
            subject.clone(),
            vec![b, ("actor_token", subject.as_str())],
            "invalid_request",
        ),
        (
            "service-a",
            subject.clone(),
            vec![b, ("actor_token_type", support::ACCESS)],
            "invalid_request",
        ),
        (
            "service-a",
            subject.clone(),
            vec![("audience", "nobody")],
            "invalid_target",
        ),
        (
            "service-a",
            subject.clone(),
            vec![("audience", "service-c")],
            "invalid_target",
        ), // no edge
        (
            "service-a",
            subject.clone(),
            vec![("resource", "https://unknown.example/")],
            "invalid_target",
        ),
        ("service-a", subject.clone(), vec![], "invalid_target"),
        (
            "service-a",
            subject.clone(),
            vec![b, ("scope", "calendar.edit")],
            "invalid_scope",
        ),
        (
            "service-a",
            subject.clone(),
            vec![b, ("audience", "service-b"), ("scope", "a"), ("scope", "b")],
            "invalid_request",
        ),
    ];
    for (i, (client, token, extra, want)) in cases.into_iter().enumerate() {
        let mut form = vec![
            ("grant_type", support::EXCHANGE),
            ("subject_token", token.as_str()),
        ];
        if !extra.iter().any(|(k, _)| *k == "subject_token_type") {
            form.push(("subject_token_type", support::ACCESS));
        }
        form.extend(extra);
        let (st, body) = idp.token(client, &form).await;
        assert_eq!(
            (i, st, body["error"].as_str()),
            (i, StatusCode::BAD_REQUEST, Some(want)),
            "{body}"
        );
        assert!(!body.to_string().contains(&subject), "no token echoed");
    }
    // A client without the exchange grant.
    let (st, body) = idp.exchange("service-c", &subject, &[b]).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    assert_eq!(idp.idp.exchanges(), 0);
}

#[test_log::test(tokio::test)]
async fn replayed_code_is_refused_and_revokes_what_it_issued() {
    let idp = support::start().await;
    let (verifier, challenge) = pkce();
    let code = idp.code("openid", &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (st, tokens) = idp.token("service-a", &form).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    let access = s(&tokens, "access_token");
    assert_eq!(idp.introspect("service-a", &access).await["active"], true);

    let (st, again) = idp.token("service-a", &form).await;
    assert_eq!(
        (st, again["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        idp.introspect("service-a", &access).await,
        json!({"active": false})
    );
    let (st, r) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&tokens, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(
        (st, r["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (st, e) = idp
        .exchange("service-a", &access, &[("audience", "service-b")])
        .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "revoked subject"
    );
}

#[test_log::test(tokio::test)]
async fn pkce_is_required_and_checked() {
    let idp = support::start().await;
    let (_, challenge) = pkce();
    let code = idp.code("openid", &challenge).await;
    let (wrong, _) = pkce();
    let (st, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &wrong),
            ],
        )
        .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    for (method, chal) in [("plain", challenge.as_str()), ("S256", "")] {
        let rsp = idp
            .http
            .get(format!("{}/authorize", idp.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", REDIRECT),
                ("state", "x"),
                ("code_challenge", chal),
                ("code_challenge_method", method),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
        let loc = rsp.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            loc.starts_with(REDIRECT)
                && loc.contains("error=invalid_request")
                && loc.contains("state=x"),
            "{loc}"
        );
    }
}

#[test_log::test(tokio::test)]
async fn redirect_uri_tricks_get_an_error_page_not_a_redirect() {
    let idp = support::start().await;
    let (_, challenge) = pkce();
    for bad in [
        "http://127.0.0.1:8080/callbackx",
        "http://127.0.0.1:8080/callback/../evil",
        "http://127.0.0.1:8080/callback#frag",
        "http://127.0.0.1:8080/call",
        "http://127.0.0.1:8080/callback?x=1",
        "http://evil.example/callback",
        "https://127.0.0.1:8080/callback",
    ] {
        let rsp = idp
            .http
            .get(format!("{}/authorize", idp.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", bad),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(rsp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(rsp.headers().get("location").is_none(), "{bad}");
        assert!(rsp.text().await.expect("page").contains("redirect_uri"));
    }
}

#[test_log::test(tokio::test)]
async fn rotation_keeps_tokens_signed_before_it_verifiable() {
    let idp = support::start().await;
    let cc = [
        ("grant_type", "client_credentials"),
        ("audience", "service-b"),
    ];
    let (st, before) = idp.token("service-a", &cc).await;
    assert_eq!(st, StatusCode::OK, "{before}");
    let before = s(&before, "access_token");
    let jwks_before = idp.jwks().await;
    idp.idp.rotate_keys().await.expect("rotate");
    let (_, after) = idp.token("service-a", &cc).await;
    let after = s(&after, "access_token");
    let kid = |t: &str| {
        let h = t
            .split('.')
            .next()
            .map(|h| {
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h)
                    .expect("b64")
            })
            .expect("header");
        serde_json::from_slice::<Value>(&h).expect("json")["kid"].clone()
    };
    assert_ne!(kid(&before), kid(&after));
    assert!(
        jwks_before.contains(kid(&after).as_str().expect("kid")),
        "the new key was published before it signed"
    );
    let keys = idp.jwks().await;
    let rules = Rules::access(idp.url.clone(), "service-b");
    for t in [&before, &after] {
        jwt::verify(t, &keys, &rules, jwt::unix_now()).expect("verifies with the published JWKS");
    }
    let rsp = idp
        .http
        .get(format!("{}/jwks", idp.url))
        .send()
        .await
        .expect("jwks");
    assert_eq!(rsp.headers()["cache-control"], "max-age=300");
}

#[test_log::test(tokio::test)]
async fn private_key_jwt_authenticates_once_per_jti() {
    let key = baton::jwt::keys::SigningKey::generate(baton::jwt::Algorithm::ES256).expect("key");
    let keyset = baton::jwt::keys::KeySet::from_signing_keys([&key]);
    let idp = support::start_with(|cfg| {
        cfg.clients.insert(
            "jwt-client".into(),
            baton::idp::config::Client {
                id: "jwt-client".into(),
                name: None,
                auth: baton::idp::config::ClientAuth::Jwks(keyset),
                redirect_uris: vec![],
                post_logout_redirect_uris: vec![],
                grant_types: vec!["client_credentials".into()],
                scopes: vec![],
                default_audience: None,
                dpop_required: false,
                dpop_rebind: false,
            },
        );
        let mut edge = cfg.grants[0].clone();
        edge.client = "jwt-client".into();
        cfg.grants.push(edge);
    })
    .await;
    let now = jwt::unix_now();
    let assertion = |aud: Value, jti: &str| {
        key.sign("JWT", &json!({"iss": "jwt-client", "sub": "jwt-client", "aud": aud, "exp": now + 60, "iat": now, "jti": jti}))
            .expect("sign")
    };
    let send = |a: String| {
        let http = idp.http.clone();
        let url = format!("{}/token", idp.url);
        async move {
            let rsp = http
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("audience", "service-b"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .expect("token");
            (rsp.status(), rsp.json::<Value>().await.expect("json"))
        }
    };
    let first = assertion(json!(idp.url), "j-1");
    let (st, ok) = send(first.clone()).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(claims(&s(&ok, "access_token"))["sub"], "jwt-client");
    let (st, replay) = send(first).await;
    assert_eq!(
        (st, replay["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (st, _) = send(assertion(json!(format!("{}/token", idp.url)), "j-2")).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "token endpoint as a single string is accepted"
    );
    let (st, arr) = send(assertion(json!([idp.url, "https://other.example"]), "j-3")).await;
    assert_eq!(
        (st, arr["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

#[test_log::test(tokio::test)]
async fn bad_bodies_and_client_auth_get_oauth_json_errors() {
    let idp = support::start().await;
    let url = format!("{}/token", idp.url);
    let post = |ct: &'static str, body: Vec<u8>, basic: bool| {
        let mut r = idp
            .http
            .post(url.clone())
            .header("content-type", ct)
            .body(body);
        if basic {
            r = r.basic_auth("service-a", Some(support::secret("service-a")));
        }
        async move {
            let rsp = r.send().await.expect("send");
            let (st, h) = (rsp.status(), rsp.headers().clone());
            (st, h, rsp.json::<Value>().await.expect("always JSON"))
        }
    };
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&'static str, Vec<u8>, bool, StatusCode, &str)> = vec![
        (
            "application/json",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
            true,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            form,
            vec![b'a'; 70 * 1024],
            true,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=client_credentials&grant_type=password".to_vec(),
            true,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=password".to_vec(),
            true,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            form,
            b"%%%\xff\xfe=&&==".to_vec(),
            true,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=client_credentials&audience=service-b".to_vec(),
            false,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            form,
            b"grant_type=client_credentials&audience=service-b&client_id=service-a&client_secret=x"
                .to_vec(),
            true,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (i, (ct, body, basic, status, error)) in cases.into_iter().enumerate() {
        let (st, h, json) = post(ct, body, basic).await;
        assert_eq!(
            (i, st, json["error"].as_str()),
            (i, status, Some(error)),
            "{json}"
        );
        assert_eq!(h["cache-control"], "no-store");
    }
    let rsp = idp
        .http
        .post(url.clone())
        .basic_auth("service-a", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("send");
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        rsp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic")
    );
    let metrics = idp
        .http
        .get(format!("{}/metrics", idp.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains(r#"baton_idp_token_requests_total{grant_type="unknown",outcome="unsupported_grant_type"} 1"#), "{metrics}");
}

#[test_log::test(tokio::test)]
async fn metrics_are_served_on_the_admin_listener_only() {
    let idp = support::start().await;
    let status = |url: String| {
        let http = idp.http.clone();
        async move { http.get(url).send().await.expect("get").status() }
    };
    // Failed sign-in counters and the rest are for the operator, not the public listener, in
    // no spelling of the path.
    for path in [
        "/metrics",
        "/metrics/",
        "/Metrics",
        "//metrics",
        "/%6detrics",
    ] {
        assert_eq!(
            status(format!("{}{path}", idp.url)).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        status(format!("{}/metrics", idp.admin)).await,
        StatusCode::OK
    );
    // The admin listener serves nothing else: no sign-in, no tokens.
    for path in [
        "/authorize",
        "/token",
        "/.well-known/openid-configuration",
        "/end_session",
    ] {
        assert_eq!(
            status(format!("{}{path}", idp.admin)).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Loopback unless the operator says otherwise.
    let cfg = baton::idp::Config::demo("http://idp.test", std::env::temp_dir());
    assert!(cfg.admin_listen.ip().is_loopback(), "{}", cfg.admin_listen);
    let minimal = "issuer: http://idp.test\nkeys: {dir: k}\n";
    let cfg = baton::idp::Config::from_yaml(minimal, "idp.yaml").expect("valid");
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:9001");
}

#[test_log::test(tokio::test)]
async fn the_idp_process_serves_metrics_on_its_admin_listener() {
    use crate::support::process::{IdpProc, free_port, http_client, scratch};
    let dir = scratch("idp-admin");
    let listen = format!("127.0.0.1:{}", free_port());
    let idp = IdpProc::start(&dir, &format!("http://{listen}"), &listen).await;
    // The start-up line names the admin address (deploy/idp.yaml's, made ephemeral).
    let log = idp.proc.output();
    let admin = log
        .split("admin=Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("admin address in {log}"));
    let http = http_client();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.expect("get").status() }
    };
    assert_eq!(get(format!("http://{admin}/metrics")).await, StatusCode::OK);
    assert_eq!(
        get(format!("http://{listen}/metrics")).await,
        StatusCode::NOT_FOUND
    );
}

#[test_log::test(tokio::test)]
async fn discovery_lists_every_required_field() {
    let idp = support::start().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let d: Value = idp
            .http
            .get(format!("{}{path}", idp.url))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(d["issuer"], idp.url.as_str());
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "introspection_endpoint",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
            "scopes_supported",
            "claims_supported",
            "token_endpoint_auth_signing_alg_values_supported",
        ] {
            assert!(!d[field].is_null(), "{field}");
        }
        assert!(
            d["grant_types_supported"]
                .as_array()
                .expect("array")
                .contains(&json!(support::EXCHANGE))
        );
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            d["end_session_endpoint"],
            format!("{}/end_session", idp.url)
        );
        assert!(
            d["token_endpoint_auth_methods_supported"]
                .as_array()
                .expect("array")
                .contains(&json!("private_key_jwt"))
        );
    }
}

#[test_log::test(tokio::test)]
async fn actor_token_must_be_the_requesting_client() {
    let idp = support::start().await;
    let user = idp.login("openid").await;
    let subject = s(&user, "access_token");
    let (_, own) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ],
        )
        .await;
    let own = s(&own, "access_token");
    let actor = [
        ("audience", "service-b"),
        ("actor_token", own.as_str()),
        ("actor_token_type", support::ACCESS),
    ];
    let (st, ok) = idp.exchange("service-a", &subject, &actor).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(
        claims(&s(&ok, "access_token"))["act"],
        json!({"sub": "service-a"})
    );
    // service-b presenting service-a's token as its actor token is refused.
    let (_, b_sub) = idp
        .exchange("service-a", &subject, &[("audience", "service-b")])
        .await;
    let actor = [
        ("audience", "service-c"),
        ("actor_token", own.as_str()),
        ("actor_token_type", support::ACCESS),
    ];
    let (st, err) = idp
        .exchange("service-b", &s(&b_sub, "access_token"), &actor)
        .await;
    assert_eq!(
        (st, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[test_log::test(tokio::test)]
async fn rs256_keys_sign_verifiable_tokens() {
    let idp = support::start_with(|cfg| cfg.keys.algorithm = baton::jwt::Algorithm::RS256).await;
    let (st, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://calendar.example/api"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = s(&body, "access_token");
    let v = jwt::verify(
        &token,
        &idp.jwks().await,
        &Rules::access(idp.url.clone(), "resource-api"),
        jwt::unix_now(),
    )
    .expect("verifies");
    assert_eq!(v.alg, baton::jwt::Algorithm::RS256);
    assert_eq!(v.claims["sub"], "service-a");
    assert_eq!(v.claims["aud"], "resource-api");
}

#[test_log::test(tokio::test)]
async fn refresh_tokens_rotate_and_never_widen_scope() {
    let idp = support::start().await;
    let user = idp.login("openid profile").await;
    let first = s(&user, "refresh_token");
    let (st, next) = idp
        .token(
            "service-a",
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{next}");
    let at = claims(&s(&next, "access_token"));
    assert_eq!(
        (at["sub"].as_str(), at["scope"].as_str()),
        (Some("alice"), Some("openid profile"))
    );
    let second = s(&next, "refresh_token");
    let (st, wider) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &second),
                ("scope", "openid calendar.edit"),
            ],
        )
        .await;
    assert_eq!(
        (st, wider["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    // A refused scope leaves the token usable, and a narrower scope is granted.
    let (st, narrow) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &second),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{narrow}");
    assert_eq!(claims(&s(&narrow, "access_token"))["scope"], "openid");
    // The rotated-away one is refused (and, as grants.rs shows, revokes the family).
    let (st, reuse) = idp
        .token(
            "service-a",
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
    assert_eq!(
        (st, reuse["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "rotated away"
    );
}
