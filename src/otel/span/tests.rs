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
    // What the SDK's propagator writes, for other ids and flags; no empty `tracestate`.
    for (trace, span, sampled) in [(1_u128, 2_u64, false), (u128::MAX, u64::MAX, true)] {
        let flags = if sampled {
            opentelemetry::trace::TraceFlags::SAMPLED
        } else {
            opentelemetry::trace::TraceFlags::default()
        };
        let sc = opentelemetry::trace::SpanContext::new(
            trace.into(),
            span.into(),
            flags,
            false,
            Default::default(),
        );
        let cx = Context::new().with_remote_span_context(sc);
        let mut sdk = http::HeaderMap::new();
        TraceContextPropagator::new()
            .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(&mut sdk));
        let mut ours = http::HeaderMap::new();
        ours.insert("tracestate", http::HeaderValue::from_static("stale"));
        inject(&cx, &mut ours);
        assert_eq!(ours["traceparent"], sdk["traceparent"]);
        assert!(!ours.contains_key("tracestate"));
    }
    let mut out = http::HeaderMap::new();
    out.insert("traceparent", http::HeaderValue::from_static(tp));
    inject(&Context::new(), &mut out);
    assert!(out.is_empty());
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

#[test]
fn a_method_is_its_name_standard_or_not() {
    for m in ["GET", "POST", "PATCH", "TRACE"] {
        let kv = method(&http::Method::from_bytes(m.as_bytes()).expect("method"));
        assert_eq!(kv.key.as_str(), "http.request.method");
        assert_eq!(kv.value.as_str(), m);
    }
    let kv = method(&http::Method::from_bytes(b"PROPFIND").expect("method"));
    assert_eq!(kv.value.as_str(), "PROPFIND");
}
