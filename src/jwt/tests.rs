//! Unit tests of the verification rules: one per rule, each with a token that breaks only it.

use super::keys::{KeySet, SigningKey};
use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const ISS: &str = "https://idp.example";
const NOW: u64 = 1_800_000_000;

fn fixture() -> (SigningKey, KeySet) {
    let key = SigningKey::generate(Algorithm::ES256).expect("generate");
    let set = KeySet::from_signing_keys([&key]);
    (key, set)
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": ["svc-b", "svc-c"], "iat": NOW, "exp": NOW + 300, "jti": "1"})
}

fn rules() -> Rules {
    Rules::access(ISS, "svc-b")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// A token with a hand-made header and payload, signed by `key` over exactly those bytes.
fn forge(key: &SigningKey, header: &str, payload: &Value) -> String {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), b64(payload));
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(key.to_pem().as_bytes()).expect("pem");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, jsonwebtoken::Algorithm::ES256)
        .expect("sign");
    format!("{message}.{sig}")
}

#[test]
fn a_valid_access_token_verifies() {
    let (key, set) = fixture();
    let token = key.sign("at+jwt", &claims()).expect("sign");
    let v = verify(&token, &set, &rules(), NOW).expect("valid");
    assert_eq!(v.claims["sub"], "alice");
    assert_eq!(v.exp, NOW + 300);
    assert_eq!(v.kid, key.kid());
}

#[test]
fn rs256_tokens_verify_and_keys_are_bound_to_their_algorithm() {
    let rsa = SigningKey::generate(Algorithm::RS256).expect("rsa");
    let set = KeySet::from_signing_keys([&rsa]);
    let token = rsa.sign("at+jwt", &claims()).expect("sign");
    assert!(verify(&token, &set, &rules(), NOW).is_ok());
    // Same kid, but the header claims ES256: the key is bound to RS256.
    let header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#, rsa.kid());
    let (_, sig) = token.rsplit_once('.').expect("sig");
    let forged = format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header),
        b64(&claims())
    );
    assert_eq!(
        verify(&forged, &set, &rules(), NOW).unwrap_err(),
        VerifyError::Algorithm
    );
}

#[test]
fn none_and_hmac_algorithms_are_refused() {
    let (key, set) = fixture();
    for alg in ["none", "None", "NONE", "HS256"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{}"}}"#, key.kid());
        let token = format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header), b64(&claims()));
        assert_eq!(
            verify(&token, &set, &rules(), NOW).unwrap_err(),
            VerifyError::Algorithm,
            "{alg}"
        );
    }
}

#[test]
fn psychic_signature_is_refused() {
    let (key, set) = fixture();
    let token = key.sign("at+jwt", &claims()).expect("sign");
    let (message, _) = token.rsplit_once('.').expect("parts");
    let zero = URL_SAFE_NO_PAD.encode([0u8; 64]);
    assert_eq!(
        verify(&format!("{message}.{zero}"), &set, &rules(), NOW).unwrap_err(),
        VerifyError::Signature
    );
}

#[test]
fn header_rules_refuse_crit_jwe_nested_and_wrong_typ() {
    let (key, set) = fixture();
    let kid = key.kid();
    let cases = [
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","crit":["exp"],"exp":1}}"#),
            VerifyError::Crit,
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","b64":false,"crit":["b64"]}}"#),
            VerifyError::Crit,
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","cty":"JWT"}}"#),
            VerifyError::Malformed("nested JWTs are not accepted"),
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#),
            VerifyError::Type,
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            VerifyError::Type,
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","alg":"ES256","kid":"{kid}"}}"#),
            VerifyError::Malformed("header is not a JSON object"),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"../../dev/null"}"#.to_string(),
            VerifyError::UnknownKid,
        ),
    ];
    for (header, want) in cases {
        let token = forge(&key, &header, &claims());
        assert_eq!(
            verify(&token, &set, &rules(), NOW).unwrap_err(),
            want,
            "{header}"
        );
    }
    let ok = forge(
        &key,
        &format!(r#"{{"alg":"ES256","typ":"application/AT+JWT","kid":"{kid}"}}"#),
        &claims(),
    );
    assert!(verify(&ok, &set, &rules(), NOW).is_ok());
}

