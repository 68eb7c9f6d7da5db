use super::*;
use http::HeaderValue;
use proptest::prelude::*;
use serde_json::json;

fn claims(v: Value) -> Claims {
    v.as_object().cloned().expect("object")
}

fn route(name: &str, path: &str, methods: Option<Vec<Method>>) -> Route {
    Route {
        name: name.into(),
        path: path.into(),
        case_insensitive: false,
        methods,
        access: Access::Public,
        browser_login: false,
        dpop: None,
        issuers: Vec::new(),
        peers: Vec::new(),
    }
}

/// What the inbound listener takes from a request that is not a repeat on its connection.
fn bearer(h: &HeaderMap) -> Result<Token, Reject> {
    presented(h).and_then(|(_, t)| b64token(t))
}

#[test]
fn bearer_takes_exactly_one_well_formed_credential() {
    let mut h = HeaderMap::new();
    assert_eq!(bearer(&h), Err(Reject::NoToken));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer abc.def.ghi"),
    );
    assert_eq!(
        bearer(&h).map(|t| t.expose().to_owned()),
        Ok("abc.def.ghi".into())
    );
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("bearer abc"),
    );
    assert!(bearer(&h).is_ok(), "scheme is case-insensitive");
    for bad in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a\"b",
        "Bearer ==",
        "Bearer a=b",
    ] {
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
        assert!(matches!(bearer(&h), Err(Reject::BadHeader(_))), "{bad}");
    }
    // Bytes beyond visible ASCII (obs-text) are not b64token, in the scheme or the token.
    for bad in [&b"Bearer abc\xe9"[..], b"Bearer \xffabc", b"B\xe9arer abc"] {
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(bad).expect("obs-text is a valid header value"),
        );
        assert!(matches!(bearer(&h), Err(Reject::BadHeader(_))), "{bad:?}");
    }
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer  abc+/~_-.9== "),
    );
    assert_eq!(
        bearer(&h).map(|t| t.expose().to_owned()),
        Ok("abc+/~_-.9==".into()),
        "every b64token character, trailing padding, surrounding spaces"
    );
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
    h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    assert!(matches!(bearer(&h), Err(Reject::BadHeader(_))));
}

#[test]
fn query_tokens_are_refused() {
    assert_eq!(
        refuse_query_token(Some("a=1&access_token=x")),
        Err(Reject::TokenInQuery)
    );
    assert_eq!(refuse_query_token(Some("a=1")), Ok(()));
    assert_eq!(refuse_query_token(None), Ok(()));
}

#[test]
fn routes_match_whole_segments_and_methods() {
    let routes = vec![
        route("get-api", "/api", Some(vec![Method::GET])),
        route("any", "", None),
    ];
    let name = |m: Method, p: &str| find_route(&routes, &m, p).map(|(_, r)| r.name.as_str());
    assert_eq!(name(Method::GET, "/api"), Some("get-api"));
    assert_eq!(
        find_route(&routes, &Method::PUT, "/").map(|(i, _)| i),
        Some(1),
        "the index is the route's position in the table"
    );
    assert_eq!(name(Method::GET, "/api/x"), Some("get-api"));
    assert_eq!(name(Method::GET, "/apix"), Some("any"));
    assert_eq!(name(Method::POST, "/api"), Some("any"));
    assert_eq!(find_route(&routes[..1], &Method::GET, "/other"), None);
    assert_eq!(
        name(Method::GET, "/API"),
        Some("any"),
        "case-sensitive by default"
    );
    let mut folded = routes.clone();
    folded[0].case_insensitive = true;
    assert_eq!(
        find_route(&folded, &Method::GET, "/API/x").map(|(i, _)| i),
        Some(0)
    );
    assert_eq!(
        find_route(&folded, &Method::GET, "/APIx").map(|(i, _)| i),
        Some(1)
    );
}

