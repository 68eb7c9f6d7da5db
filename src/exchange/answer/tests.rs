use super::*;
use crate::jwt::Algorithm;
use crate::jwt::keys::SigningKey;
use serde_json::json;

const REFRESH_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

fn target() -> Target {
    Target {
        audience: Some("service-b".into()),
        requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
        ..Target::default()
    }
}

fn jwt(claims: Value) -> String {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    key.sign("at+jwt", &claims).expect("sign")
}

/// A well-formed exchange answer for alice and service-b, with `change` applied to it.
fn answer(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let token = jwt(json!({"sub": "alice", "aud": "service-b", "exp": 2_000}));
    let mut rsp = json!({"access_token": token, "token_type": "Bearer",
        "issued_token_type": ACCESS_TOKEN_TYPE, "expires_in": 300});
    change(rsp.as_object_mut().expect("object"));
    serde_json::to_vec(&rsp).expect("json")
}

#[test]
fn a_body_that_is_not_json_is_the_idp_being_unavailable() {
    for body in [&b"<html>502</html>"[..], b"", b"{\"access_token\":"] {
        let r = check(body, Asked::Exchange(Some("alice")), &target(), 1_000);
        assert!(
            matches!(r, Err(ExchangeError::Unavailable { .. })),
            "{body:?}"
        );
    }
}

fn check_as(body: &[u8], asked: Asked<'_>) -> Result<Issued, BadAnswer> {
    check(body, asked, &target(), 1_000).map_err(|e| match e {
        ExchangeError::BadAnswer(b) => b,
        other => panic!("not a bad answer: {other:?}"),
    })
}

fn exchange(body: &[u8]) -> Result<Issued, BadAnswer> {
    check_as(body, Asked::Exchange(Some("alice")))
}

#[test]
fn a_well_formed_answer_is_used() {
    let i = exchange(&answer(|_| {})).expect("used");
    assert_eq!(i.expires_at, 1_300);
    // Bearer in any case (RFC 6749 §7.1: the scheme is case-insensitive).
    for spelling in ["bearer", "BEARER", "bEaReR"] {
        assert!(
            exchange(&answer(|a| {
                a.insert("token_type".into(), json!(spelling));
            }))
            .is_ok(),
            "{spelling}"
        );
    }
    // aud as an array that contains the audience.
    let token = jwt(json!({"sub": "alice", "aud": ["x", "service-b"], "exp": 2_000}));
    assert!(
        exchange(&answer(|a| {
            a.insert("access_token".into(), json!(token));
        }))
        .is_ok()
    );
}

