//! Every refusal's status, error code and extra header, as the app gets them.

use super::*;
use crate::exchange::BadAnswer;
use http_body_util::BodyExt;

async fn body(rsp: Response<Body>) -> serde_json::Value {
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON problem")
}

fn header(rsp: &Response<Body>, name: header::HeaderName) -> Option<&str> {
    rsp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn refused(code: &str) -> Reject {
    Reject::Exchange(ExchangeError::Refused {
        code: code.to_owned(),
        status: 400,
    })
}

#[tokio::test]
async fn each_refusal_has_its_status_and_error_code() {
    let rows = [
        (Reject::NotAbsolute, 400, "invalid_request"),
        (Reject::BadAuthorization("why"), 400, "invalid_request"),
        (
            Reject::NoSubject("api".into()),
            401,
            "missing_subject_token",
        ),
        (
            Reject::UnknownHost("c:80".into()),
            403,
            "unknown_destination",
        ),
        (Reject::Connect, 405, "connect_refused"),
        (refused("invalid_grant"), 401, "exchange_refused"),
        (refused("invalid_client"), 502, "exchange_refused"),
        (refused("invalid_target"), 403, "exchange_refused"),
        (
            Reject::Exchange(ExchangeError::unavailable("down")),
            503,
            "idp_unavailable",
        ),
        (
            Reject::Exchange(ExchangeError::BadAnswer(BadAnswer::Shape)),
            502,
            "idp_answer_refused",
        ),
        (
            Reject::Exchange(ExchangeError::Assertion("no key".into())),
            500,
            "server_error",
        ),
        (
            Reject::Upstream("refused".into()),
            502,
            "upstream_unavailable",
        ),
    ];
    for (reject, status, error) in rows {
        let what = format!("{reject:?}");
        let rsp = reject.into_response();
        assert_eq!(rsp.status().as_u16(), status, "{what}");
        let message = rsp
            .extensions()
            .get::<crate::http::grpc::Message>()
            .cloned();
        let body = body(rsp).await;
        assert_eq!(body["error"], error, "{what}");
        let description = body["error_description"].as_str().expect("a description");
        assert_eq!(message.map(|m| m.0), Some(description.to_owned()), "{what}");
    }
}

#[tokio::test]
async fn a_refusal_tells_the_app_what_to_do_next_in_its_header() {
    let rsp = Reject::NoSubject("api".into()).into_response();
    assert_eq!(
        header(&rsp, header::WWW_AUTHENTICATE),
        Some(r#"Bearer realm="baton-outbound""#)
    );
    let description = body(rsp).await["error_description"].clone();
    assert!(
        description
            .as_str()
            .is_some_and(|d| d.starts_with("route api needs the caller's token: propagate")),
        "{description}"
    );

    let rsp = refused("invalid_grant").into_response();
    assert_eq!(
        header(&rsp, header::WWW_AUTHENTICATE),
        Some(r#"Bearer realm="baton-outbound", error="invalid_token""#)
    );
    for code in ["invalid_client", "access_denied"] {
        let rsp = refused(code).into_response();
        assert_eq!(header(&rsp, header::WWW_AUTHENTICATE), None, "{code}");
    }

    let rsp = Reject::Connect.into_response();
    assert_eq!(
        header(&rsp, header::ALLOW),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    );

    let rsp = Reject::Exchange(ExchangeError::unavailable("down")).into_response();
    let retry = RETRY_AFTER_SECS.to_string();
    assert_eq!(header(&rsp, header::RETRY_AFTER), Some(retry.as_str()));
}

#[test]
fn an_exchange_refused_for_the_callers_token_is_401_for_the_sidecars_own_client_502() {
    assert_eq!(refused_status("invalid_request"), StatusCode::UNAUTHORIZED);
    assert_eq!(refused_status("invalid_grant"), StatusCode::UNAUTHORIZED);
    assert_eq!(refused_status("invalid_client"), StatusCode::BAD_GATEWAY);
    assert_eq!(refused_status("invalid_target"), StatusCode::FORBIDDEN);
    assert_eq!(refused_status("unauthorized_client"), StatusCode::FORBIDDEN);
}
