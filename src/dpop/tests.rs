use super::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const HTU: &str = "https://idp.example/token";

fn expect() -> Expect<'static> {
    Expect {
        htm: "POST",
        htu: HTU,
        token: None,
    }
}

/// An ES256 key and its public JWK, for proofs built member by member.
fn es256() -> (EcdsaKeyPair, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let p = key.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    (key, jwk)
}

fn sign_es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let mut m = URL_SAFE_NO_PAD.encode(header.to_string());
    m.push('.');
    m.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(&SystemRandom::new(), m.as_bytes()).unwrap();
    format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn claims(jti: &str) -> Value {
    json!({"jti": jti, "htm": "POST", "htu": HTU, "iat": NOW})
}

/// A proof with the header and claims changed by `h` and `c`.
fn proof_with(h: impl FnOnce(&mut Value), c: impl FnOnce(&mut Value)) -> String {
    let (key, jwk) = es256();
    let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let mut claims = claims("j1");
    h(&mut header);
    c(&mut claims);
    sign_es256(&key, &header, &claims)
}

#[test]
fn holder_proof_passes_and_names_its_key() {
    let h = Holder::generate().unwrap();
    let p = h.proof("POST", HTU, None, None, NOW).unwrap();
    let ok = check(&p, &expect(), NOW, 60).unwrap();
    assert_eq!(ok.jkt, h.jkt());
    assert_eq!(ok.iat, NOW);
}

#[test]
fn typ_must_be_dpop_jwt() {
    for typ in [json!("JWT"), json!("at+jwt"), json!(null), json!(1)] {
        let p = proof_with(|h| h["typ"] = typ, |_| {});
        assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Type));
    }
    let p = proof_with(|h| h["typ"] = json!("DPoP+JWT"), |_| {});
    assert!(check(&p, &expect(), NOW, 60).is_ok());
}

#[test]
fn private_or_referenced_keys_are_refused() {
    let p = proof_with(|h| h["jwk"]["d"] = json!("AAAA"), |_| {});
    assert!(matches!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Key(_))
    ));
    let p = proof_with(|h| h["kid"] = json!("k1"), |_| {});
    assert!(matches!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Key(_))
    ));
    let p = proof_with(
        |h| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}),
        |_| {},
    );
    assert!(matches!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Key(_))
    ));
    let p = proof_with(
        |h| h.as_object_mut().unwrap().remove("jwk").map(drop).unwrap(),
        |_| {},
    );
    assert!(matches!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Key(_))
    ));
    // Not on the curve.
    let p = proof_with(|h| h["jwk"]["y"] = h["jwk"]["x"].clone(), |_| {});
    assert!(matches!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Key(_))
    ));
}

#[test]
fn alg_must_be_the_keys() {
    for alg in ["RS256", "none", "HS256", "EdDSA", "ES384"] {
        let p = proof_with(|h| h["alg"] = json!(alg), |_| {});
        assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Algorithm));
    }
}

#[test]
fn signature_must_verify() {
    let p = proof_with(|_| {}, |_| {});
    let (rest, _) = p.rsplit_once('.').unwrap();
    let q = proof_with(|_| {}, |_| {});
    let (_, sig) = q.rsplit_once('.').unwrap();
    assert_eq!(
        check(&format!("{rest}.{sig}"), &expect(), NOW, 60),
        Err(ProofError::Signature)
    );
    assert!(matches!(
        check("a.b", &expect(), NOW, 60),
        Err(ProofError::Malformed(_))
    ));
    assert_eq!(
        check(&"a".repeat(MAX_PROOF_LEN + 1), &expect(), NOW, 60),
        Err(ProofError::TooLarge)
    );
}

#[test]
fn htm_is_exact() {
    for m in ["post", "GET", " POST"] {
        let p = proof_with(|_| {}, |c| c["htm"] = json!(m));
        assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Method));
    }
}