#[test]
fn every_malformed_answer_is_refused_with_its_reason() {
    let with_token = |claims: Value| {
        let token = jwt(claims);
        answer(move |a| {
            a.insert("access_token".into(), json!(token));
        })
    };
    let cases: Vec<(&str, Vec<u8>, BadAnswer)> = vec![
        ("a JSON array", b"[]".to_vec(), BadAnswer::Shape),
        (
            "expires_in a string",
            answer(|a| {
                a.insert("expires_in".into(), json!("300"));
            }),
            BadAnswer::Shape,
        ),
        (
            "duplicate access_token",
            br#"{"access_token":"a.b.c","access_token":"d.e.f","token_type":"Bearer"}"#.to_vec(),
            BadAnswer::Shape,
        ),
        (
            "no access_token",
            answer(|a| {
                a.remove("access_token");
            }),
            BadAnswer::AccessToken,
        ),
        (
            "empty access_token",
            answer(|a| {
                a.insert("access_token".into(), json!(""));
            }),
            BadAnswer::AccessToken,
        ),
        (
            "opaque access_token",
            answer(|a| {
                a.insert("access_token".into(), json!("2YotnFZFEjr1zCsicMWpAA"));
            }),
            BadAnswer::AccessToken,
        ),
        (
            "no token_type",
            answer(|a| {
                a.remove("token_type");
            }),
            BadAnswer::TokenType,
        ),
        (
            "DPoP token_type",
            answer(|a| {
                a.insert("token_type".into(), json!("DPoP"));
            }),
            BadAnswer::TokenType,
        ),
        (
            "N_A token_type",
            answer(|a| {
                a.insert("token_type".into(), json!("N_A"));
            }),
            BadAnswer::TokenType,
        ),
        (
            "Bearer with a space",
            answer(|a| {
                a.insert("token_type".into(), json!("Bearer "));
            }),
            BadAnswer::TokenType,
        ),
        (
            "no issued_token_type",
            answer(|a| {
                a.remove("issued_token_type");
            }),
            BadAnswer::IssuedTokenType,
        ),
        (
            "refresh_token issued_token_type",
            answer(|a| {
                a.insert("issued_token_type".into(), json!(REFRESH_TYPE));
            }),
            BadAnswer::IssuedTokenType,
        ),
        (
            "issued_token_type in another case",
            answer(|a| {
                a.insert(
                    "issued_token_type".into(),
                    json!(ACCESS_TOKEN_TYPE.to_uppercase()),
                );
            }),
            BadAnswer::IssuedTokenType,
        ),
        (
            "another sub",
            with_token(json!({"sub": "mallory", "aud": "service-b", "exp": 2_000})),
            BadAnswer::Subject,
        ),
        (
            "no sub",
            with_token(json!({"aud": "service-b", "exp": 2_000})),
            BadAnswer::Subject,
        ),
        (
            "sub a number",
            with_token(json!({"sub": 7, "aud": "service-b", "exp": 2_000})),
            BadAnswer::Subject,
        ),
        (
            "another aud",
            with_token(json!({"sub": "alice", "aud": "service-c", "exp": 2_000})),
            BadAnswer::Audience,
        ),
        (
            "aud differing in case",
            with_token(json!({"sub": "alice", "aud": "Service-B", "exp": 2_000})),
            BadAnswer::Audience,
        ),
        (
            "no aud",
            with_token(json!({"sub": "alice", "exp": 2_000})),
            BadAnswer::Audience,
        ),
        (
            "aud array with a non-string",
            with_token(json!({"sub": "alice", "aud": ["service-b", 1], "exp": 2_000})),
            BadAnswer::Audience,
        ),
    ];
    for (name, body, want) in cases {
        assert_eq!(exchange(&body).err(), Some(want), "{name}");
    }
}

#[test]
fn client_credentials_answers_need_no_issued_type_and_keep_their_own_sub() {
    let cc = |body: &[u8]| check_as(body, Asked::ClientCredentials);
    let token = jwt(json!({"sub": "service-account-1", "aud": "service-b", "exp": 2_000}));
    let plain = answer(|a| {
        a.remove("issued_token_type");
        a.insert("access_token".into(), json!(token));
    });
    assert!(cc(&plain).is_ok());
    let refresh = answer(|a| {
        a.insert("issued_token_type".into(), json!(REFRESH_TYPE));
    });
    assert_eq!(cc(&refresh).err(), Some(BadAnswer::IssuedTokenType));
    let dpop = answer(|a| {
        a.insert("token_type".into(), json!("DPoP"));
    });
    assert_eq!(cc(&dpop).err(), Some(BadAnswer::TokenType));
    let token = jwt(json!({"sub": "svc", "aud": "service-c", "exp": 2_000}));
    let other_aud = answer(|a| {
        a.insert("access_token".into(), json!(token));
    });
    assert_eq!(cc(&other_aud).err(), Some(BadAnswer::Audience));
}

#[test]
fn resource_only_targets_need_an_audience_of_the_idps_choosing() {
    let resources = Target {
        resources: vec!["https://service-b/api".into()],
        ..target()
    };
    let resources = Target {
        audience: None,
        ..resources
    };
    let with_aud = |aud: Value| {
        let token = jwt(json!({"sub": "alice", "aud": aud, "exp": 2_000}));
        answer(move |a| {
            a.insert("access_token".into(), json!(token));
        })
    };
    let run = |body: &[u8]| check(body, Asked::Exchange(Some("alice")), &resources, 1_000);
    assert!(run(&with_aud(json!("service-b"))).is_ok());
    assert!(matches!(
        run(&with_aud(json!([]))),
        Err(ExchangeError::BadAnswer(BadAnswer::Audience))
    ));
}

