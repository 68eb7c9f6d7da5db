//! Ed25519 (`OKP`) proof keys, EdDSA holders and the header cache.

use super::*;
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const HTU: &str = "https://b.example/orders";

/// RFC 8037 appendix A.2: the public key and, A.3, its thumbprint.
const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC_JKT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

fn expect() -> Expect<'static> {
    Expect {
        htm: "GET",
        htu: HTU,
        token: None,
    }
}

fn key(jwk: Value) -> Result<key::ProofKey, ProofError> {
    key::ProofKey::from_jwk(jwk.as_object().unwrap())
}

#[test]
fn an_ed25519_jwk_is_an_eddsa_key_with_the_rfc_8037_thumbprint() {
    let k = key(json!({"kty": "OKP", "crv": "Ed25519", "x": RFC_X})).unwrap();
    assert_eq!(k.alg(), "EdDSA");
    assert_eq!(k.thumbprint(), RFC_JKT);
    // Members other than the required ones do not change the thumbprint.
    let k = key(json!({"kty": "OKP", "crv": "Ed25519", "x": RFC_X, "use": "sig"})).unwrap();
    assert_eq!(k.thumbprint(), RFC_JKT);
}

#[test]
fn bad_okp_keys_are_refused() {
    let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
    let long = URL_SAFE_NO_PAD.encode([7u8; 33]);
    // The identity point: a key of small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let identity = URL_SAFE_NO_PAD.encode(identity);
    let d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    for (jwk, why) in [
        (
            json!({"kty": "OKP", "crv": "X25519", "x": RFC_X}),
            "crv X25519",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed448", "x": RFC_X}),
            "crv Ed448",
        ),
        (json!({"kty": "OKP", "x": RFC_X}), "no crv"),
        (json!({"kty": "EC", "crv": "Ed25519", "x": RFC_X}), "kty EC"),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": short}),
            "31 bytes",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": long}),
            "33 bytes",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}),
            "x not b64",
        ),
        (json!({"kty": "OKP", "crv": "Ed25519"}), "no x"),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": identity}),
            "small order",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC_X, "d": d}),
            "private d",
        ),
    ] {
        assert!(
            matches!(key(jwk), Err(ProofError::Key(_))),
            "{why} must be refused"
        );
    }
}

#[test]
fn an_eddsa_holder_signs_proofs_that_check_under_its_okp_key() {
    let h = Holder::generate_alg(ProofAlg::EdDSA).unwrap();
    assert_eq!(h.alg(), ProofAlg::EdDSA);
    assert_eq!(h.jwk()["kty"], "OKP");
    assert_eq!(h.jwk()["crv"], "Ed25519");
    assert!(h.jwk().get("d").is_none());
    let p = h.proof("GET", HTU, Some("tok"), None, NOW).unwrap();
    let header = crate::jwt::decode_object(p.split('.').next().unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], TYP);
    let with_token = Expect {
        token: Some("tok"),
        ..expect()
    };
    let ok = check(&p, &with_token, NOW, 60).unwrap();
    // The thumbprint the receiver computes is the holder's, from the jwk as sent.
    assert_eq!(ok.jkt, h.jkt());
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        h.jwk()["x"].as_str().unwrap()
    );
    assert_eq!(h.jkt(), crate::jwt::keys::thumbprint(&canonical));
    // A changed claim breaks the signature.
    let (rest, sig) = p.rsplit_once('.').unwrap();
    let (head, _) = rest.split_once('.').unwrap();
    let forged = URL_SAFE_NO_PAD.encode(
        json!({"jti": "x", "htm": "GET", "htu": HTU, "iat": NOW, "ath": ath("tok")}).to_string(),
    );
    assert_eq!(
        check(&format!("{head}.{forged}.{sig}"), &with_token, NOW, 60),
        Err(ProofError::Signature)
    );
}

#[test]
fn a_cached_header_still_gets_every_claim_and_the_signature_checked() {
    let v = Verifier::new(60, 100);
    let h = Holder::generate_alg(ProofAlg::EdDSA).unwrap();
    let other = Holder::generate_alg(ProofAlg::EdDSA).unwrap();
    let p = |htm: &str, htu: &str, iat: u64| h.proof(htm, htu, None, None, iat).unwrap();
    let first = p("GET", HTU, NOW);
    assert_eq!(
        v.verify(&first, &expect(), Some(h.jkt()), NOW).unwrap().jkt,
        h.jkt()
    );
    // The header is now cached: each rule still applies to the next proofs.
    let cases = [
        (p("POST", HTU, NOW), ProofError::Method),
        (p("GET", "https://b.example/other", NOW), ProofError::Uri),
        (p("GET", HTU, NOW - 61), ProofError::Time),
        (first.clone(), ProofError::Replayed),
    ];
    for (proof, want) in cases {
        assert_eq!(v.verify(&proof, &expect(), Some(h.jkt()), NOW), Err(want));
    }
    assert_eq!(
        v.verify(&p("GET", HTU, NOW), &expect(), Some(other.jkt()), NOW),
        Err(ProofError::Binding)
    );
    // Another key's signature under this header's key does not verify.
    let theirs = other.proof("GET", HTU, None, None, NOW).unwrap();
    let (head, _) = first.split_once('.').unwrap();
    let (_, rest) = theirs.split_once('.').unwrap();
    assert_eq!(
        v.verify(&format!("{head}.{rest}"), &expect(), None, NOW),
        Err(ProofError::Signature)
    );
    assert!(
        v.verify(&p("GET", HTU, NOW), &expect(), Some(h.jkt()), NOW)
            .is_ok()
    );
}

#[test]
fn the_header_cache_keeps_only_headers_whose_proof_passed_its_signature() {
    let cache = HeaderCache::new(1 << 16);
    for alg in [ProofAlg::EdDSA, ProofAlg::ES256] {
        let h = Holder::generate_alg(alg).unwrap();
        let p = h.proof("GET", HTU, None, None, NOW).unwrap();
        let head = p.split('.').next().unwrap();
        // A made-up signature under a well-formed header: refused, and nothing kept.
        let (message, _) = p.rsplit_once('.').unwrap();
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        assert_eq!(
            check_cached(&cache, &forged, &expect(), NOW, 60),
            Err(ProofError::Signature)
        );
        assert!(cache.get(head).is_none());
        // A good proof: the same answer as without the cache, and its header kept.
        for _ in 0..2 {
            assert_eq!(
                check_cached(&cache, &p, &expect(), NOW, 60),
                check(&p, &expect(), NOW, 60)
            );
            let got = cache.get(head).expect("kept");
            assert_eq!(got.jkt, h.jkt());
            assert_eq!(got.key.alg(), alg.name());
        }
        // A kept header does not let a bad signature through.
        assert_eq!(
            check_cached(&cache, &forged, &expect(), NOW, 60),
            Err(ProofError::Signature)
        );
    }
    let bad = URL_SAFE_NO_PAD.encode(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": RFC_X}})
            .to_string(),
    );
    let typ = URL_SAFE_NO_PAD.encode(
        json!({"typ": "JWT", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": RFC_X}})
            .to_string(),
    );
    for (head, want) in [(bad, ProofError::Algorithm), (typ, ProofError::Type)] {
        let proof = format!("{head}.e30.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        for _ in 0..2 {
            assert_eq!(
                check_cached(&cache, &proof, &expect(), NOW, 60),
                Err(want.clone())
            );
        }
        assert!(cache.get(&head).is_none());
    }
}
