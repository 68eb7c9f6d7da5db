//! The router, answered without a socket.

use super::*;
use http_body_util::{BodyExt, Full};

async fn call(idp: &Idp, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
    let rsp = handle(idp, req).await;
    let (parts, body) = rsp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn idp() -> Idp {
    let dir = std::env::temp_dir().join(format!(
        "baton-idp-unit-{}-{}",
        std::process::id(),
        crate::secret::random_u64()
    ));
    Idp::new(Config::demo("http://idp.test", dir)).expect("idp")
}

#[tokio::test]
async fn login_page_is_plain_accessible_and_bound_to_the_browser() {
    let idp = idp();
    let uri = "/authorize?response_type=code&client_id=service-a&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=%3Cscript%3E";
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, html) = call(&idp, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<label for="username">"#) && html.contains(r#"<label for="password">"#)
    );
    assert!(
        !html.contains("<script") && !html.contains("src="),
        "no external assets, no echo"
    );
    assert_eq!(headers["cache-control"], "no-store");
    // Under `no-referrer` a browser's POST would carry `Origin: null`, refused as cross-site.
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .is_ok_and(|c| c.contains("default-src 'none'"))
    );
    let cookie = headers["set-cookie"].to_str().expect("ascii");
    assert!(cookie.starts_with("baton-idp-login="), "{cookie}");

    // The form without the browser's pre-login cookie never reaches the password check.
    let at = html
        .find(r#"name="request" value=""#)
        .expect("request field")
        + 22;
    let sealed = &html[at..at + html[at..].find('"').expect("quote")];
    let body = format!("request={sealed}&username=alice&password=wonderland-demo");
    let req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let (status, headers, _) = call(&idp, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
    assert!(headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn a_rotation_on_disk_is_picked_up_by_the_running_idp() {
    let idp = idp();
    let before = idp.keys().signer.kid().to_owned();
    assert!(
        !idp.reload_keys().await.expect("reload"),
        "nothing changed yet"
    );
    let kid = rotate_on_disk(idp.config()).expect("rotate");
    assert_ne!(kid, before);
    assert!(idp.reload_keys().await.expect("reload"));
    assert_eq!(idp.keys().signer.kid(), kid);
    assert!(
        idp.keys().verify.contains(&before),
        "the retired key stays published"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_plainly() {
    let idp = idp();
    let get = |p: &str| {
        Request::get(p)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    assert_eq!(call(&idp, get("/nope")).await.0, StatusCode::NOT_FOUND);
    let (status, _, body) = call(&idp, get("/token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_request"));
}