#[test]
fn methods_match_in_any_case_and_get_covers_head() {
    let routes = vec![
        route("post-builds", "/builds", Some(vec![Method::POST])),
        route("get-items", "/items", Some(vec![Method::GET])),
        route("any", "", None),
    ];
    let name = |m: &str, p: &str| {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        find_route(&routes, &m, p).map(|(_, r)| r.name.as_str())
    };
    for spelling in ["POST", "post", "Post", "pOsT"] {
        assert_eq!(name(spelling, "/builds"), Some("post-builds"), "{spelling}");
    }
    for spelling in ["GET", "get", "HEAD", "head", "Head"] {
        assert_eq!(name(spelling, "/items"), Some("get-items"), "{spelling}");
    }
    assert_eq!(name("PUT", "/builds"), Some("any"));
    assert_eq!(name("POSTS", "/builds"), Some("any"));
    assert_eq!(name("HEAD", "/builds"), Some("any"), "only GET covers HEAD");
}

fn req() -> Requirements {
    Requirements {
        scopes: vec!["read".into(), "write".into()],
        claims: vec![
            ClaimRule::Contains {
                claim: "grants".into(),
                value: "service-b".into(),
            },
            ClaimRule::Equals {
                claim: "tier".into(),
                value: json!("gold"),
            },
        ],
        acr: vec![],
        max_age: None,
    }
}

#[test]
fn scopes_then_claims_are_required() {
    let ok = claims(
        json!({"scope": "write read x", "grants": ["service-a", "service-b"], "tier": "gold"}),
    );
    assert_eq!(check(&req(), &ok, 0), Ok(()));
    let mut c = ok.clone();
    c.insert("scope".into(), json!("read"));
    assert_eq!(
        check(&req(), &c, 0),
        Err(Reject::InsufficientScope("read write".into()))
    );
    let mut c = ok.clone();
    c.insert("grants".into(), json!(["service-a"]));
    assert_eq!(check(&req(), &c, 0), Err(Reject::Claim("grants".into())));
    let mut c = ok;
    c.insert("tier".into(), json!("silver"));
    assert_eq!(check(&req(), &c, 0), Err(Reject::Claim("tier".into())));
}

#[test]
fn acr_and_max_age_ask_for_step_up() {
    let r = Requirements {
        acr: vec!["mfa".into(), "phr".into()],
        max_age: Some(300),
        ..Default::default()
    };
    let step = |acr: Option<&str>, max_age| {
        Err(Reject::StepUp {
            acr_values: acr.map(Into::into),
            max_age,
        })
    };
    assert_eq!(
        check(&r, &claims(json!({"acr": "pwd", "auth_time": 1000})), 1000),
        step(Some("mfa phr"), Some(300))
    );
    assert_eq!(
        check(&r, &claims(json!({"acr": "mfa", "auth_time": 1000})), 1300),
        Ok(())
    );
    assert_eq!(
        check(&r, &claims(json!({"acr": "mfa", "auth_time": 1000})), 1301),
        step(Some("mfa phr"), Some(300))
    );
    assert_eq!(
        check(&r, &claims(json!({"acr": "phr"})), 1000),
        step(Some("mfa phr"), Some(300))
    );
}

proptest! {
    /// A token never passes a route whose required scope it does not carry.
    #[test]
    fn a_missing_required_scope_always_refuses(granted in proptest::collection::vec("[a-z]{1,6}", 0..5), need in "[a-z]{1,6}") {
        let r = Requirements { scopes: vec![need.clone()], ..Default::default() };
        let c = claims(json!({"scope": granted.join(" ")}));
        prop_assert_eq!(check(&r, &c, 0).is_ok(), granted.contains(&need));
    }

    /// Route matching never matches a path that is not under the prefix.
    #[test]
    fn a_route_only_covers_paths_under_it(prefix in "/[a-z]{1,5}", path in "/[a-z/]{0,12}") {
        let routes = vec![route("r", &prefix, None)];
        if find_route(&routes, &Method::GET, &path).is_some() {
            let under = path == prefix || path.starts_with(&format!("{}/", prefix));
            prop_assert!(under);
        }
    }
}
