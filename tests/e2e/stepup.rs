//! e2e: IdP login sessions and step-up over HTTP, with a cookie-keeping client as the browser:
//! `acr_values=mfa` asks only the one-time code of a signed-in user, `prompt=none`, `prompt=login`,
//! `max_age` and `id_token_hint` (OIDC Core §3.1.2.1; ports of the conformance modules
//! `oidcc-prompt-none-not-logged-in`, `oidcc-id-token-hint`, `oidcc-max-age-1`).
//! `oidcc-codereuse` and `oidcc-ensure-registered-redirect-uri` live in `idp.rs`.
//!
//! OIDC Core §3.1.2.1 checklist: prompt=none with a session (silent code) and without
//! (`login_required`), with a stronger `acr` (`interaction_required`); prompt=login;
//! prompt=select_account (login form); prompt=consent (no page: consent is the operator's
//! configuration); none combined with another value (`invalid_request`); max_age=0 (= login,
//! and `login_required` with none); max_age=1 exceeded; id_token_hint of another user
//! (`login_required`, or a fresh login form); expired hint (still names the user); forged,
//! foreign-key or access-token hint (`invalid_request`).

use crate::support::browser::{Browser, Flow, Step, acr, alice_code, sign_in, tokens};
use crate::support::idp::{ALICE_PASSWORD, REDIRECT, claims, pkce, start};
use http_body_util::BodyExt;
use reqwest::StatusCode;
use serde_json::json;

