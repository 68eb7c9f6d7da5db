use super::*;
use crate::http::text;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn grpc_content_types_and_nothing_else() {
    for yes in [
        "application/grpc",
        "application/grpc+proto",
        "Application/GRPC+json",
        "application/grpc; charset=utf-8",
    ] {
        assert!(is_grpc(&headers(&[("content-type", yes)])), "{yes}");
    }
    for no in [
        "application/grpcx",
        "application/grpc-web",
        "application/json",
        "text/grpc",
        "application/grp",
    ] {
        assert!(!is_grpc(&headers(&[("content-type", no)])), "{no}");
    }
    assert!(!is_grpc(&HeaderMap::new()));
}

#[test]
fn a_refusal_becomes_trailers_only_with_the_challenge_kept() {
    let mut rsp = text(StatusCode::UNAUTHORIZED, "no token\n");
    rsp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"b\", error=\"insufficient_user_authentication\", acr_values=\"mfa\"",
        ),
    );
    rsp.extensions_mut()
        .insert(Message("stronger authentication: 100% é\n".into()));
    let g = refusal(rsp);
    assert_eq!(g.status(), StatusCode::OK);
    assert_eq!(g.headers()[GRPC_STATUS], "16");
    assert_eq!(
        g.headers()[GRPC_MESSAGE],
        "stronger authentication: 100%25 %C3%A9%0A"
    );
    assert_eq!(g.headers()[header::CONTENT_TYPE], "application/grpc");
    assert!(
        g.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .is_ok_and(|v| v.contains("acr_values=\"mfa\""))
    );
    assert!(http_body::Body::is_end_stream(g.body()), "trailers-only");
}

#[test]
fn statuses_map_to_the_codes_a_client_acts_on() {
    for (status, code) in [
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (503, Code::Unavailable),
        (502, Code::Unavailable),
        (504, Code::DeadlineExceeded),
        (400, Code::InvalidArgument),
        (413, Code::ResourceExhausted),
        (500, Code::Internal),
    ] {
        let status = StatusCode::from_u16(status).expect("status");
        assert_eq!(Code::for_refusal(status), code, "{status}");
    }
}

#[tokio::test]
async fn messages_over_the_limit_end_the_stream_whatever_the_framing() {
    use http_body_util::BodyExt;
    let message = |n: usize| {
        let mut m = vec![0u8];
        m.extend_from_slice(&u32::try_from(n).expect("size").to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', n));
        m
    };
    // Many messages at the limit: a stream longer than the limit passes.
    let stream: Vec<u8> = (0..10).flat_map(|_| message(100)).collect();
    // One message over it, after two that pass.
    let mut over = message(100);
    over.extend(message(100));
    over.extend(message(101));
    for split in [1, 3, 5, 7, 64, 10_000] {
        let frames = |bytes: &[u8]| {
            let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, crate::http::BoxError>> = bytes
                .chunks(split)
                .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
                .collect();
            http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
        };
        let passed = MessageLimit::new(frames(&stream), 100).collect().await;
        assert_eq!(
            passed.map(|c| c.to_bytes().len()).ok(),
            Some(stream.len()),
            "split {split}"
        );
        let limited = MessageLimit::new(frames(&over), 100);
        let tripped = limited.tripped();
        assert!(!tripped.is_set());
        let refused = limited.collect().await;
        assert!(
            refused.is_err_and(|e| e.is::<MessageTooLarge>()),
            "split {split}"
        );
        assert!(tripped.is_set());
    }
}

#[test]
fn grpc_timeout_is_read_as_the_protocol_spells_it() {
    let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
    assert_eq!(t("1S"), Some(Duration::from_secs(1)));
    assert_eq!(t("250m"), Some(Duration::from_millis(250)));
    assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
    assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
    for bad in ["", "S", "1", "123456789S", "1s", "-1S", "1.5S", "1 S"] {
        assert_eq!(t(bad), None, "{bad:?}");
    }
    assert_eq!(timeout(&HeaderMap::new()), None);
}