#[test]
fn htu_other_spellings_of_the_same_uri_pass_and_others_do_not() {
    for same in [
        "https://idp.example/token",
        "HTTPS://IDP.example:443/token",
        "https://idp.example/token?x=1#frag",
        "https://idp.example/a/../token",
    ] {
        let p = proof_with(|_| {}, |c| c["htu"] = json!(same));
        assert!(check(&p, &expect(), NOW, 60).is_ok(), "{same}");
    }
    for other in [
        "http://idp.example/token",
        "https://idp.example/token/",
        "https://idp.example:8443/token",
        "https://evil.example/token",
        "https://user@idp.example/token",
        "/token",
        "",
    ] {
        let p = proof_with(|_| {}, |c| c["htu"] = json!(other));
        assert_eq!(
            check(&p, &expect(), NOW, 60),
            Err(ProofError::Uri),
            "{other}"
        );
    }
}

#[test]
fn iat_window() {
    let p = proof_with(|_| {}, |_| {});
    assert!(check(&p, &expect(), NOW + 60, 60).is_ok());
    assert_eq!(check(&p, &expect(), NOW + 61, 60), Err(ProofError::Time));
    assert!(check(&p, &expect(), NOW - FUTURE_SKEW, 60).is_ok());
    assert_eq!(
        check(&p, &expect(), NOW - FUTURE_SKEW - 1, 60),
        Err(ProofError::Time)
    );
    let p = proof_with(|_| {}, |c| c["iat"] = json!("1700000000"));
    assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Claim("iat")));
}

#[test]
fn ath_binds_the_token() {
    let token = "eyJ.token.sig";
    let with = Expect {
        token: Some(token),
        ..expect()
    };
    let p = proof_with(|_| {}, |c| c["ath"] = json!(ath(token)));
    assert!(check(&p, &with, NOW, 60).is_ok());
    let p = proof_with(|_| {}, |c| c["ath"] = json!(ath("another")));
    assert_eq!(check(&p, &with, NOW, 60), Err(ProofError::Ath));
    let p = proof_with(|_| {}, |_| {});
    assert_eq!(check(&p, &with, NOW, 60), Err(ProofError::Ath));
}

#[test]
fn jti_required_and_bounded() {
    let p = proof_with(|_| {}, |c| c["jti"] = json!("x".repeat(MAX_JTI_LEN + 1)));
    assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Claim("jti")));
    let p = proof_with(|_| {}, |c| drop(c.as_object_mut().unwrap().remove("jti")));
    assert_eq!(check(&p, &expect(), NOW, 60), Err(ProofError::Claim("jti")));
}