#[test]
fn keys_named_in_the_header_are_never_used() {
    let (_, set) = fixture();
    let attacker = SigningKey::generate(Algorithm::ES256).expect("attacker");
    let header = format!(
        r#"{{"alg":"ES256","typ":"at+jwt","jwk":{},"jku":"http://evil/jwks","kid":"{}"}}"#,
        attacker.public_jwk(),
        attacker.kid()
    );
    let token = forge(&attacker, &header, &claims());
    assert_eq!(
        verify(&token, &set, &rules(), NOW).unwrap_err(),
        VerifyError::UnknownKid
    );
}

#[test]
fn id_tokens_are_not_access_tokens_and_vice_versa() {
    let (key, set) = fixture();
    let id = key.sign("JWT", &claims()).expect("sign");
    assert_eq!(
        verify(&id, &set, &rules(), NOW).unwrap_err(),
        VerifyError::Type
    );
    let at = key.sign("at+jwt", &claims()).expect("sign");
    let id_rules = Rules {
        kind: Kind::Id,
        audience: None,
        ..rules()
    };
    assert_eq!(
        verify(&at, &set, &id_rules, NOW).unwrap_err(),
        VerifyError::Type
    );
    assert!(verify(&id, &set, &id_rules, NOW).is_ok());
}

#[test]
fn time_claims_use_a_bounded_leeway() {
    let (key, set) = fixture();
    let with = |patch: Value| {
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .extend(patch.as_object().expect("object").clone());
        key.sign("at+jwt", &c).expect("sign")
    };
    let r = rules();
    assert_eq!(
        verify(&with(json!({"exp": NOW - 31})), &set, &r, NOW).unwrap_err(),
        VerifyError::Expired
    );
    assert!(verify(&with(json!({"exp": NOW - 29})), &set, &r, NOW).is_ok());
    assert_eq!(
        verify(&with(json!({"nbf": NOW + 31})), &set, &r, NOW).unwrap_err(),
        VerifyError::NotYetValid
    );
    assert_eq!(
        verify(&with(json!({"iat": NOW + 31})), &set, &r, NOW).unwrap_err(),
        VerifyError::IssuedInFuture
    );
    assert_eq!(
        verify(&with(json!({"exp": "soon"})), &set, &r, NOW).unwrap_err(),
        VerifyError::MissingClaim("exp")
    );
    // `auth_time` bounds step-up and derived lifetimes: an integer, never in the future.
    assert!(verify(&with(json!({"auth_time": NOW + 29})), &set, &r, NOW).is_ok());
    assert_eq!(
        verify(&with(json!({"auth_time": NOW + 31})), &set, &r, NOW).unwrap_err(),
        VerifyError::IssuedInFuture
    );
    for odd in [json!(NOW as f64 + 0.5), json!(NOW.to_string()), json!(-1)] {
        assert_eq!(
            verify(&with(json!({ "auth_time": odd })), &set, &r, NOW).unwrap_err(),
            VerifyError::MissingClaim("auth_time"),
            "{odd}"
        );
    }
    let lax = Rules {
        leeway: 3600,
        ..rules()
    };
    assert_eq!(
        verify(&with(json!({"exp": NOW - 61})), &set, &lax, NOW).unwrap_err(),
        VerifyError::Expired
    );
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let t = key.sign("at+jwt", &no_exp).expect("sign");
    assert_eq!(
        verify(&t, &set, &r, NOW).unwrap_err(),
        VerifyError::MissingClaim("exp")
    );
}

#[test]
fn issuer_is_exact_and_audience_must_match() {
    let (key, set) = fixture();
    for iss in [
        "https://idp.example/",
        "https://IDP.example",
        "https://idp.example.evil",
    ] {
        let mut c = claims();
        c["iss"] = json!(iss);
        let t = key.sign("at+jwt", &c).expect("sign");
        assert_eq!(
            verify(&t, &set, &rules(), NOW).unwrap_err(),
            VerifyError::Issuer,
            "{iss}"
        );
    }
    for aud in [json!("svc-x"), json!(["svc-x"]), json!(null), json!(7)] {
        let mut c = claims();
        c["aud"] = aud.clone();
        let t = key.sign("at+jwt", &c).expect("sign");
        assert_eq!(
            verify(&t, &set, &rules(), NOW).unwrap_err(),
            VerifyError::Audience,
            "{aud}"
        );
    }
    let mut c = claims();
    c["aud"] = json!("svc-b");
    assert!(verify(&key.sign("at+jwt", &c).expect("sign"), &set, &rules(), NOW).is_ok());
}

