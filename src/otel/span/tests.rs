use super::*;
use opentelemetry::trace::TraceContextExt;

#[test]
fn trace_context_round_trips_and_a_malformed_one_is_ignored() {
    let mut h = http::HeaderMap::new();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    h.insert("traceparent", http::HeaderValue::from_static(tp));
    h.insert("tracestate", http::HeaderValue::from_static("k=v"));
    let cx = extract(&h);
    let sc = cx.span().span_context().clone();
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(
        sc.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    let mut out = http::HeaderMap::new();
    inject(&cx, &mut out);
    assert_eq!(out["traceparent"], tp);
    assert_eq!(out["tracestate"], "k=v");
    for bad in [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "zz",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    ] {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", http::HeaderValue::from_static(bad));
        assert!(!extract(&h).span().span_context().is_valid(), "{bad}");
    }
}

#[test]
fn enduser_is_a_hash_of_the_subject() {
    let kv = enduser("alice");
    assert_eq!(kv.key.as_str(), "enduser.id");
    let v = kv.value.as_str();
    assert!(v.starts_with("sha256:") && v.len() == 15, "{v}");
    assert!(!v.contains("alice"));
}
