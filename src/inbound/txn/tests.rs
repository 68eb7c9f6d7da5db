use super::*;

#[test]
fn twins_of_the_txn_headers_are_stripped_and_others_kept() {
    let mut h = HeaderMap::new();
    for name in [
        "txn_token",
        "TXN_Token",
        "x_baton_txn",
        "txn-token",
        "x_other",
        "x-baton-txn",
    ] {
        h.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).expect("name"),
            HeaderValue::from_static("v"),
        );
    }
    strip_twins(&mut h, &HeaderName::from_static("x-baton-txn"));
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["txn-token", "x-baton-txn", "x_other"]);
}

#[test]
fn finish_sets_what_the_phase_left_and_replaces_client_values() {
    let mut h = HeaderMap::new();
    h.insert("x-baton-txn", HeaderValue::from_static("client"));
    let mut ext = http::Extensions::new();
    finish(&mut h, &mut ext);
    assert_eq!(
        h["x-baton-txn"], "client",
        "a request the phase did not see is left alone"
    );
    ext.insert(ForApp {
        claims_header: HeaderName::from_static("x-baton-txn"),
        token: Some(HeaderValue::from_static("a.b.c")),
        claims: None,
    });
    finish(&mut h, &mut ext);
    assert!(h.get("x-baton-txn").is_none());
    assert_eq!(h[txn::HEADER], "a.b.c");
}

mod through_handle {
    use crate::config::Config;
    use crate::inbound::{Inbound, ReloadError, handle};
    use crate::jwt::jwks::Jwks;
    use crate::jwt::keys::{KeySet, SigningKey};
    use crate::jwt::{Algorithm, unix_now};
    use crate::telemetry::Metrics;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use serde_json::{Value, json};
    use std::sync::Arc;

    const TD: &str = "https://baton.example/td";

    fn yaml(mode: &str, txn_mode: &str) -> String {
        format!(
            "issuer: https://idp.example\naudience: service-b\nmode: {mode}\napp: \"127.0.0.1:9\"\n\
             outbound: {{client: {{client_id: service-b, secret: test-only}}}}\n\
             routes:\n  - {{name: api, path: /api}}\n  - {{name: open, path: /open, public: true}}\n\
             txn_token: {{mode: {txn_mode}, audience: \"{TD}\"}}\n"
        )
    }

    fn inbound(mode: &str, txn_mode: &str) -> (Inbound, SigningKey) {
        let cfg = Config::from_yaml(&yaml(mode, txn_mode), "sidecar.yaml").expect("config");
        let key = SigningKey::generate(Algorithm::ES256).expect("key");
        let metrics = Arc::new(Metrics::new());
        let jwks = Jwks::fixed(KeySet::from_signing_keys([&key]), metrics.clone());
        (Inbound::new(&cfg, jwks, metrics), key)
    }

    fn access(key: &SigningKey) -> String {
        let now = unix_now();
        key.sign(
            "at+jwt",
            &json!({"iss": "https://idp.example", "aud": "service-b", "sub": "alice",
                    "iat": now, "exp": now + 60}),
        )
        .expect("sign")
    }

    fn get(path: &str, access: Option<&str>, txn: Option<&str>) -> Request<Empty<bytes::Bytes>> {
        let mut b = Request::get(path);
        if let Some(a) = access {
            b = b.header("authorization", format!("Bearer {a}"));
        }
        if let Some(t) = txn {
            b = b.header("txn-token", t);
        }
        b.body(Empty::new()).expect("request")
    }

    async fn description(rsp: http::Response<crate::http::Body>) -> String {
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        v["error_description"].as_str().unwrap_or("").to_owned()
    }

    #[tokio::test]
    async fn require_refuses_without_a_txn_token_on_every_route_and_observe_forwards() {
        let (s, key) = inbound("enforce", "require");
        let at = access(&key);
        for path in ["/api", "/open"] {
            let rsp = handle(&s, get(path, Some(&at), None)).await;
            assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert!(
                rsp.headers()["www-authenticate"]
                    .to_str()
                    .is_ok_and(|w| w.starts_with("TxnToken ")),
                "{path}"
            );
            assert_eq!(
                description(rsp).await,
                "this service requires a Txn-Token header"
            );
        }
        // A Txn-Token that is the access token is refused as one.
        let rsp = handle(&s, get("/api", Some(&at), Some(&at))).await;
        assert_eq!(description(rsp).await, "Txn-Token: wrong token type");
        // `accept` lets a request without one through to the app (unreachable here: 502).
        let (s, key) = inbound("enforce", "accept");
        let rsp = handle(&s, get("/api", Some(&access(&key)), None)).await;
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
        // Observe mode forwards a request the phase would refuse.
        let (s, key) = inbound("observe", "require");
        let rsp = handle(&s, get("/api", Some(&access(&key)), None)).await;
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn changing_txn_token_needs_a_restart() {
        let (s, _) = inbound("enforce", "require");
        let changed =
            Config::from_yaml(&yaml("enforce", "accept"), "sidecar.yaml").expect("config");
        assert!(matches!(
            s.reload(&changed),
            Err(ReloadError::NeedsRestart("txn_token"))
        ));
    }
}