#[test]
fn an_unreadable_subject_still_needs_a_sub() {
    let body = answer(|_| {});
    assert!(check_as(&body, Asked::Exchange(None)).is_ok());
    let token = jwt(json!({"aud": "service-b", "exp": 2_000}));
    let no_sub = answer(|a| {
        a.insert("access_token".into(), json!(token));
    });
    assert_eq!(
        check_as(&no_sub, Asked::Exchange(None)).err(),
        Some(BadAnswer::Subject)
    );
}

/// An exchange answer whose token is bound to `jkt`, with `token_type`.
fn bound_answer(jkt: &str, token_type: &str) -> Vec<u8> {
    let token = jwt(json!({"sub": "alice", "aud": "service-b", "exp": 2_000, "cnf": {"jkt": jkt}}));
    serde_json::to_vec(&json!({"access_token": token, "token_type": token_type,
        "issued_token_type": ACCESS_TOKEN_TYPE, "expires_in": 300}))
    .expect("json")
}

#[test]
fn a_dpop_token_is_used_only_when_asked_and_bound_to_the_sidecars_key() {
    let asked = Asked::Exchange(Some("alice"));
    let run = |body: &[u8], key: Option<&str>| {
        check_for(body, asked, &target(), key, 1_000).map_err(|e| match e {
            ExchangeError::BadAnswer(b) => b,
            other => panic!("not a bad answer: {other:?}"),
        })
    };
    let i = run(&bound_answer("mine", "DPoP"), Some("mine")).expect("used");
    assert!(i.authorization.as_bytes().starts_with(b"DPoP "));
    assert_eq!(i.ath.as_deref(), Some(crate::dpop::ath(i.token()).as_str()));
    for (body, key) in [
        (bound_answer("mine", "DPoP"), None),
        (bound_answer("theirs", "DPoP"), Some("mine")),
        (bound_answer("mine", "Bearer"), Some("mine")),
        (bound_answer("mine", "Bearer"), None),
    ] {
        assert_eq!(run(&body, key).err(), Some(BadAnswer::TokenType));
    }
    // A bearer answer to a request with a proof: the IdP did not bind; sent as Bearer.
    let i = run(&answer(|_| {}), Some("mine")).expect("used");
    assert!(i.ath.is_none());
}

#[test]
fn a_crossing_answer_names_the_foreign_user_under_the_domains_prefix() {
    let answer = |sub: &str| {
        let token = jwt(json!({"sub": sub, "aud": "service-b", "exp": 2_000}));
        serde_json::to_vec(&json!({"access_token": token, "token_type": "Bearer",
            "issued_token_type": ACCESS_TOKEN_TYPE, "expires_in": 300}))
        .expect("json")
    };
    let crossing = Asked::Crossing("alice");
    assert!(check_as(&answer("corp:alice"), crossing).is_ok());
    assert!(check_as(&answer("partner:eu:alice"), crossing).is_ok());
    assert_eq!(
        check_as(&answer("corp:"), Asked::Crossing("")).err(),
        Some(BadAnswer::Subject)
    );
    for other in [
        "alice",
        "corp:bob",
        "alice:corp",
        "",
        "malice",
        "corp:malice",
        ":alice",
    ] {
        assert_eq!(
            check_as(&answer(other), crossing).err(),
            Some(BadAnswer::Subject),
            "{other}"
        );
    }
    // A subject of this domain keeps its name exactly.
    let own = Asked::Exchange(Some("alice"));
    assert_eq!(
        check_as(&answer("corp:alice"), own).err(),
        Some(BadAnswer::Subject)
    );
}
