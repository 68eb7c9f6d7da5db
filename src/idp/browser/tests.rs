use super::*;

const ISS: &str = "http://127.0.0.1:9000";

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn only_the_issuers_origin_and_same_origin_fetches_pass() {
    let ok = |pairs| same_origin(&headers(pairs), ISS);
    assert!(ok(&[]), "non-browser clients send neither");
    assert!(ok(&[("origin", "http://127.0.0.1:9000")]));
    assert!(ok(&[("origin", "HTTP://127.0.0.1:9000")]));
    assert!(ok(&[("sec-fetch-site", "same-origin")]));
    assert!(ok(&[("sec-fetch-site", "none")]));
    // One of our pages under a `no-referrer` policy.
    assert!(ok(&[("origin", "null"), ("sec-fetch-site", "same-origin")]));
    for refused in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "http://127.0.0.1:9001")],
        &[("origin", "https://127.0.0.1:9000")],
        &[("origin", "http://127.0.0.1")],
        &[("origin", "null")],
        &[("origin", "null"), ("sec-fetch-site", "none")],
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        &[("origin", "")],
        &[("origin", "http://127.0.0.1:9000.evil.example")],
        &[("origin", "http://127.0.0.1:9000@evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "CROSS-SITE")],
        &[
            ("origin", "http://127.0.0.1:9000"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[
            ("origin", "http://127.0.0.1:9000"),
            ("origin", "https://evil.example"),
        ],
        &[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        assert!(!ok(refused), "{refused:?}");
    }
}

#[test]
fn a_form_is_bound_to_the_cookie_it_was_sealed_for() {
    let value = binding(&HeaderMap::new(), ISS);
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::try_from(format!("baton-idp-login={value}")).expect("ascii"),
    );
    assert_eq!(binding(&h, ISS), value, "a well-formed value is kept");
    let p = Pending {
        client: String::new(),
        redirect_uri: String::new(),
        state: None,
        nonce: None,
        challenge: String::new(),
        scope: vec![],
        resources: vec![],
        needed: vec![],
        user: None,
        browser: binding_hash(&value),
        expires_at: 1,
        dpop_jkt: None,
    };
    assert!(bound(&h, ISS, &p));
    assert!(!bound(&HeaderMap::new(), ISS, &p));
    let other = headers(&[("cookie", "baton-idp-login=AAAA")]);
    assert!(!bound(&other, ISS, &p));
    assert_ne!(
        binding(&other, ISS),
        "AAAA",
        "a malformed value is replaced"
    );
    assert!(
        !bound(&h, "https://idp.example", &p),
        "https reads only __Host-"
    );
    let set = set_binding("https://idp.example", &value);
    let set = set.to_str().expect("ascii");
    assert!(set.starts_with("__Host-baton-idp-login="), "{set}");
    assert!(
        set.contains("; Path=/;") && set.contains("HttpOnly"),
        "{set}"
    );
    assert!(
        set.contains("SameSite=Lax") && set.ends_with("; Secure"),
        "{set}"
    );
}

#[test]
fn a_device_is_trusted_for_the_user_and_factors_it_proved() {
    let s = Sealer::new(None);
    let set = remember(&s, ISS, None, "alice", Factor::Pwd, 100);
    let value = set
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let h = {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::try_from(value).expect("ascii"));
        h
    };
    let d = device(&s, &h, ISS, 100).expect("device");
    assert!(d.trusted("alice", Factor::Pwd));
    assert!(!d.trusted("alice", Factor::Otp));
    assert!(!d.trusted("bob", Factor::Pwd));
    assert!(device(&s, &h, ISS, 100 + DEVICE_TTL).is_none(), "expired");
    assert!(device(&Sealer::new(None), &h, ISS, 100).is_none(), "forged");
    let again = remember(&s, ISS, Some(d.clone()), "alice", Factor::Otp, 200);
    assert!(again.to_str().is_ok());
    let other_user = remember(&s, ISS, Some(d), "bob", Factor::Pwd, 200);
    assert!(other_user.to_str().is_ok());
}
