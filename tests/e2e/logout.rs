//! e2e: RP-Initiated Logout 1.0 at `/end_session`: the hint is checked (our signature and
//! issuer, expired accepted, foreign refused), the redirect must be registered for the client,
//! `state` comes back, the session and its refresh tokens end, and a request that does not
//! name the browser's session is confirmed by the user first.

use crate::support::browser::{Browser, Flow, sign_in, tokens};
use crate::support::idp::{TestIdp, claims, start};
use baton::jwt::unix_now;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// service-a's registered post-logout redirect URI in deploy/idp.yaml.
const SIGNED_OUT: &str = "http://127.0.0.1:8080/signed-out";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

async fn end_session(b: &Browser, idp: &TestIdp, q: &[(&str, &str)]) -> reqwest::Response {
    b.http
        .get(format!("{}/end_session", idp.url))
        .query(q)
        .send()
        .await
        .expect("end_session")
}

/// Whether the browser still has a live IdP session: `prompt=none` answers with a code.
async fn signed_in(b: &Browser, idp: &TestIdp) -> bool {
    let flow = b.authorize(idp, &[("prompt", "none")]).await;
    match flow.step.param("error").as_deref() {
        None => flow.step.param("code").is_some(),
        Some("login_required") => false,
        Some(e) => panic!("unexpected {e}"),
    }
}

fn location(rsp: &reqwest::Response) -> Option<url::Url> {
    rsp.headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().expect("ascii")).expect("url"))
}

fn cleared_cookie(rsp: &reqwest::Response) -> bool {
    rsp.headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("baton-idp=;") && c.contains("Max-Age=0"))
}

#[test_log::test(tokio::test)]
async fn logout_with_hint_redirects_with_state_and_revokes_the_session_grants() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let hint = s(&t, "id_token");
    assert!(
        claims(hint)["sid"].is_string(),
        "ID tokens name the session"
    );
    let refresh = s(&t, "refresh_token");
    assert_eq!(idp.introspect("service-a", refresh).await["active"], true);

    let rsp = end_session(
        &b,
        &idp,
        &[
            ("id_token_hint", hint),
            ("client_id", "service-a"),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye-1"),
        ],
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert!(cleared_cookie(&rsp), "{:?}", rsp.headers());
    let to = location(&rsp).expect("redirect");
    assert_eq!(to.as_str(), format!("{SIGNED_OUT}?state=bye-1"));
    assert_eq!(rsp.headers()["cache-control"], "no-store");

    // The server-side session is gone (a kept cookie would not help) and so are its grants.
    assert!(!signed_in(&b, &idp).await);
    assert_eq!(
        idp.introspect("service-a", refresh).await,
        json!({"active": false})
    );
    assert_eq!(
        idp.introspect("service-a", s(&t, "access_token")).await,
        json!({"active": false})
    );
    let (st, body) = idp
        .token(
            "service-a",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(
        (st, s(&body, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
}

#[test_log::test(tokio::test)]
async fn logout_by_post_with_the_hint_alone_shows_the_signed_out_page() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let rsp = b
        .http
        .post(format!("{}/end_session", idp.url))
        .form(&[
            ("id_token_hint", s(&t, "id_token")),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye-2"),
        ])
        .send()
        .await
        .expect("post");
    // The client comes from the hint's aud: the registered URI is honoured.
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&rsp).expect("redirect").as_str(),
        format!("{SIGNED_OUT}?state=bye-2")
    );
    assert!(!signed_in(&b, &idp).await);

    // No session, no hint: nothing to confirm, a plain page.
    let rsp = end_session(&b, &idp, &[]).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        rsp.text()
            .await
            .expect("page")
            .contains("You are signed out.")
    );
}

