//! The IdP attack catalogue cases not covered elsewhere: `alg` confusion in client
//! assertions and in subject tokens, a code replayed after 30 s, forged `act` and reserved
//! parameters, an `actor_token` the subject's `may_act` does not name.

use crate::support::idp::{self as support, REDIRECT, claims, pkce};
use crate::support::tokens::{self, b64};
use baton::idp::config::{Client, ClientAuth};
use baton::jwt::{Algorithm, keys::KeySet, keys::SigningKey, unix_now};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// An HS256 token keyed with `secret` (the attacker's guess: the public key as an HMAC key).
fn hs256(kid: &str, typ: &str, claims: &Map<String, Value>, secret: &str) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.to_owned());
    h.typ = Some(typ.to_owned());
    jsonwebtoken::encode(
        &h,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("hs256")
}

/// The same signature with another `alg` in the header.
fn realg(token: &str, alg: &str) -> String {
    use base64::Engine;
    let mut parts = token.splitn(3, '.');
    let (h, p, sig) = (
        parts.next().expect("h"),
        parts.next().expect("p"),
        parts.next().expect("s"),
    );
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .expect("b64");
    let mut header: Value = serde_json::from_slice(&raw).expect("json");
    header["alg"] = json!(alg);
    format!("{}.{p}.{sig}", b64(header.to_string().as_bytes()))
}

#[test_log::test(tokio::test)]
async fn client_assertions_with_a_confused_alg_get_invalid_client() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let keys = KeySet::from_signing_keys([&key]);
    let idp = support::start_with(|cfg| {
        cfg.clients.insert(
            "jwt-client".into(),
            Client {
                id: "jwt-client".into(),
                name: None,
                auth: ClientAuth::Jwks(keys),
                redirect_uris: vec![],
                post_logout_redirect_uris: vec![],
                grant_types: vec!["client_credentials".into()],
                scopes: vec![],
                default_audience: None,
            },
        );
        let mut edge = cfg.grants[0].clone();
        edge.client = "jwt-client".into();
        cfg.grants.push(edge);
    })
    .await;
    let now = unix_now();
    let claims = |jti: &str| {
        obj(
            json!({"iss": "jwt-client", "sub": "jwt-client", "aud": idp.url,
            "exp": now + 60, "iat": now, "jti": jti}),
        )
    };
    let kid = key.kid();
    let good = key.sign("JWT", &claims("ok")).expect("sign");
    let attacker = SigningKey::generate(Algorithm::ES256).expect("key");
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            tokens::unsigned(r#"{"alg":"none","typ":"JWT"}"#, &claims("n1"), ""),
        ),
        (
            "alg None, signature kept",
            realg(&key.sign("JWT", &claims("n2")).expect("sign"), "None"),
        ),
        (
            "HS256 keyed with the registered public key",
            hs256(kid, "JWT", &claims("h1"), &key.public_jwk().to_string()),
        ),
        (
            "RS256 header on an ES256 signature",
            realg(&key.sign("JWT", &claims("r1")).expect("sign"), "RS256"),
        ),
        (
            "signed by another key under the registered kid",
            tokens::es256_raw(
                &attacker,
                &format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#),
                &claims("a1"),
            ),
        ),
        (
            "signature stripped",
            format!("{}.", good.rsplit_once('.').expect("jws").0),
        ),
    ];
    let send = |a: String| {
        let (http, url) = (idp.http.clone(), format!("{}/token", idp.url));
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
    for (name, assertion) in cases {
        let (st, body) = send(assertion).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{name}: {body}"
        );
    }
    // The control: the well-formed assertion authenticates.
    let (st, body) = send(good).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

