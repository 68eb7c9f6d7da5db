use super::*;

#[test]
fn twins_of_the_txn_headers_are_stripped_and_others_kept() {
    let mut h = HeaderMap::new();
    for name in [
        "txn_token",
        "TXN_Token",
        "x_baton_txn",
        "txn-token",
        "x_other",
        "x-baton-txn",
    ] {
        h.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).expect("name"),
            HeaderValue::from_static("v"),
        );
    }
    strip_twins(&mut h, &HeaderName::from_static("x-baton-txn"));
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["txn-token", "x-baton-txn", "x_other"]);
}

#[test]
fn finish_sets_what_the_phase_left_and_replaces_client_values() {
    let mut h = HeaderMap::new();
    h.insert("x-baton-txn", HeaderValue::from_static("client"));
    let mut ext = http::Extensions::new();
    finish(&mut h, &mut ext);
    assert_eq!(
        h["x-baton-txn"], "client",
        "a request the phase did not see is left alone"
    );
    ext.insert(ForApp {
        claims_header: HeaderName::from_static("x-baton-txn"),
        token: Some(HeaderValue::from_static("a.b.c")),
        claims: None,
    });
    finish(&mut h, &mut ext);
    assert!(h.get("x-baton-txn").is_none());
    assert_eq!(h[txn::HEADER], "a.b.c");
}
