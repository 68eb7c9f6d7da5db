//! Socket-free tests of `handle`: refusals that never reach the app need no app at all.

use super::*;
use crate::jwt::Algorithm;
use crate::jwt::keys::{KeySet, SigningKey};
use http::StatusCode;
use http_body_util::Empty;

fn inbound(mode: &str) -> (Inbound, SigningKey) {
    let yaml = format!(
        "issuer: https://idp.example\naudience: service-b\nmode: {mode}\napp: \"127.0.0.1:9\"\noutbound: {{client: {{client_id: service-b, secret: test-only}}}}\n\
         routes:\n  - {{name: api, path: /api, scopes: [read]}}\n"
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("config");
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let metrics = Arc::new(Metrics::new());
    let jwks = Jwks::fixed(KeySet::from_signing_keys([&key]), metrics.clone());
    (Inbound::new(&cfg, jwks, metrics), key)
}

fn get(path: &str, auth: Option<&str>) -> Request<Empty<bytes::Bytes>> {
    let mut b = Request::get(path);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Empty::new()).expect("request")
}

fn www(rsp: &Response<Body>) -> &str {
    rsp.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn refusals_map_to_status_and_challenge() {
    let (s, key) = inbound("enforce");
    let rsp = handle(&s, get("/api", None)).await;
    assert_eq!(
        (rsp.status(), www(&rsp)),
        (StatusCode::UNAUTHORIZED, r#"Bearer realm="service-b""#)
    );

    let rsp = handle(&s, get("/elsewhere", Some("Bearer x"))).await;
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN, "no route matched");

    let rsp = handle(&s, get("/api", Some("Basic abc"))).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(www(&rsp).contains(r#"error="invalid_request""#));

    let now = unix_now();
    let claims = serde_json::json!({"iss": "https://idp.example", "aud": "service-b", "sub": "a",
                                    "iat": now, "exp": now + 60, "scope": "other"});
    let token = key.sign("at+jwt", &claims).expect("sign");
    let rsp = handle(&s, get("/api", Some(&format!("Bearer {token}")))).await;
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);
    assert!(
        www(&rsp).contains(r#"error="insufficient_scope""#)
            && www(&rsp).contains(r#"scope="read""#)
    );
    let text = s.metrics.encode();
    assert!(
        text.contains(r#"route="api",outcome="insufficient_scope"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="none",outcome="no_route"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn observe_mode_forwards_refused_requests_and_reports_the_app_down() {
    let (s, _) = inbound("observe");
    // Port 9 on loopback refuses: the request was forwarded, and the app is at fault.
    let rsp = handle(&s, get("/api", None)).await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert!(
        s.metrics
            .encode()
            .contains(r#"route="api",outcome="app_unavailable"} 1"#)
    );
}

#[tokio::test]
async fn a_repeated_credential_skips_parsing_but_never_the_header_rules() {
    let (s, key) = inbound("enforce");
    let last = LastToken::default();
    let now = unix_now();
    let claims = serde_json::json!({"iss": "https://idp.example", "aud": "service-b", "sub": "a",
                                    "iat": now, "exp": now + 60, "scope": "read"});
    let auth = format!("Bearer {}", key.sign("at+jwt", &claims).expect("sign"));
    let hits = || {
        s.metrics
            .verify_cache
            .get_or_create(&crate::telemetry::Outcome { outcome: "hit" })
            .get()
    };
    // Admitted, then forwarded to port 9, which refuses: 502 means the token passed.
    for _ in 0..2 {
        let rsp = handle_on(&s, &last, get("/api", Some(&auth))).await;
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(hits(), 1, "the repeat was served from the connection");
    // The same credential in a second Authorization header, or after another scheme, is refused
    // before the remembered verification is consulted.
    let mut twice = get("/api", Some(&auth));
    twice
        .headers_mut()
        .append("authorization", auth.parse().expect("value"));
    let rsp = handle_on(&s, &last, twice).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    let basic = auth.replacen("Bearer", "Basic", 1);
    let rsp = handle_on(&s, &last, get("/api", Some(&basic))).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    // Another token with the remembered one as its prefix is parsed and verified on its own.
    let longer = format!("{auth}x");
    let rsp = handle_on(&s, &last, get("/api", Some(&longer))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(hits(), 1);
}

/// A verified token, as admission hands it on.
fn verified() -> Arc<Verified> {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let now = unix_now();
    let claims = serde_json::json!({"iss": "https://idp.example", "aud": "service-b", "sub": "a",
                                    "iat": now, "exp": now + 60});
    let token = key.sign("at+jwt", &claims).expect("sign");
    let keys = KeySet::from_signing_keys([&key]);
    let rules = Rules::access("https://idp.example", "service-b");
    Arc::new(crate::jwt::verify(&token, &keys, &rules, now).expect("verifies"))
}

fn denied(reject: Reject, verified: Option<Arc<Verified>>) -> Result<Admitted, admit::Denied> {
    Err(admit::Denied { reject, verified })
}

#[test]
fn a_request_that_passed_goes_on_in_either_mode_with_its_claims() {
    let get = Method::GET;
    for mode in [Mode::Enforce, Mode::Observe] {
        let (claims, outcome) =
            under_mode(Ok(Admitted::Public), mode, &get, "api").expect("public passes");
        assert!(claims.is_none() && outcome.is_none());
        let (claims, outcome) =
            under_mode(Ok(Admitted::Token(verified())), mode, &get, "api").expect("token passes");
        assert_eq!(claims.expect("claims go on").claims["sub"], "a");
        assert_eq!(outcome, None);
    }
}

#[test]
fn enforce_mode_refuses_and_observe_mode_forwards_with_the_refusal_named() {
    let get = Method::GET;
    let refused = under_mode(denied(Reject::NoToken, None), Mode::Enforce, &get, "api");
    assert_eq!(refused.expect_err("enforced"), Reject::NoToken);

    let (claims, outcome) =
        under_mode(denied(Reject::NoToken, None), Mode::Observe, &get, "api").expect("observed");
    assert!(claims.is_none());
    assert_eq!(outcome, Some("no_token"));

    // Verification succeeded but a later rule refused: observe mode forwards those claims.
    let rule = Reject::NoRoute;
    let (claims, outcome) =
        under_mode(denied(rule, Some(verified())), Mode::Observe, &get, "api").expect("observed");
    assert_eq!(claims.expect("verified claims go on").claims["sub"], "a");
    assert_eq!(outcome, Some(Reject::NoRoute.outcome()));
}
