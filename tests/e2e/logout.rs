//! e2e: RP-Initiated Logout 1.0 at `/end_session`: the hint is checked (our signature and
//! issuer, expired accepted, foreign refused), the redirect must be registered for the client,
//! `state` comes back, the session and its refresh tokens end, and a request that does not
//! come with the browser's session cookie and a hint naming it is confirmed by the user first.
//! The confirmation is a same-origin POST bound to the browser it was shown to: a copied or
//! cross-site confirmation, or a link, ends nothing.

use crate::support::browser::{Browser, Flow, sign_in, tokens};
use crate::support::idp::{TestIdp, claims, hidden, start};
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
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .any(|c| c.starts_with("baton-idp=;") && c.contains("Max-Age=0"))
}

/// Whether the response sets or clears the session cookie (the confirmation cookie aside).
fn touches_session(rsp: &reqwest::Response) -> bool {
    rsp.headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.as_bytes().starts_with(b"baton-idp="))
}

/// A confirmation page's form: `logout_request` and `csrf`.
fn form_of(page: &str) -> (String, String) {
    assert!(page.contains(r#"action="/end_session""#), "{page}");
    (hidden(page, "logout_request"), hidden(page, "csrf"))
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
async fn without_the_cookie_a_hint_only_asks_and_the_browser_that_confirms_signs_out() {
    // Anyone holding alice's ID token, with no cookie of hers (a server, another browser, or
    // the RP's own cross-site POST, which leaves the SameSite=Lax cookie home), only gets a
    // question. idp.http keeps no cookies.
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let refresh = s(&t, "refresh_token");
    let hint = s(&t, "id_token");
    let get = idp
        .http
        .get(format!("{}/end_session", idp.url))
        .query(&[("id_token_hint", hint)])
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), StatusCode::OK);
    assert!(!touches_session(&get));
    form_of(&get.text().await.expect("page"));
    // The same with an expired hint, ten minutes on.
    let later = claims(hint)["exp"].as_u64().expect("exp") + 600;
    let req = http::Request::get(format!("/end_session?id_token_hint={hint}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let rsp = baton::idp::logout::end_session(&idp.idp, req, later).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        rsp.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.as_bytes().starts_with(b"baton-idp="))
    );
    let post = idp
        .http
        .post(format!("{}/end_session", idp.url))
        .form(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye-2"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), StatusCode::OK);
    assert!(
        signed_in(&b, &idp).await,
        "nothing ended before confirmation"
    );
    assert_eq!(idp.introspect("service-a", refresh).await["active"], true);

    // The RP's POST came from alice's browser, so the page and its confirmation cookie are
    // hers; her same-origin confirmation carries her session cookie and ends that session.
    let url = url::Url::parse(&idp.url).expect("url");
    for c in post.headers().get_all("set-cookie") {
        b.jar.add_cookie_str(c.to_str().expect("ascii"), &url);
    }
    let (id, csrf) = form_of(&post.text().await.expect("page"));
    let rsp = b
        .post(
            &idp,
            "/end_session",
            &[("logout_request", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    // The client came from the hint's aud: the registered URI is honoured.
    assert_eq!(
        location(&rsp).expect("redirect").as_str(),
        format!("{SIGNED_OUT}?state=bye-2")
    );
    assert!(cleared_cookie(&rsp));
    assert!(!signed_in(&b, &idp).await);
    assert_eq!(
        idp.introspect("service-a", refresh).await,
        json!({"active": false})
    );

    // No session, no hint, a GET: nothing to end or ask, a plain page.
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
async fn a_confirmation_copied_from_another_browser_or_sent_from_another_site_ends_nothing() {
    let idp = start().await;
    let alice = Browser::new();
    let t = sign_in(&idp, &alice).await;
    let refresh = s(&t, "refresh_token");
    let still_in = || async {
        assert!(signed_in(&alice, &idp).await, "alice was signed out");
        assert_eq!(idp.introspect("service-a", refresh).await["active"], true);
    };
    // Mallory asks for a confirmation page of her own (her browser, no session) and copies it.
    let mallory = Browser::new();
    let copied = || async {
        let rsp = mallory
            .post(&idp, "/end_session", &[("client_id", "service-a")])
            .await;
        assert_eq!(rsp.status(), StatusCode::OK);
        form_of(&rsp.text().await.expect("page"))
    };

    // 1. As a link: a GET confirmation is never accepted.
    let (id, csrf) = copied().await;
    let rsp = end_session(&alice, &idp, &[("logout_request", &id), ("csrf", &csrf)]).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(!touches_session(&rsp));
    still_in().await;
    // 2. As a POST from alice's browser (an auto-submitted form elsewhere; no Origin sent).
    let (id, csrf) = copied().await;
    let rsp = alice
        .post(
            &idp,
            "/end_session",
            &[("logout_request", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    still_in().await;
    // 3. The same while alice holds a confirmation cookie of her own (she opened the page).
    let own = end_session(&alice, &idp, &[]).await;
    assert_eq!(own.status(), StatusCode::OK);
    let (own_id, own_csrf) = form_of(&own.text().await.expect("page"));
    for (id, csrf) in [copied().await, (copied().await.0, own_csrf.clone())] {
        let rsp = alice
            .post(
                &idp,
                "/end_session",
                &[("logout_request", &id), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
        still_in().await;
    }
    // 4. Alice's own page, submitted from another site: refused whatever the spelling, and
    //    the pending request stays for her real click.
    let cross_site: [&[(&str, &str)]; 8] = [
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        &[("origin", &idp.url), ("origin", "https://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[("origin", &idp.url), ("sec-fetch-site", "cross-site")],
    ];
    for headers in cross_site {
        let mut req = alice
            .http
            .post(format!("{}/end_session", idp.url))
            .form(&[("logout_request", &own_id), ("csrf", &own_csrf)]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let rsp = req.send().await.expect("post");
        assert_eq!(rsp.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        still_in().await;
    }
    // Her own click, from the IdP's page: signed out (a browser under a `no-referrer` policy
    // sends `Origin: null` with `Sec-Fetch-Site: same-origin`).
    let rsp = alice
        .http
        .post(format!("{}/end_session", idp.url))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[("logout_request", &own_id), ("csrf", &own_csrf)])
        .send()
        .await
        .expect("post");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(cleared_cookie(&rsp));
    assert!(!signed_in(&alice, &idp).await);
    assert_eq!(
        idp.introspect("service-a", refresh).await,
        json!({"active": false})
    );
}

#[test_log::test(tokio::test)]
async fn a_confirmation_shown_to_one_session_does_not_end_another() {
    let idp = start().await;
    let b = Browser::new();
    sign_in(&idp, &b).await;
    let page = end_session(&b, &idp, &[]).await.text().await.expect("page");
    let (id, csrf) = form_of(&page);
    // The browser signs in again in between (a new session replaces the cookie).
    let again = b.authorize(&idp, &[("prompt", "login")]).await;
    let step = b
        .password(&idp, &again.step.page(), "bob", "looking-glass-demo")
        .await;
    assert!(step.param("code").is_some());
    let rsp = b
        .post(
            &idp,
            "/end_session",
            &[("logout_request", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(!touches_session(&rsp));
    assert!(signed_in(&b, &idp).await, "bob's session was not ended");
}

#[test_log::test(tokio::test)]
async fn state_is_bounded() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let long = "s".repeat(baton::idp::logout::MAX_STATE + 1);
    let max = "s".repeat(baton::idp::logout::MAX_STATE);
    fn q(state: &str) -> Vec<(&str, &str)> {
        vec![
            ("client_id", "service-a"),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", state),
        ]
    }
    let rsp = end_session(&b, &idp, &q(&long)).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(signed_in(&b, &idp).await);
    let rsp = end_session(&b, &idp, &q(&max)).await;
    assert_eq!(rsp.status(), StatusCode::OK, "asks: no hint");
    let mut q = q(&max);
    q.push(("id_token_hint", s(&t, "id_token")));
    let rsp = end_session(&b, &idp, &q).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&rsp).expect("redirect").as_str(),
        format!("{SIGNED_OUT}?state={max}")
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
        assert!(!touches_session(&rsp));
        let page = rsp.text().await.expect("page");
        assert!(page.contains(r#"action="/end_session""#), "{page}");
        assert!(
            signed_in(&alice, &idp).await,
            "not ended before confirmation"
        );
        if q.len() == 1 {
            continue;
        }
        let (id, csrf) = form_of(&page);
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
        let (id, csrf2) = form_of(&page);
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

#[test_log::test(tokio::test)]
async fn a_flood_of_anonymous_sign_out_requests_stores_nothing() {
    use futures::StreamExt;
    let idp = start().await;
    let alice = Browser::new();
    let t = sign_in(&idp, &alice).await;
    let refresh = s(&t, "refresh_token");
    // Alice opens her confirmation page before the flood.
    let own = end_session(&alice, &idp, &[]).await;
    assert_eq!(own.status(), StatusCode::OK);
    let (id, csrf) = form_of(&own.text().await.expect("page"));

    // Strangers' cookie-less POSTs with an empty form: each is asked to confirm, none is kept.
    let memory = idp.idp.store().memory().expect("memory store");
    let before = memory.records();
    let stranger = reqwest::Client::new();
    let url = format!("{}/end_session", idp.url);
    let asked = futures::stream::iter(0..3_000)
        .map(|_| {
            let post = stranger.post(&url).form(&[] as &[(&str, &str)]).send();
            async move { post.await.expect("post").status() }
        })
        .buffer_unordered(16)
        .filter(|status| std::future::ready(*status == StatusCode::OK))
        .count()
        .await;
    assert_eq!(asked, 3_000);
    assert_eq!(memory.records(), before, "the flood stored nothing");

    // Alice's confirmation still works.
    let rsp = alice
        .post(
            &idp,
            "/end_session",
            &[("logout_request", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(cleared_cookie(&rsp));
    assert!(!signed_in(&alice, &idp).await);
    assert_eq!(
        idp.introspect("service-a", refresh).await,
        json!({"active": false})
    );
}