#[test_log::test(tokio::test)]
async fn step_up_asks_only_the_code_and_tokens_say_mfa() {
    let idp = start().await;
    let browser = Browser::new();
    let first = sign_in(&idp, &browser).await;
    assert_eq!(acr(&first), (json!("pwd"), json!(["pwd"])));

    // Step-up: the session has the password, so only the code page comes.
    let flow = browser.authorize(&idp, &[("acr_values", "mfa")]).await;
    let html = flow.step.page();
    assert!(
        html.contains(r#"name="code""#) && !html.contains("password"),
        "{html}"
    );
    let wrong = browser.code(&idp, &html, "000000").await;
    assert!(
        matches!(wrong, Step::Page(StatusCode::UNAUTHORIZED, _)),
        "{wrong:?}"
    );
    let code = alice_code();
    let step = browser.code(&idp, &html, &code).await;
    let stepped = tokens(
        &idp,
        &Flow {
            verifier: flow.verifier,
            step,
        },
    )
    .await;
    assert_eq!(acr(&stepped), (json!("mfa"), json!(["pwd", "otp"])));

    // The session now proves mfa: no page at all.
    let again = browser.authorize(&idp, &[("acr_values", "mfa")]).await;
    assert_eq!(acr(&tokens(&idp, &again).await).0, json!("mfa"));

    // A one-time code works once, even from another session.
    let other = Browser::new();
    sign_in(&idp, &other).await;
    let flow = other.authorize(&idp, &[("acr_values", "mfa")]).await;
    let html = flow.step.page();
    let replay = other.code(&idp, &html, &code).await;
    assert!(
        matches!(replay, Step::Page(StatusCode::UNAUTHORIZED, _)),
        "{replay:?}"
    );
}

#[test_log::test(tokio::test)]
async fn mfa_from_scratch_asks_password_then_code() {
    let idp = start().await;
    let browser = Browser::new();
    let flow = browser.authorize(&idp, &[("acr_values", "mfa pwd")]).await;
    let html = flow.step.page();
    let code_page = browser
        .password(&idp, &html, "alice", ALICE_PASSWORD)
        .await
        .page();
    let step = browser.code(&idp, &code_page, &alice_code()).await;
    let t = tokens(
        &idp,
        &Flow {
            verifier: flow.verifier,
            step,
        },
    )
    .await;
    assert_eq!(acr(&t), (json!("mfa"), json!(["pwd", "otp"])));

    // bob has no TOTP app: mfa cannot be met, said as an error back at the client.
    let bob = Browser::new();
    let flow = bob.authorize(&idp, &[("acr_values", "mfa")]).await;
    let html = flow.step.page();
    let back = bob.password(&idp, &html, "bob", "looking-glass-demo").await;
    assert_eq!(
        back.param("error").as_deref(),
        Some("unmet_authentication_requirements")
    );
}

#[test_log::test(tokio::test)]
async fn prompt_none_never_shows_a_page() {
    // oidcc-prompt-none-not-logged-in
    let idp = start().await;
    let browser = Browser::new();
    let flow = browser.authorize(&idp, &[("prompt", "none")]).await;
    assert_eq!(flow.step.param("error").as_deref(), Some("login_required"));
    assert_eq!(flow.step.param("state").as_deref(), Some("st-9"));
    assert_eq!(flow.step.param("iss").as_deref(), Some(idp.url.as_str()));

    sign_in(&idp, &browser).await;
    let silent = browser.authorize(&idp, &[("prompt", "none")]).await;
    assert_eq!(acr(&tokens(&idp, &silent).await).0, json!("pwd"));
    let stronger = browser
        .authorize(&idp, &[("prompt", "none"), ("acr_values", "mfa")])
        .await;
    assert_eq!(
        stronger.step.param("error").as_deref(),
        Some("interaction_required")
    );
    let mixed = browser.authorize(&idp, &[("prompt", "none login")]).await;
    assert_eq!(
        mixed.step.param("error").as_deref(),
        Some("invalid_request")
    );

    // prompt=login: the password again, even with a session.
    let html = browser
        .authorize(&idp, &[("prompt", "login")])
        .await
        .step
        .page();
    assert!(html.contains(r#"name="password""#));
}

#[test_log::test(tokio::test)]
async fn id_token_hint_must_name_the_session_user() {
    // oidcc-id-token-hint
    let idp = start().await;
    let browser = Browser::new();
    let alice = sign_in(&idp, &browser).await;
    let hint = alice["id_token"].as_str().expect("id token");
    let flow = browser
        .authorize(&idp, &[("prompt", "none"), ("id_token_hint", hint)])
        .await;
    let t = tokens(&idp, &flow).await;
    assert_eq!(
        claims(t["id_token"].as_str().expect("id")).get("sub"),
        Some(&json!("alice"))
    );

    // bob's ID token as the hint in alice's browser: not the session's user.
    let other = Browser::new();
    let flow = other.authorize(&idp, &[]).await;
    let step = other
        .password(&idp, &flow.step.page(), "bob", "looking-glass-demo")
        .await;
    let bob = tokens(
        &idp,
        &Flow {
            verifier: flow.verifier,
            step,
        },
    )
    .await;
    let bob_hint = bob["id_token"].as_str().expect("id token");
    let flow = browser
        .authorize(&idp, &[("prompt", "none"), ("id_token_hint", bob_hint)])
        .await;
    assert_eq!(flow.step.param("error").as_deref(), Some("login_required"));
    let html = browser
        .authorize(&idp, &[("id_token_hint", bob_hint)])
        .await
        .step
        .page();
    assert!(
        html.contains(r#"name="password""#),
        "a different user signs in afresh"
    );

    // An access token or a forged token is not an ID token hint.
    for bad in [alice["access_token"].as_str().expect("at"), "e30.e30.sig"] {
        let flow = browser.authorize(&idp, &[("id_token_hint", bad)]).await;
        assert_eq!(flow.step.param("error").as_deref(), Some("invalid_request"));
    }
}

#[test_log::test(tokio::test)]
async fn max_age_forces_a_new_password_once_exceeded() {
    // oidcc-max-age-1, with the clock moved forward through the socket-free authorize().
    let idp = start().await;
    let browser = Browser::new();
    let first = sign_in(&idp, &browser).await;
    let auth_time = claims(first["id_token"].as_str().expect("id"))["auth_time"]
        .as_u64()
        .expect("auth_time");
    let jar_cookie = {
        use reqwest::cookie::CookieStore;
        let url = url::Url::parse(&idp.url).expect("url");
        let c = browser.jar.cookies(&url).expect("the session cookie");
        c.to_str().expect("ascii").to_owned()
    };
    assert!(jar_cookie.split("; ").any(|c| c.starts_with("baton-idp=")));
    let (_, challenge) = pkce();
    let uri = |max_age: u64| {
        format!(
            "/authorize?response_type=code&client_id=service-a&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st-9&max_age={max_age}",
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        )
    };
    let call = |max_age: u64, now: u64| {
        let req = http::Request::get(uri(max_age))
            .header("cookie", &jar_cookie)
            .body(())
            .expect("request");
        let idp = &idp.idp;
        async move {
            let query = req.uri().query().unwrap_or("");
            baton::idp::authorize::authorize(idp, query, req.headers(), now).await
        }
    };
    let later = auth_time + 10;
    assert_eq!(
        call(3600, later).await.status(),
        StatusCode::SEE_OTHER,
        "fresh enough"
    );
    let rsp = call(1, later).await;
    assert_eq!(rsp.status(), StatusCode::OK, "re-authentication");
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains(r#"name="password""#));
}

#[test_log::test(tokio::test)]
async fn prompt_values_and_max_age_zero() {
    // OIDC Core §3.1.2.1, the cases not covered above: what each prompt value does here.
    let idp = start().await;
    let browser = Browser::new();
    sign_in(&idp, &browser).await;
    let is_login_form = |step: &Step| matches!(step, Step::Page(StatusCode::OK, html) if html.contains(r#"name="password""#));

    // max_age=0 is prompt=login (errata 2); with prompt=none it cannot be met silently.
    let flow = browser.authorize(&idp, &[("max_age", "0")]).await;
    assert!(is_login_form(&flow.step), "{:?}", flow.step);
    let flow = browser
        .authorize(&idp, &[("max_age", "0"), ("prompt", "none")])
        .await;
    assert_eq!(flow.step.param("error").as_deref(), Some("login_required"));

    // select_account: the login form is where an account is chosen.
    let flow = browser
        .authorize(&idp, &[("prompt", "select_account")])
        .await;
    assert!(is_login_form(&flow.step), "{:?}", flow.step);

    // consent: operator-registered clients are consented by configuration, so no page.
    let flow = browser.authorize(&idp, &[("prompt", "consent")]).await;
    assert_eq!(acr(&tokens(&idp, &flow).await).0, json!("pwd"));

    // none with anything else is invalid, whatever the other value.
    for mixed in ["none consent", "select_account none"] {
        let flow = browser.authorize(&idp, &[("prompt", mixed)]).await;
        assert_eq!(
            flow.step.param("error").as_deref(),
            Some("invalid_request"),
            "{mixed}"
        );
    }
}

#[test_log::test(tokio::test)]
async fn expired_hint_still_names_the_user_a_foreign_one_is_refused() {
    let idp = start().await;
    let browser = Browser::new();
    let alice = sign_in(&idp, &browser).await;
    let hint = alice["id_token"].as_str().expect("id token");

    // Our claims under another key: not a hint we issued.
    let other = baton::jwt::keys::SigningKey::generate(baton::jwt::Algorithm::ES256).expect("key");
    let forged = other.sign("JWT", &claims(hint)).expect("sign");
    let flow = browser
        .authorize(&idp, &[("prompt", "none"), ("id_token_hint", &forged)])
        .await;
    assert_eq!(flow.step.param("error").as_deref(), Some("invalid_request"));

    // Ten minutes on, the ID token (300 s) has expired but the session (8 h) is live: silent
    // re-authorization with the expired hint still works (the hint names a user, it grants
    // nothing), which is exactly when a client needs it.
    let cookie = {
        use reqwest::cookie::CookieStore;
        let u = url::Url::parse(&idp.url).expect("url");
        let c = browser.jar.cookies(&u).expect("cookie");
        c.to_str().expect("ascii").to_owned()
    };
    let later = claims(hint)["exp"].as_u64().expect("exp") + 600;
    let (_, challenge) = pkce();
    let req = http::Request::get(format!(
        "/authorize?response_type=code&client_id=service-a&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st-9&prompt=none&id_token_hint={hint}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    ))
    .header("cookie", &cookie)
    .body(())
    .expect("request");
    let query = req.uri().query().unwrap_or("");
    let rsp = baton::idp::authorize::authorize(&idp.idp, query, req.headers(), later).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    let loc = url::Url::parse(rsp.headers()["location"].to_str().expect("ascii")).expect("url");
    assert!(loc.query_pairs().any(|(k, _)| k == "code"), "{loc}");
}
