use super::*;
use http::header::HeaderName;

#[test]
fn a_fit_request_id_is_kept_and_any_other_replaced_by_a_fresh_one() {
    let id_of = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(REQUEST_ID, HeaderValue::from_str(v).expect("value"));
        }
        let id = request_id(&mut h);
        let sent: Vec<_> = h.get_all(REQUEST_ID).iter().cloned().collect();
        (id, sent)
    };
    let (id, sent) = id_of(&["abc-123"]);
    assert_eq!((id.to_str().ok(), sent.len()), (Some("abc-123"), 1));
    let long = "x".repeat(129);
    for unfit in [
        &[][..],
        &[""],
        &["a b"],
        &[long.as_str()],
        &["", "kept-not"],
    ] {
        let (id, sent) = id_of(unfit);
        assert!(
            id.len() == 32 && id.as_bytes().iter().all(u8::is_ascii_hexdigit),
            "{unfit:?}: {id:?}"
        );
        assert_eq!(sent, vec![id], "{unfit:?}: the one id the next hop sees");
    }
}

#[test]
fn hop_by_hop_headers_go_including_those_named_in_connection() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("connection", "keep-alive, x-secret-hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("x-request-id", "abc"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("x-request-id"));
}

#[test]
fn prepare_replaces_every_authorization_value() {
    let mut req = Request::new(empty());
    *req.uri_mut() = Uri::from_static("http://service-b:8080/a?b=c");
    let h = req.headers_mut();
    h.append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer inbound"),
    );
    h.append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer other"),
    );
    prepare(
        &mut req,
        Some(&HeaderValue::from_static("Bearer fresh")),
        "service-b",
        8080,
        true,
    )
    .expect("prepare");
    let all: Vec<_> = req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .collect();
    assert_eq!(all, vec![HeaderValue::from_static("Bearer fresh")]);
    assert_eq!(req.uri().to_string(), "https://service-b:8080/a?b=c");
    assert_eq!(req.headers()[header::HOST], "service-b:8080");
}

#[test]
fn prepare_keeps_a_uri_already_aimed_there_and_rebuilds_any_other() {
    let prepared = |uri: &'static str, host: &str, port: u16, tls: bool| {
        let mut req = Request::new(empty());
        *req.uri_mut() = Uri::from_static(uri);
        prepare(&mut req, None, host, port, tls).expect("prepare");
        (req.uri().to_string(), req.headers()[header::HOST].clone())
    };
    assert_eq!(
        prepared("http://b:8080/a?x=%2F", "b", 8080, false),
        (
            "http://b:8080/a?x=%2F".into(),
            HeaderValue::from_static("b:8080")
        )
    );
    // Another port, the scheme a TLS route needs, a default port left implicit, origin-form:
    // each rebuilt onto host:port, path and query kept.
    for (uri, want) in [
        ("http://b:9090/a?x", "http://b:8080/a?x"),
        ("http://b/a?x", "http://b:8080/a?x"),
        ("/a?x", "http://b:8080/a?x"),
    ] {
        assert_eq!(prepared(uri, "b", 8080, false).0, want, "{uri}");
    }
    assert_eq!(
        prepared("http://b:8080/a", "b", 8080, true).0,
        "https://b:8080/a"
    );
}

#[test]
fn only_bodyless_idempotent_requests_are_replayed() {
    let get = Request::get("http://b/").body(empty()).expect("request");
    assert!(replayable(&get).is_some());
    let post = Request::post("http://b/").body(empty()).expect("request");
    assert!(replayable(&post).is_none());
    let put = Request::put("http://b/")
        .body(crate::http::full("x"))
        .expect("request");
    assert!(replayable(&put).is_none());
}
