use super::error::sanitize_code;
use super::form::assertion;
use super::*;
use crate::jwt::keys::SigningKey;
use serde_json::json;

fn token(claims: serde_json::Value) -> Token {
    let key = SigningKey::generate(jwt::Algorithm::ES256).expect("key");
    Token::new(key.sign("at+jwt", &claims).expect("sign"))
}

fn issued(token: Token, expires_in: Option<u64>, now: u64) -> Result<Issued, ExchangeError> {
    let claims = jwt::peek_claims(token.expose()).unwrap_or_default();
    answer::issued(token, &claims, expires_in, now, false)
}

#[test]
fn expiry_is_the_earlier_of_exp_and_expires_in() {
    let t = token(json!({"sub": "alice", "exp": 1_000}));
    assert_eq!(
        issued(t.clone(), Some(100), 500)
            .expect("issued")
            .expires_at,
        600
    );
    assert_eq!(
        issued(t.clone(), Some(900), 500)
            .expect("issued")
            .expires_at,
        1_000
    );
    assert_eq!(issued(t, None, 500).expect("issued").expires_at, 1_000);
    let no_exp = token(json!({"sub": "alice"}));
    assert_eq!(
        issued(no_exp.clone(), Some(60), 500)
            .expect("issued")
            .expires_at,
        560
    );
    assert_eq!(issued(no_exp, None, 500).expect("issued").expires_at, 500);
}

#[test]
fn error_codes_are_sanitized_and_classified() {
    assert_eq!(sanitize_code("invalid_target\"\r\nx"), "invalid_targetx");
    assert_eq!(sanitize_code("\"<>"), "invalid_request");
    let refused = |code: &str| ExchangeError::Refused {
        code: code.into(),
        status: 400,
    };
    assert!(refused("invalid_scope").is_invalid());
    assert!(!refused("unauthorized_client").is_invalid());
    assert!(!ExchangeError::unavailable("x").is_invalid());
}

#[test]
fn target_form_repeats_resource_and_names_the_lifetime() {
    let t = Target {
        audience: Some("b".into()),
        resources: vec!["https://r1".into(), "https://r2".into()],
        scope: Some("read write".into()),
        requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
        requested_lifetime: Some(600),
    };
    let mut form = Vec::new();
    target_params(&t, &mut form);
    let names: Vec<_> = form.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "audience",
            "resource",
            "resource",
            "scope",
            "requested_token_type",
            "requested_lifetime"
        ]
    );
    assert_eq!(form[5].1, "600");
}

#[test]
fn client_assertion_follows_rfc7523() {
    let key = SigningKey::generate(jwt::Algorithm::ES256).expect("key");
    let a = assertion(&key, "svc-a", "https://idp", 1_000).expect("sign");
    let b = assertion(&key, "svc-a", "https://idp", 1_000).expect("sign");
    let claims = jwt::peek_claims(&a).expect("claims");
    assert_eq!(claims["iss"], "svc-a");
    assert_eq!(claims["sub"], "svc-a");
    assert_eq!(claims["aud"], "https://idp");
    assert_eq!(claims["exp"], 1_060);
    assert_ne!(claims["jti"], jwt::peek_claims(&b).expect("claims")["jti"]);
}

#[test]
fn an_https_issuer_needs_an_https_token_endpoint() {
    use crate::config::Problems;
    use crate::config::outbound::{RawOutbound, check_issuer, validate};
    let cfg = |endpoint: &str| {
        let raw = RawOutbound {
            token_endpoint: Some(endpoint.into()),
            ..RawOutbound::default()
        };
        validate(raw, &mut Problems::new("sidecar.yaml"))
    };
    let built = |endpoint: &str, issuer: &str| Exchanger::new(&cfg(endpoint), Some(issuer)).is_ok();
    assert!(!built("http://idp/token", "https://idp"));
    assert!(built("https://idp/token", "https://idp"));
    assert!(built("http://idp/token", "http://idp"));
    // `baton check` and start-up say so first, with the field.
    let mut problems = Problems::new("sidecar.yaml");
    check_issuer(&cfg("http://idp/token"), "https://idp", &mut problems);
    let errors = problems.finish(()).expect_err("refused");
    assert_eq!(errors.0[0].field, "outbound.token_endpoint");
    let mut problems = Problems::new("sidecar.yaml");
    check_issuer(&cfg("http://idp/token"), "http://idp", &mut problems);
    assert!(problems.finish(()).is_ok());
}

#[test]
fn a_reload_keeps_the_dpop_key_unless_it_changes_the_algorithm() {
    use crate::config::Problems;
    use crate::config::outbound::{RawOutbound, validate};
    use crate::dpop::ProofAlg;
    let exchanger = |alg: Option<&str>| {
        let raw = RawOutbound {
            token_endpoint: Some("http://idp/token".into()),
            dpop_alg: alg.map(str::to_owned),
            ..RawOutbound::default()
        };
        Exchanger::new(
            &validate(raw, &mut Problems::new("sidecar.yaml")),
            Some("http://idp"),
        )
        .expect("client")
    };
    let old = exchanger(None);
    assert_eq!(old.holder().alg(), ProofAlg::EdDSA);
    let mut same = exchanger(Some("EdDSA"));
    same.holder_from(&old);
    assert_eq!(same.holder().jkt(), old.holder().jkt());
    let mut other = exchanger(Some("ES256"));
    other.holder_from(&old);
    assert_eq!(other.holder().alg(), ProofAlg::ES256);
    assert_ne!(other.holder().jkt(), old.holder().jkt());
}