#[test_log::test(tokio::test)]
async fn unregistered_or_unidentified_redirects_are_never_followed() {
    let idp = start().await;
    for (uri, with_client_id) in [
        ("http://127.0.0.1:8080/signed-out/", true),
        ("http://127.0.0.1:8080/signed-out?x=1", true),
        ("https://evil.example/", false),
    ] {
        let b = Browser::new();
        let t = sign_in(&idp, &b).await;
        let mut q = vec![
            ("id_token_hint", s(&t, "id_token")),
            ("post_logout_redirect_uri", uri),
            ("state", "x"),
        ];
        if with_client_id {
            q.push(("client_id", "service-a"));
        }
        let rsp = end_session(&b, &idp, &q).await;
        assert_eq!(rsp.status(), StatusCode::OK, "{uri}");
        assert!(location(&rsp).is_none());
        assert!(cleared_cookie(&rsp));
        let page = rsp.text().await.expect("page");
        assert!(page.contains("You are signed out.") && page.contains("not registered"));
        assert!(!signed_in(&b, &idp).await);
    }

    // client_id that is not the hint's audience: refused, nothing ended.
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let rsp = end_session(
        &b,
        &idp,
        &[
            ("id_token_hint", s(&t, "id_token")),
            ("client_id", "service-b"),
        ],
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(signed_in(&b, &idp).await);
}

#[test_log::test(tokio::test)]
async fn expired_hint_is_accepted_foreign_or_access_token_hint_refused() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let hint = s(&t, "id_token");

    // A forged hint (our claims, another key) and an access token: error page, session kept.
    let other = baton::jwt::keys::SigningKey::generate(baton::jwt::Algorithm::ES256).expect("key");
    let forged = other.sign("JWT", &claims(hint)).expect("sign");
    for bad in [forged.as_str(), s(&t, "access_token"), "e30.e30.sig"] {
        let rsp = end_session(&b, &idp, &[("id_token_hint", bad)]).await;
        assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
        assert!(rsp.headers().get("set-cookie").is_none());
    }
    assert!(signed_in(&b, &idp).await);

    // Ten minutes later the ID token (300 s) has expired, the session (8 h) has not: the hint
    // still names the session, so the logout happens without a question.
    let cookie = {
        use reqwest::cookie::CookieStore;
        let u = url::Url::parse(&idp.url).expect("url");
        b.jar
            .cookies(&u)
            .expect("cookie")
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let exp = claims(hint)["exp"].as_u64().expect("exp");
    let later = exp + 600;
    assert!(later > unix_now());
    let req = http::Request::get(format!(
        "/end_session?id_token_hint={hint}&post_logout_redirect_uri={}&state=late",
        url::form_urlencoded::byte_serialize(SIGNED_OUT.as_bytes()).collect::<String>()
    ))
    .header("cookie", &cookie)
    .body(http_body_util::Empty::<bytes::Bytes>::new())
    .expect("request");
    let rsp = baton::idp::logout::end_session(&idp.idp, req, later).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        rsp.headers()["location"],
        format!("{SIGNED_OUT}?state=late").as_str()
    );
    assert!(!signed_in(&b, &idp).await);
}

#[test_log::test(tokio::test)]
async fn without_a_matching_hint_the_user_confirms_first() {
    let idp = start().await;
    let alice = Browser::new();
    sign_in(&idp, &alice).await;

    // bob's ID token as the hint in alice's browser, then no hint at all: both ask.
    let bob = Browser::new();
    let flow = bob.authorize(&idp, &[]).await;
    let step = bob
        .password(&idp, &flow.step.page(), "bob", "looking-glass-demo")
        .await;
    let bob_t = tokens(
        &idp,
        &Flow {
            verifier: flow.verifier,
            step,
        },
    )
    .await;
    let bob_hint = s(&bob_t, "id_token");
    for q in [
        vec![("id_token_hint", bob_hint)],
        vec![
            ("client_id", "service-a"),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "c-1"),
        ],
    ] {
        let rsp = end_session(&alice, &idp, &q).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        assert!(rsp.headers().get("set-cookie").is_none());
        let page = rsp.text().await.expect("page");
        assert!(page.contains(r#"action="/end_session""#), "{page}");
        assert!(
            signed_in(&alice, &idp).await,
            "not ended before confirmation"
        );
        if q.len() == 1 {
            continue;
        }
        let id = crate::support::idp::hidden(&page, "logout_request");
        let csrf = crate::support::idp::hidden(&page, "csrf");
        // A forged confirmation is refused; the real one ends the session and redirects.
        let forged = alice
            .post(
                &idp,
                "/end_session",
                &[("logout_request", &id), ("csrf", "forged")],
            )
            .await;
        assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
        assert!(signed_in(&alice, &idp).await);
        // The pending request was used up by the forged attempt: ask again.
        let page = end_session(&alice, &idp, &q)
            .await
            .text()
            .await
            .expect("page");
        let id = crate::support::idp::hidden(&page, "logout_request");
        let csrf2 = crate::support::idp::hidden(&page, "csrf");
        assert_ne!(csrf, csrf2);
        let rsp = alice
            .post(
                &idp,
                "/end_session",
                &[("logout_request", &id), ("csrf", &csrf2)],
            )
            .await;
        assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            location(&rsp).expect("redirect").as_str(),
            format!("{SIGNED_OUT}?state=c-1")
        );
        assert!(cleared_cookie(&rsp));
        assert!(!signed_in(&alice, &idp).await);
    }
    // bob's own session was never touched.
    assert!(signed_in(&bob, &idp).await);
}