#[test_log::test(tokio::test)]
async fn subject_tokens_with_a_confused_alg_or_a_forged_act_get_invalid_request() {
    let idp = support::start().await;
    let user = idp.login("openid profile").await;
    let real = s(&user, "access_token");
    let signer = idp.idp.keys().signer.clone();
    let kid = signer.kid().to_owned();
    let mut forged = claims(&real);
    forged.insert(
        "act".into(),
        json!({"sub": "service-z", "act": {"sub": "service-y"}}),
    );
    forged.insert("jti".into(), json!("forged-1"));
    let attacker = SigningKey::generate(Algorithm::ES256).expect("key");
    let hdr = format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt"}}"#);
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            tokens::unsigned(r#"{"alg":"none","typ":"at+jwt"}"#, &forged, ""),
        ),
        (
            "HS256 keyed with the IdP's public JWK",
            hs256(&kid, "at+jwt", &forged, &signer.public_jwk().to_string()),
        ),
        (
            "RS256 header on the real ES256 signature",
            realg(&real, "RS256"),
        ),
        (
            "forged nested act signed by another key under the IdP's kid",
            tokens::es256_raw(&attacker, &hdr, &forged),
        ),
        (
            "real header and signature, payload swapped for one with act",
            {
                let mut p = real.split('.');
                let (h, _, sig) = (p.next().expect("h"), p.next(), p.next().expect("s"));
                format!(
                    "{h}.{}.{sig}",
                    b64(&serde_json::to_vec(&forged).expect("json"))
                )
            },
        ),
        ("an ID token as subject", s(&user, "id_token")),
    ];
    for (name, subject) in cases {
        let (st, body) = idp
            .exchange("service-a", &subject, &[("audience", "service-b")])
            .await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{name}: {body}"
        );
    }
    assert_eq!(idp.idp.exchanges(), 0);

    // Reserved claims cannot be smuggled in as request parameters either: the result's `act`
    // names only the authenticated client.
    let (st, ok) = idp
        .exchange(
            "service-a",
            &real,
            &[
                ("audience", "service-b"),
                ("act", r#"{"sub":"service-z"}"#),
                ("may_act", r#"{"sub":"service-z"}"#),
                ("grants", "service-c"),
                ("sub", "bob"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    let out = claims(&s(&ok, "access_token"));
    assert_eq!(out["act"], json!({"sub": "service-a"}));
    assert_eq!(out["sub"], "alice");
    assert_eq!(
        out["grants"],
        json!(["service-a", "service-b"]),
        "no service-c smuggled in"
    );
    assert!(out.get("may_act").is_none());
}

#[test_log::test(tokio::test)]
async fn an_actor_the_subjects_may_act_does_not_name_is_refused() {
    let idp = support::start().await;
    let signer = idp.idp.keys().signer.clone();
    let now = unix_now();
    // The IdP issues no may_act itself; a subject carrying one is minted with its own key.
    let subject = |may_act: &str, jti: &str| {
        signer
            .sign(
                "at+jwt",
                &json!({"iss": idp.url, "sub": "alice", "aud": "service-a",
                    "client_id": "service-a", "iat": now, "exp": now + 300, "jti": jti,
                    "scope": "openid", "may_act": {"sub": may_act}}),
            )
            .expect("sign")
    };
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
    let (st, err) = idp
        .exchange("service-a", &subject("service-z", "m1"), &actor)
        .await;
    assert_eq!(
        (st, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{err}"
    );
    let (st, ok) = idp
        .exchange("service-a", &subject("service-a", "m2"), &actor)
        .await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    let out = claims(&s(&ok, "access_token"));
    assert_eq!(out["act"], json!({"sub": "service-a"}));
    assert!(out.get("may_act").is_none(), "may_act is not carried on");
}

/// OpenID conformance `oidcc-codereuse-30seconds`: a code redeemed, then replayed 31 s later
/// (time is an argument of the token endpoint), is refused and what it issued is revoked.
#[test_log::test(tokio::test)]
async fn a_code_replayed_after_30_seconds_is_refused_and_revokes_its_tokens() {
    let idp = support::start().await;
    let (verifier, challenge) = pkce();
    let code = idp.code("openid", &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (st, first) = idp.token("service-a", &form).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let access = s(&first, "access_token");
    assert_eq!(idp.introspect("service-a", &access).await["active"], true);

    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("service-a:{}", support::secret("service-a"))
                )
            ),
        )
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let rsp = baton::idp::token::token(&idp.idp, req, unix_now() + 31).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    let err: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(err["error"], "invalid_grant");
    assert_eq!(
        idp.introspect("service-a", &access).await,
        json!({"active": false})
    );
    let (st, r) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&first, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(
        (st, r["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

/// Found by the `token_endpoint` fuzz target: a token pasted into `audience` or `scope` came
/// back in `error_description`. No parameter value is echoed now.
#[test_log::test(tokio::test)]
async fn error_descriptions_never_echo_a_token_sent_in_another_parameter() {
    let idp = support::start().await;
    let user = idp.login("openid profile").await;
    let token = s(&user, "access_token");
    let refresh = s(&user, "refresh_token");
    // (case, form, expected error)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "client_credentials audience",
            vec![("grant_type", "client_credentials"), ("audience", &token)],
            "invalid_target",
        ),
        (
            "client_credentials scope",
            vec![
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
                ("scope", &token),
            ],
            "invalid_scope",
        ),
        (
            "exchange audience",
            vec![
                ("grant_type", support::EXCHANGE),
                ("subject_token", &token),
                ("subject_token_type", support::ACCESS),
                ("audience", &refresh),
            ],
            "invalid_target",
        ),
        (
            "exchange scope",
            vec![
                ("grant_type", support::EXCHANGE),
                ("subject_token", &token),
                ("subject_token_type", support::ACCESS),
                ("audience", "service-b"),
                ("scope", &refresh),
            ],
            "invalid_scope",
        ),
        (
            "refresh scope",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("scope", &token),
            ],
            "invalid_scope",
        ),
    ];
    for (name, form, want) in cases {
        let (st, body) = idp.token("service-a", &form).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(want)),
            "{name}: {body}"
        );
        let text = body.to_string();
        assert!(
            !text.contains(&token) && !text.contains(&refresh),
            "{name}: {text}"
        );
    }
}