#[test]
fn eddsa_proofs_pass_with_the_rfc_8037_thumbprint() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref())});
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
    let mut m = URL_SAFE_NO_PAD.encode(header.to_string());
    m.push('.');
    m.push_str(&URL_SAFE_NO_PAD.encode(claims("e1").to_string()));
    let sig = key.sign(m.as_bytes());
    let p = format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert!(check(&p, &expect(), NOW, 60).is_ok());

    let rfc =
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let k = key::ProofKey::from_jwk(rfc.as_object().unwrap()).unwrap();
    assert_eq!(
        k.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn a_proof_is_accepted_once() {
    let v = Verifier::new(60, 100);
    let h = Holder::generate().unwrap();
    let p = h.proof("POST", HTU, None, None, NOW).unwrap();
    assert!(v.verify(&p, &expect(), None, NOW).is_ok());
    assert_eq!(
        v.verify(&p, &expect(), None, NOW + 1),
        Err(ProofError::Replayed)
    );
    let q = h.proof("POST", HTU, None, None, NOW).unwrap();
    assert!(v.verify(&q, &expect(), None, NOW + 1).is_ok());
}

#[test]
fn a_proof_from_another_key_than_the_binding_is_refused_and_not_remembered() {
    let v = Verifier::new(60, 100);
    let h = Holder::generate().unwrap();
    let p = h.proof("POST", HTU, None, None, NOW).unwrap();
    assert_eq!(
        v.verify(&p, &expect(), Some("another-jkt"), NOW),
        Err(ProofError::Binding)
    );
    assert_eq!(v.remembered(), 0);
    assert!(v.verify(&p, &expect(), Some(h.jkt()), NOW).is_ok());
}

#[test]
fn the_replay_store_is_bounded_and_fails_closed() {
    let r = Replay::new(3, 3);
    for jti in ["a", "b", "c"] {
        r.first_use("k", jti, NOW + 10, NOW).unwrap();
    }
    assert_eq!(r.first_use("k", "d", NOW + 10, NOW), Err(ProofError::Busy));
    assert_eq!(
        r.first_use("k", "a", NOW + 10, NOW),
        Err(ProofError::Replayed)
    );
    assert_eq!(r.len(), 3);
    // Once the entries expire, a sweep makes room.
    r.first_use("k", "d", NOW + 30, NOW + 11).unwrap();
    assert_eq!(r.len(), 1);
    // The same jti under another key is another proof.
    r.first_use("other", "d", NOW + 30, NOW + 11).unwrap();
    // Many distinct proofs never grow the store past its capacity.
    let r = Replay::new(50, 50);
    let accepted = (0..500)
        .filter(|i| r.first_use("k", &i.to_string(), NOW + 60, NOW).is_ok())
        .count();
    assert_eq!((accepted, r.len()), (50, 50));
}

#[test]
fn one_key_gets_only_its_share_of_the_replay_store() {
    let r = Replay::new(100, 2);
    r.first_use("greedy", "a", NOW + 10, NOW).unwrap();
    r.first_use("greedy", "b", NOW + 10, NOW).unwrap();
    assert_eq!(
        r.first_use("greedy", "c", NOW + 10, NOW),
        Err(ProofError::Busy)
    );
    // Other keys are not starved.
    for i in 0..50 {
        r.first_use(&format!("k{i}"), "a", NOW + 10, NOW).unwrap();
    }
    // Replays are still replays, not quota refusals.
    assert_eq!(
        r.first_use("greedy", "a", NOW + 10, NOW),
        Err(ProofError::Replayed)
    );
    // Once its proofs expire, the key gets its share back.
    r.first_use("greedy", "c", NOW + 30, NOW + 11).unwrap();
    r.first_use("greedy", "d", NOW + 30, NOW + 11).unwrap();
    assert_eq!(
        r.first_use("greedy", "e", NOW + 30, NOW + 11),
        Err(ProofError::Busy)
    );
}

#[test]
fn a_nonce_claim_is_read_and_bounded() {
    let h = Holder::generate().unwrap();
    let p = h.proof("POST", HTU, None, Some("n-1"), NOW).unwrap();
    let got = check(&p, &expect(), NOW, 60).unwrap();
    assert_eq!(got.nonce.as_deref(), Some("n-1"));
    let long = "n".repeat(MAX_NONCE_LEN + 1);
    let p = h.proof("POST", HTU, None, Some(&long), NOW).unwrap();
    assert_eq!(
        check(&p, &expect(), NOW, 60),
        Err(ProofError::Claim("nonce"))
    );
}

#[test]
fn one_dpop_header_only() {
    let mut h = http::HeaderMap::new();
    assert_eq!(header(&h), Ok(None));
    h.append(HEADER, http::HeaderValue::from_static("a.b.c"));
    assert_eq!(header(&h), Ok(Some("a.b.c")));
    h.append(HEADER, http::HeaderValue::from_static("a.b.c"));
    assert_eq!(header(&h), Err(ProofError::Header));
}

/// A proof signed over `payload` as written, for JSON `json!` cannot make.
fn proof_of_text(payload: &str) -> String {
    let (key, jwk) = es256();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let mut m = URL_SAFE_NO_PAD.encode(header.to_string());
    m.push('.');
    m.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = key.sign(&SystemRandom::new(), m.as_bytes()).unwrap();
    format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[test]
fn a_payload_with_a_member_twice_is_refused() {
    let good = format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW}}}"#);
    assert!(check(&proof_of_text(&good), &expect(), NOW, 60).is_ok());
    for twice in [
        format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW},"iat":{NOW}}}"#),
        format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW},"j\u0074i":"j2"}}"#),
        format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW},"x":1,"x":1}}"#),
        format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW}}} {{}}"#),
    ] {
        assert_eq!(
            check(&proof_of_text(&twice), &expect(), NOW, 60),
            Err(ProofError::Malformed("payload is not a JSON object")),
            "{twice}"
        );
    }
}

