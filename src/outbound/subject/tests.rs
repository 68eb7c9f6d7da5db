use super::*;

#[test]
fn the_subject_is_the_one_bearer_token_in_visible_ascii() {
    let route = Route {
        name: "b".into(),
        host: "service-b".into(),
        port: 80,
        audience: None,
        resources: Vec::new(),
        scope: None,
        requested_lifetime: None,
        without_subject: WithoutSubject::Deny,
        tls: None,
        dpop: false,
    };
    let subject_of = |values: &[&'static [u8]]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(v).expect("value"),
            );
        }
        subject(&h, &route).map(|t| t.map(|t| String::from_utf8_lossy(t.bytes()).into_owned()))
    };
    let token = |t: &str| Some(Some(t.to_owned()));
    assert_eq!(subject_of(&[b"Bearer a.b.c"]).ok(), token("a.b.c"));
    assert_eq!(
        subject_of(&[b"bearer  a.b-c_~+/= "]).ok(),
        token("a.b-c_~+/=")
    );
    for refused in [
        &b"Basic dXNlcg=="[..],
        b"Bearer",
        b"Bearer   ",
        b"Bearer a b",
        b"Bearer a\tb",
        b"Bearer caf\xc3\xa9",
    ] {
        assert!(
            matches!(subject_of(&[refused]), Err(Reject::BadAuthorization(_))),
            "{refused:?}"
        );
    }
    assert!(matches!(
        subject_of(&[b"Bearer a", b"Bearer b"]),
        Err(Reject::BadAuthorization(_))
    ));
    assert!(matches!(subject_of(&[]), Err(Reject::NoSubject(_))));
}