#[test]
fn malformed_and_oversized_tokens_are_refused_before_decoding() {
    let (key, set) = fixture();
    let good = key.sign("at+jwt", &claims()).expect("sign");
    let (message, sig) = good.rsplit_once('.').expect("parts");
    let r = rules();
    assert_eq!(
        verify(&"a".repeat(1 << 20), &set, &r, NOW).unwrap_err(),
        VerifyError::TooLarge(DEFAULT_MAX_LEN)
    );
    assert_eq!(
        verify(&format!("{message}."), &set, &r, NOW).unwrap_err(),
        VerifyError::Signature
    );
    assert_eq!(
        verify(
            &format!("{message}.{}", &sig[..sig.len() - 4]),
            &set,
            &r,
            NOW
        )
        .unwrap_err(),
        VerifyError::Signature
    );
    assert!(matches!(
        verify(&format!("{message}.{sig}="), &set, &r, NOW),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify(message, &set, &r, NOW),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify(&format!("{good}.x.y"), &set, &r, NOW),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify("e30.e30.c2ln", &set, &r, NOW),
        Err(VerifyError::Algorithm)
    ));
}

#[test]
fn duplicate_claims_are_refused() {
    let (key, set) = fixture();
    let header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#, key.kid());
    let payload = format!(
        r#"{{"iss":"{ISS}","sub":"alice","sub":"admin","aud":"svc-b","iat":{NOW},"exp":{}}}"#,
        NOW + 60
    );
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(key.to_pem().as_bytes()).expect("pem");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, jsonwebtoken::Algorithm::ES256)
        .expect("sign");
    assert!(matches!(
        verify(&format!("{message}.{sig}"), &set, &rules(), NOW),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn jwks_round_trip_and_bad_keys_are_skipped() {
    let ec = SigningKey::generate(Algorithm::ES256).expect("ec");
    let rsa = SigningKey::generate(Algorithm::RS256).expect("rsa");
    let jwks = json!({"keys": [
        ec.public_jwk(),
        rsa.public_jwk(),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "off-curve"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
        {"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "enc", "use": "enc"},
    ]});
    let set = KeySet::from_jwks(
        jwks.to_string().as_bytes(),
        &[Algorithm::ES256, Algorithm::RS256],
    )
    .expect("jwks");
    assert_eq!(set.len(), 2);
    assert!(set.contains(ec.kid()) && set.contains(rsa.kid()));
    let only_ec =
        KeySet::from_jwks(jwks.to_string().as_bytes(), &[Algorithm::ES256]).expect("jwks");
    assert_eq!(only_ec.len(), 1);
    let token = rsa.sign("at+jwt", &claims()).expect("sign");
    assert!(verify(&token, &set, &rules(), NOW).is_ok());
    assert!(KeySet::from_jwks(b"not json", &[Algorithm::ES256]).is_err());
}

#[test]
fn persisted_keys_reload_with_the_same_kid_and_verify_old_tokens() {
    let key = SigningKey::generate(Algorithm::ES256).expect("ec");
    let token = key.sign("at+jwt", &claims()).expect("sign");
    let again = SigningKey::from_pem(key.kid(), Algorithm::ES256, key.to_pem()).expect("reload");
    assert_eq!(again.public_jwk(), key.public_jwk());
    assert!(verify(&token, &KeySet::from_signing_keys([&again]), &rules(), NOW).is_ok());
    assert!(!format!("{key:?}").contains("PRIVATE"));
}

#[test]
fn peek_reads_claims_without_verifying() {
    let (key, _) = fixture();
    let token = key.sign("at+jwt", &claims()).expect("sign");
    assert_eq!(peek_claims(&token).expect("claims")["exp"], NOW + 300);
    assert!(peek_claims("garbage").is_none());
}

#[test]
fn signatures_agree_with_an_independent_implementation() {
    // ring signs and verifies here; jsonwebtoken's RustCrypto backend is the second opinion.
    for (alg, jalg) in [
        (Algorithm::ES256, jsonwebtoken::Algorithm::ES256),
        (Algorithm::RS256, jsonwebtoken::Algorithm::RS256),
    ] {
        let key = SigningKey::generate(alg).expect("generate");
        let set = KeySet::from_signing_keys([&key]);
        let token = key.sign("at+jwt", &claims()).expect("sign");
        let jwk = key.public_jwk();
        let decoding = match alg {
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_components(
                jwk["x"].as_str().expect("x"),
                jwk["y"].as_str().expect("y"),
            ),
            _ => jsonwebtoken::DecodingKey::from_rsa_components(
                jwk["n"].as_str().expect("n"),
                jwk["e"].as_str().expect("e"),
            ),
        }
        .expect("decoding key");
        let (message, sig) = token.rsplit_once('.').expect("three parts");
        assert!(
            jsonwebtoken::crypto::verify(sig, message.as_bytes(), &decoding, jalg).expect("verify"),
            "{alg:?}: our signature verifies elsewhere"
        );

        let enc = match alg {
            Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(key.to_pem().as_bytes()),
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(key.to_pem().as_bytes()),
        }
        .expect("encoding key");
        let theirs = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, jalg).expect("sign");
        let token = format!("{message}.{theirs}");
        assert!(
            verify(&token, &set, &rules(), NOW).is_ok(),
            "{alg:?}: their signature verifies here"
        );
        let mut flipped = theirs.into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let bad = format!("{message}.{}", String::from_utf8(flipped).expect("ascii"));
        assert_eq!(
            verify(&bad, &set, &rules(), NOW).err(),
            Some(VerifyError::Signature)
        );
    }
}

#[test]
fn unix_now_is_the_wall_clock_to_the_second() {
    let precise = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    let before = precise(std::time::SystemTime::now());
    let now = unix_now();
    let after = precise(std::time::SystemTime::now());
    // The coarse clock may trail the precise one by a tick, so across a second's boundary it
    // can still give the second before.
    assert!(
        (before.saturating_sub(1)..=after).contains(&now),
        "{before} ≤ {now} ≤ {after}"
    );
}

#[test]
fn untyped_access_tokens_take_jwt_or_no_typ_but_not_an_id_token_payload() {
    let (key, set) = fixture();
    let loose = Rules {
        kind: Kind::UntypedAccess,
        ..rules()
    };
    for typ in ["JWT", "at+jwt", "application/at+jwt"] {
        let t = key.sign(typ, &claims()).expect("sign");
        assert!(verify(&t, &set, &loose, NOW).is_ok(), "{typ}");
    }
    let no_typ = forge(
        &key,
        &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid()),
        &claims(),
    );
    assert!(verify(&no_typ, &set, &loose, NOW).is_ok());
    let mut bearer = claims();
    bearer["typ"] = json!("Bearer");
    assert!(verify(&key.sign("JWT", &bearer).expect("sign"), &set, &loose, NOW).is_ok());
    for (name, value) in [
        ("typ", json!("ID")),
        ("typ", json!(1)),
        ("nonce", json!("n")),
    ] {
        let mut c = claims();
        c[name] = value;
        let t = key.sign("JWT", &c).expect("sign");
        assert_eq!(
            verify(&t, &set, &loose, NOW).unwrap_err(),
            VerifyError::Type
        );
    }
    let t = key.sign("txntoken+jwt", &claims()).expect("sign");
    assert_eq!(
        verify(&t, &set, &loose, NOW).unwrap_err(),
        VerifyError::Type
    );
    let mut no_iat = claims();
    no_iat.as_object_mut().expect("object").remove("iat");
    let t = key.sign("JWT", &no_iat).expect("sign");
    assert_eq!(
        verify(&t, &set, &loose, NOW).unwrap_err(),
        VerifyError::MissingClaim("iat")
    );
}

#[test]
fn the_issuer_is_peeked_only_from_a_well_formed_payload() {
    let (key, _) = fixture();
    let t = key.sign("at+jwt", &claims()).expect("sign");
    assert_eq!(peek_issuer(&t, DEFAULT_MAX_LEN).as_deref(), Ok(ISS));
    assert_eq!(peek_issuer(&t, 10), Err(VerifyError::TooLarge(10)));
    // Two `iss` members: which one a reader takes differs between parsers, so neither is.
    let twice = format!(
        "e30.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"iss":"https://other.example","iss":"https://idp.example"}"#)
    );
    assert!(matches!(
        peek_issuer(&twice, DEFAULT_MAX_LEN),
        Err(VerifyError::Malformed(_))
    ));
    for payload in [r#"{"iss":1}"#, r#"{"sub":"a"}"#, r#"{"iss":null}"#] {
        let t = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload));
        assert_eq!(
            peek_issuer(&t, DEFAULT_MAX_LEN),
            Err(VerifyError::Issuer),
            "{payload}"
        );
    }
    for bad in ["", "abc", "e30.!!!.x", "e30.W10.x"] {
        assert!(matches!(
            peek_issuer(bad, DEFAULT_MAX_LEN),
            Err(VerifyError::Malformed(_))
        ));
    }
}
