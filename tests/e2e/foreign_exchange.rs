//! e2e: crossing trust domains at baton-idp. A client exchanges a user token of a trusted
//! foreign issuer (keys made by the test) for this domain's token: verified with that issuer's
//! keys, its claims mapped, `act` and `grants` as for any exchange, and `sub` kept apart from
//! this domain's users. Untrusted issuers, other clients, other audiences and forged keys get
//! RFC 8693 `invalid_request`. The same crossing made by service-b's outbound listener, for the
//! token its app propagates.

use crate::support::idp::{self as test_idp, TestIdp};
use crate::support::recorder::Upstream;
use baton::config::Problems;
use baton::config::issuers::TokenTyp;
use baton::config::outbound::{RawOutbound, validate};
use baton::http::empty;
use baton::idp::config::trusted::{KeySource, TrustedIssuer};
use baton::jwt::Algorithm;
use baton::jwt::foreign::Mapping;
use baton::jwt::keys::SigningKey;
use baton::outbound::Outbound;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};

const CORP: &str = "https://sso.corp.example/realms/staff";

/// baton-idp trusting `CORP` (keys: `key`'s, from a file) for tokens service-b exchanges.
async fn idp_trusting(key: &SigningKey) -> TestIdp {
    let dir = std::env::temp_dir().join(format!("baton-e2e-trust-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("corp-jwks.json");
    std::fs::write(&file, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    test_idp::start_with(move |cfg| {
        cfg.trusted_issuers.push(TrustedIssuer {
            name: "corp".into(),
            issuer: CORP.into(),
            keys: KeySource::File(file),
            audiences: vec!["service-b".into()],
            clients: vec!["service-b".into()],
            algorithms: vec![Algorithm::ES256],
            typ: TokenTyp::Jwt,
            sub_prefix: "corp:".into(),
            mappings: vec![Mapping::parse("roles", "realm_access.roles").unwrap()],
        });
    })
    .await
}

fn corp_user(key: &SigningKey, changes: Value) -> String {
    let now = baton::jwt::unix_now();
    let mut claims = json!({
        "iss": CORP, "aud": "service-b", "sub": "alice", "typ": "Bearer",
        "iat": now, "exp": now + 300, "realm_access": {"roles": ["admin"]},
        "act": {"sub": "forged"}, "grants": ["service-z"], "may_act": {"sub": "service-b"},
        "sid": "someone-elses-session",
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    key.sign("JWT", claims.as_object().unwrap()).unwrap()
}

#[test_log::test(tokio::test)]
async fn a_foreign_user_token_becomes_a_domain_token_with_mapped_claims_and_the_act_chain() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = idp_trusting(&key).await;
    let (status, body) = idp
        .exchange(
            "service-b",
            &corp_user(&key, json!({})),
            &[("audience", "service-c")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    // Signed by baton-idp, as any token of the domain.
    let keys = idp.jwks().await;
    let rules = baton::jwt::Rules::access(idp.url.clone(), "service-c");
    let v = baton::jwt::verify(token, &keys, &rules, baton::jwt::unix_now()).expect("verifies");
    let c = v.claims;
    assert_eq!(c["iss"], json!(idp.url));
    assert_eq!(c["sub"], "corp:alice", "never this domain's alice");
    assert_eq!(c["roles"], json!(["admin"]));
    assert_eq!(
        c["act"],
        json!({"sub": "service-b"}),
        "the chain starts here"
    );
    assert_eq!(c["grants"], json!(["service-c"]));
    for foreign in ["may_act", "sid", "realm_access", "typ"] {
        assert!(c.get(foreign).is_none(), "{foreign} carried over: {c:?}");
    }
    // A foreign token that lives 40 days buys no more than this IdP's own access tokens: the
    // domain token has no `sid` or `grant_id` for revocation to reach.
    let now = baton::jwt::unix_now();
    let long = corp_user(&key, json!({"exp": now + 40 * 86_400}));
    let month = [("audience", "service-c"), ("requested_lifetime", "2592000")];
    let (status, body) = idp.exchange("service-b", &long, &month).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = idp
        .exchange("service-b", &long, &[("audience", "service-c")])
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let exp = baton::jwt::peek_claims(token).unwrap()["exp"]
        .as_u64()
        .unwrap();
    assert!(exp <= now + 3_600, "{} s", exp - now);
    // A sign-in in the future would lift every `max_age` downstream: refused.
    let ahead = corp_user(&key, json!({"auth_time": now + 86_400}));
    let (status, body) = idp
        .exchange("service-b", &ahead, &[("audience", "service-c")])
        .await;
    assert_eq!(status, 400, "{body}");
}

#[test_log::test(tokio::test)]
async fn foreign_tokens_the_policy_does_not_trust_get_invalid_request() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = idp_trusting(&key).await;
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "service-a",
            corp_user(&key, json!({"aud": "service-a"})),
            "not trusted for service-a",
        ),
        ("service-b", corp_user(&stranger, json!({})), "another key"),
        (
            "service-b",
            corp_user(&key, json!({"iss": format!("{CORP}/")})),
            "trailing slash",
        ),
        (
            "service-b",
            corp_user(&key, json!({"iss": CORP.to_uppercase()})),
            "another case",
        ),
        (
            "service-b",
            corp_user(&key, json!({"iss": "https://other.example"})),
            "untrusted issuer",
        ),
        (
            "service-b",
            corp_user(&key, json!({"aud": "service-c"})),
            "another audience",
        ),
        (
            "service-b",
            corp_user(&key, json!({"typ": "ID"})),
            "an ID token",
        ),
        (
            "service-b",
            corp_user(&key, json!({"cnf": {"jkt": "x"}})),
            "a bound token",
        ),
        ("service-b", corp_user(&key, json!({"sub": null})), "no sub"),
    ];
    for (client, subject, why) in &cases {
        let (status, body) = idp
            .exchange(client, subject, &[("audience", "service-c")])
            .await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(body["error"], "invalid_request", "{why}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains(subject.as_str()),
            "{why}: the token is echoed"
        );
    }
    // An IdP whose policy trusts no foreign issuer refuses the very token that passes above.
    let plain = test_idp::start().await;
    let (status, body) = plain
        .exchange(
            "service-b",
            &corp_user(&key, json!({})),
            &[("audience", "service-c")],
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].clone()),
        (400, json!("invalid_request"))
    );
    let (status, body) = idp
        .exchange(
            "service-b",
            &corp_user(&key, json!({})),
            &[("audience", "service-c")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[test_log::test(tokio::test)]
async fn a_trusted_issuers_jwks_uri_is_fetched_in_the_background_and_used() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let corp = crate::support::fake_idp::FakeIdp::start(&[&key]).await;
    let (issuer, jwks) = (corp.issuer.clone(), format!("{}/jwks", corp.issuer));
    let idp = test_idp::start_with(move |cfg| {
        cfg.trusted_issuers.push(TrustedIssuer {
            name: "corp".into(),
            issuer,
            keys: KeySource::Uri(jwks),
            audiences: vec!["service-b".into()],
            clients: vec!["service-b".into()],
            algorithms: vec![Algorithm::ES256],
            typ: TokenTyp::AtJwt,
            sub_prefix: "corp:".into(),
            mappings: Vec::new(),
        });
    })
    .await;
    let now = baton::jwt::unix_now();
    let claims = json!({"iss": corp.issuer, "aud": "service-b", "sub": "erin",
                        "iat": now, "exp": now + 300});
    let subject = key.sign("at+jwt", claims.as_object().unwrap()).unwrap();
    // Until the first background fetch lands the issuer's keys are unavailable (invalid_request);
    // the wait is bounded and asserts nothing about its length.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let (status, body) = idp
            .exchange("service-b", &subject, &[("audience", "service-c")])
            .await;
        if status == 200 {
            break body;
        }
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(tokio::time::Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let c = test_idp::claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "corp:erin");
    assert!(corp.jwks_fetches() >= 1);
    // An unknown kid makes no fetch on the request path.
    let fetches = corp.jwks_fetches();
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let forged = stranger
        .sign("at+jwt", claims.as_object().unwrap())
        .unwrap();
    for _ in 0..5 {
        let (status, _) = idp
            .exchange("service-b", &forged, &[("audience", "service-c")])
            .await;
        assert_eq!(status, 400);
    }
    assert_eq!(corp.jwks_fetches(), fetches);
}

/// The outbound listener of service-b, its one route to `up` (audience service-c), exchanging at
/// `idp` with service-b's secret.
fn service_b_outbound(idp: &TestIdp, up: &Upstream) -> Outbound {
    let yaml = format!(
        "client: {{client_id: service-b, secret: {secret}}}\n\
         routes:\n  - {{name: c, host: \"{up}\", audience: service-c}}\n",
        secret = test_idp::secret("service-b"),
        up = up.addr,
    );
    let raw: RawOutbound = serde_saphyr::from_str(&yaml).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid outbound config");
    Outbound::new(cfg, Some(&idp.url), Default::default()).expect("outbound")
}

async fn through(outbound: &Outbound, up: &Upstream, token: &str) -> StatusCode {
    let req = Request::get(format!("http://{}/orders", up.addr))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(empty())
        .expect("request");
    let call = baton::outbound::handle(outbound, req);
    let rsp = tokio::time::timeout(std::time::Duration::from_secs(20), call)
        .await
        .expect("the outbound listener answered within the bound");
    rsp.status()
}

/// The same crossing as above, made by a sidecar: the app behind service-b propagates the
/// corporate user's token it was called with, and service-c receives this domain's token.
#[test_log::test(tokio::test)]
async fn a_foreign_user_token_crosses_into_the_domain_through_the_outbound_listener() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = idp_trusting(&key).await;
    let up = Upstream::start().await;
    let outbound = service_b_outbound(&idp, &up);
    let corp = corp_user(&key, json!({}));

    assert_eq!(through(&outbound, &up, &corp).await, StatusCode::OK);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let sent = seen[0].authorization();
    let token = sent.strip_prefix("Bearer ").expect("a bearer token");
    assert_ne!(token, corp, "the foreign token never crosses");
    let keys = idp.jwks().await;
    let rules = baton::jwt::Rules::access(idp.url.clone(), "service-c");
    let v = baton::jwt::verify(token, &keys, &rules, baton::jwt::unix_now()).expect("verifies");
    assert_eq!(v.claims["sub"], "corp:alice");
    assert_eq!(v.claims["roles"], json!(["admin"]));
    assert_eq!(v.claims["act"], json!({"sub": "service-b"}));
    assert_eq!(v.claims["grants"], json!(["service-c"]));

    // A token claiming the corporate issuer but signed by another key: no exchange, nothing
    // reaches service-c.
    let forger = SigningKey::generate(Algorithm::ES256).unwrap();
    let forged = corp_user(&forger, json!({"sub": "mallory"}));
    let status = through(&outbound, &up, &forged).await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(
        up.seen().len(),
        1,
        "the forged call never reached service-c"
    );
}