#[test]
fn a_member_twice_among_many_unknown_ones_is_refused() {
    let many: String = (0..600).map(|i| format!(r#","m{i}":0"#)).collect();
    let base = format!(r#""jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW}{many}"#);
    assert!(check(&proof_of_text(&format!("{{{base}}}")), &expect(), NOW, 60).is_ok());
    let twice = format!(r#"{{{base},"m0":1}}"#);
    assert_eq!(
        check(&proof_of_text(&twice), &expect(), NOW, 60),
        Err(ProofError::Malformed("payload is not a JSON object"))
    );
}

#[test]
fn claims_of_the_wrong_type_are_refused_like_missing_ones() {
    let base = format!(r#""jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW}"#);
    let cases = [
        (
            format!(r#"{{"jti":1,"htm":"POST","htu":"{HTU}","iat":{NOW}}}"#),
            ProofError::Claim("jti"),
        ),
        (
            format!(r#"{{"jti":"j1","htm":null,"htu":"{HTU}","iat":{NOW}}}"#),
            ProofError::Claim("htm"),
        ),
        (
            format!(r#"{{"jti":"j1","htm":"POST","htu":["{HTU}"],"iat":{NOW}}}"#),
            ProofError::Claim("htu"),
        ),
        (
            format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":{NOW}.0}}"#),
            ProofError::Claim("iat"),
        ),
        (
            format!(r#"{{"jti":"j1","htm":"POST","htu":"{HTU}","iat":-1}}"#),
            ProofError::Claim("iat"),
        ),
        (
            format!(r#"{{{base},"nonce":null}}"#),
            ProofError::Claim("nonce"),
        ),
        (
            format!(r#"{{{base},"nonce":""}}"#),
            ProofError::Claim("nonce"),
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(
            check(&proof_of_text(&payload), &expect(), NOW, 60),
            Err(want),
            "{payload}"
        );
    }
    // An escaped string is read unescaped.
    let escaped = format!(r#"{{"jti":"j\"1","htm":"P\u004fST","htu":"{HTU}","iat":{NOW}}}"#);
    let ok = check(&proof_of_text(&escaped), &expect(), NOW, 60).unwrap();
    assert_eq!(ok.jti, "j\"1");
    // `ath` is read only when a token is presented.
    let with_ath = format!(r#"{{{base},"ath":7}}"#);
    assert!(check(&proof_of_text(&with_ath), &expect(), NOW, 60).is_ok());
    let with_token = Expect {
        token: Some("t"),
        ..expect()
    };
    assert_eq!(
        check(&proof_of_text(&with_ath), &with_token, NOW, 60),
        Err(ProofError::Ath)
    );
}

#[test]
fn the_largest_rsa_signature_fits_the_signature_buffer() {
    let sig = URL_SAFE_NO_PAD.encode([1u8; MAX_SIGNATURE_LEN]);
    let mut out = [0; MAX_SIGNATURE_LEN];
    assert_eq!(
        URL_SAFE_NO_PAD.decode_slice(&sig, &mut out),
        Ok(MAX_SIGNATURE_LEN)
    );
    let longer = URL_SAFE_NO_PAD.encode([1u8; MAX_SIGNATURE_LEN + 1]);
    assert!(URL_SAFE_NO_PAD.decode_slice(&longer, &mut out).is_err());
}

#[test]
fn a_key_named_beforehand_is_the_same_key_in_the_replay_store() {
    let r = Replay::new(10, 10);
    let key = replay::KeyId::of("k");
    assert_eq!(key, replay::KeyId::of("k"));
    assert_ne!(key, replay::KeyId::of("other"));
    assert_eq!(r.first_use_of(key, "k", "j", NOW + 30, NOW), Ok(()));
    assert_eq!(
        r.first_use("k", "j", NOW + 30, NOW),
        Err(ProofError::Replayed)
    );
    assert_eq!(r.first_use("other", "j", NOW + 30, NOW), Ok(()));
}
