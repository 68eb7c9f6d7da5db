use super::*;
use crate::jwt::keys::SigningKey;
use serde_json::json;

const ISS: &str = "https://idp.example";
const TD: &str = "https://baton.example/trust-domain";

fn key() -> (SigningKey, KeySet) {
    let k = SigningKey::generate(Algorithm::ES256).expect("key");
    let set = KeySet::from_signing_keys([&k]);
    (k, set)
}

fn claims(now: u64) -> serde_json::Value {
    json!({"iss": ISS, "aud": TD, "sub": "alice", "txn": "t-1", "scope": "read",
           "req_wl": "service-a", "tctx": {"a": 1}, "iat": now, "exp": now + 60})
}

fn rules_() -> Rules {
    rules(ISS, TD, vec![Algorithm::ES256], 0)
}

#[test]
fn a_txn_token_verifies_and_is_never_an_access_token() {
    let (k, keys) = key();
    let now = 1_000_000;
    let t = k.sign(TYP, &claims(now)).expect("sign");
    let v = verify(&t, &keys, &rules_(), now).expect("verifies");
    assert_eq!(v.claims["txn"], "t-1");
    let access = Rules::access(ISS, TD);
    assert_eq!(
        jwt::verify(&t, &keys, &access, now).unwrap_err(),
        VerifyError::Type
    );
    // An access token (or a plain JWT) is never a Txn-Token, whatever its claims.
    for typ in ["at+jwt", "JWT", "application/at+jwt", "txn_token"] {
        let t = k.sign(typ, &claims(now)).expect("sign");
        assert_eq!(
            verify(&t, &keys, &rules_(), now).unwrap_err(),
            VerifyError::Type,
            "{typ}"
        );
    }
    // `application/` prefix and case are one spelling of the same type.
    let t = k
        .sign("application/TxnToken+JWT", &claims(now))
        .expect("sign");
    assert!(verify(&t, &keys, &rules_(), now).is_ok());
    // Rules of another kind are refused by `verify` itself.
    assert_eq!(
        verify(&t, &keys, &access, now).unwrap_err(),
        VerifyError::Type
    );
}

#[test]
fn required_claims_and_their_types() {
    let (k, keys) = key();
    let now = 1_000_000;
    for (name, value) in [
        ("txn", serde_json::Value::Null),
        ("txn", json!("")),
        ("sub", json!(7)),
        ("scope", serde_json::Value::Null),
        ("tctx", json!("x")),
        ("rctx", json!([1])),
        ("req_wl", json!(["a"])),
        ("req_wl", serde_json::Value::Null),
        ("iat", serde_json::Value::Null),
    ] {
        let mut c = claims(now);
        if value.is_null() {
            c.as_object_mut().expect("object").remove(name);
        } else {
            c[name] = value;
        }
        let t = k.sign(TYP, &c).expect("sign");
        assert!(verify(&t, &keys, &rules_(), now).is_err(), "{name}");
    }
    let mut c = claims(now);
    c["aud"] = json!("https://other.example");
    let t = k.sign(TYP, &c).expect("sign");
    assert_eq!(
        verify(&t, &keys, &rules_(), now).unwrap_err(),
        VerifyError::Audience
    );
    let t = k.sign(TYP, &claims(now)).expect("sign");
    assert_eq!(
        verify(&t, &keys, &rules_(), now + 61).unwrap_err(),
        VerifyError::Expired
    );
}

#[test]
fn contexts_are_bounded_objects_with_unique_members() {
    assert_eq!(context(r#"{"a":1}"#).expect("ok")["a"], 1);
    for bad in ["[]", "1", "\"s\"", "{", r#"{"a":1,"a":2}"#, "null"] {
        assert_eq!(context(bad).unwrap_err(), ContextError::NotObject, "{bad}");
    }
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_CONTEXT_BYTES));
    assert_eq!(context(&big).unwrap_err(), ContextError::TooLarge);
    let mut c = Claims::new();
    c.insert("req_wl".into(), json!("a,b"));
    assert_eq!(requesting_workloads(&c), ["a", "b"]);
}
