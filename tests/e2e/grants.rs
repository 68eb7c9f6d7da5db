//! e2e: what a user's grant carries and how it ends: RFC 8707 `resource` at /authorize bound
//! into the code, the token response and refreshes (several → `aud` array, a subset may be
//! asked, anything else is `invalid_target`), and refresh-token reuse detection (RFC 9700
//! §4.14.2: a rotated-away token presented again revokes the whole family).

use crate::support::browser::{Browser, Flow, sign_in};
use crate::support::idp::{ALICE_PASSWORD, REDIRECT, TestIdp, claims, start, start_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CALENDAR: &str = "https://calendar.example/api";
const BUILDS: &str = "https://builds.example/api";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

async fn refresh(idp: &TestIdp, token: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    idp.token("service-a", &form).await
}

/// Signs alice in with `extra` authorization parameters; returns the code and verifier.
async fn code_with(idp: &TestIdp, b: &Browser, extra: &[(&str, &str)]) -> (String, String) {
    let flow = b.authorize(idp, extra).await;
    let Flow { verifier, step } = flow;
    let step = match step.param("code") {
        Some(_) => step,
        None => b.password(idp, &step.page(), "alice", ALICE_PASSWORD).await,
    };
    (step.param("code").expect("a code"), verifier)
}

async fn redeem(
    idp: &TestIdp,
    code: &str,
    verifier: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    form.extend_from_slice(extra);
    idp.token("service-a", &form).await
}

#[test_log::test(tokio::test)]
async fn resources_at_authorize_bound_the_audience_of_code_and_refresh() {
    let idp = start().await;
    let b = Browser::new();
    let both = [("resource", CALENDAR), ("resource", BUILDS)];
    let (code, verifier) = code_with(&idp, &b, &both).await;
    let (st, t) = redeem(&idp, &code, &verifier, &[]).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let keys = idp.jwks().await;
    let rules = |aud: &str| baton::jwt::Rules::access(idp.url.clone(), aud.to_owned());
    let at = s(&t, "access_token");
    for aud in ["resource-api", "builds-api"] {
        baton::jwt::verify(at, &keys, &rules(aud), baton::jwt::unix_now()).expect(aud);
    }
    let c = claims(at);
    assert_eq!(c["aud"], json!(["resource-api", "builds-api"]));
    assert_eq!(
        c["grants"],
        json!(["service-a", "resource-api", "builds-api"])
    );
    assert_eq!(c["user-access"], "resource-api", "the edge's claim");
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        claims(s(&t, "id_token"))["aud"],
        "service-a",
        "ID token is the client's"
    );

    // Refresh keeps both, may narrow to one (→ a string), never reach beyond the grant.
    let (st, r1) = refresh(&idp, s(&t, "refresh_token"), &[]).await;
    assert_eq!(st, StatusCode::OK, "{r1}");
    assert_eq!(
        claims(s(&r1, "access_token"))["aud"],
        json!(["resource-api", "builds-api"])
    );
    let (st, r2) = refresh(&idp, s(&r1, "refresh_token"), &[("resource", BUILDS)]).await;
    assert_eq!(st, StatusCode::OK, "{r2}");
    assert_eq!(claims(s(&r2, "access_token"))["aud"], "builds-api");
    let (st, r3) = refresh(&idp, s(&r2, "refresh_token"), &[]).await;
    assert_eq!(st, StatusCode::OK, "{r3}");
    assert_eq!(
        claims(s(&r3, "access_token"))["aud"],
        json!(["resource-api", "builds-api"]),
        "narrowing one access token keeps the grant"
    );
    let (st, e) = refresh(
        &idp,
        s(&r3, "refresh_token"),
        &[("resource", "https://other.example/")],
    )
    .await;
    assert_eq!(
        (st, s(&e, "error")),
        (StatusCode::BAD_REQUEST, "invalid_target")
    );

    // At /token: a subset of the code's resources, or invalid_target.
    let (code, verifier) = code_with(&idp, &b, &both).await;
    let (st, e) = redeem(
        &idp,
        &code,
        &verifier,
        &[("resource", "https://nope.example/")],
    )
    .await;
    assert_eq!(
        (st, s(&e, "error")),
        (StatusCode::BAD_REQUEST, "invalid_target")
    );
    let (code, verifier) = code_with(&idp, &b, &both).await;
    let (st, one) = redeem(&idp, &code, &verifier, &[("resource", CALENDAR)]).await;
    assert_eq!(st, StatusCode::OK, "{one}");
    assert_eq!(claims(s(&one, "access_token"))["aud"], "resource-api");

    // A code without resources: the token is the client's, a resource at /token is refused.
    let (code, verifier) = code_with(&idp, &b, &[]).await;
    let (st, e) = redeem(&idp, &code, &verifier, &[("resource", CALENDAR)]).await;
    assert_eq!(
        (st, s(&e, "error")),
        (StatusCode::BAD_REQUEST, "invalid_target")
    );
}

#[test_log::test(tokio::test)]
async fn prompt_none_reauthorizes_silently_per_audience() {
    // Silent re-authorization (prompt=none + id_token_hint) per audience.
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let hint = s(&t, "id_token");
    for (resource, aud) in [(CALENDAR, "resource-api"), (BUILDS, "builds-api")] {
        let flow = b
            .authorize(
                &idp,
                &[
                    ("prompt", "none"),
                    ("id_token_hint", hint),
                    ("resource", resource),
                ],
            )
            .await;
        let code = flow.step.param("code").expect("silent code");
        let (st, t) = redeem(&idp, &code, &flow.verifier, &[]).await;
        assert_eq!(st, StatusCode::OK, "{t}");
        assert_eq!(claims(s(&t, "access_token"))["aud"], aud);
    }
}

#[test_log::test(tokio::test)]
async fn bad_resources_at_authorize_go_back_as_invalid_target() {
    let idp = start_with(|cfg| {
        // A resource that exists but service-a has no edge to.
        cfg.resources
            .insert("https://c.example/api".into(), "service-c".into());
    })
    .await;
    let b = Browser::new();
    for bad in [
        "https://c.example/api",
        "https://unknown.example/",
        "https://calendar.example/api#frag",
        "/relative",
    ] {
        let flow = b.authorize(&idp, &[("resource", bad)]).await;
        assert_eq!(
            flow.step.param("error").as_deref(),
            Some("invalid_target"),
            "{bad}"
        );
        assert_eq!(flow.step.param("state").as_deref(), Some("st-9"));
    }
}

#[test_log::test(tokio::test)]
async fn reused_refresh_token_revokes_the_whole_family() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let first = s(&t, "refresh_token");
    let (st, second) = refresh(&idp, first, &[]).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let current = s(&second, "refresh_token");
    assert_eq!(
        idp.introspect("service-a", first).await,
        json!({"active": false})
    );
    assert_eq!(idp.introspect("service-a", current).await["active"], true);
    assert_eq!(
        idp.introspect("service-a", s(&second, "access_token"))
            .await["active"],
        true
    );

    // Another client presenting it is refused without touching alice's family.
    let (st, e) = idp
        .token(
            "service-b",
            &[("grant_type", "refresh_token"), ("refresh_token", first)],
        )
        .await;
    assert_eq!(st.as_u16(), 400, "{e}");
    assert_eq!(idp.introspect("service-a", current).await["active"], true);

    // The rotated-away token again: refused, and the current one dies with it.
    let (st, e) = refresh(&idp, first, &[]).await;
    assert_eq!(
        (st, s(&e, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        idp.introspect("service-a", current).await,
        json!({"active": false})
    );
    assert_eq!(
        idp.introspect("service-a", s(&second, "access_token"))
            .await,
        json!({"active": false}),
        "access tokens of the family are revoked too"
    );
    let (st, e) = refresh(&idp, current, &[]).await;
    assert_eq!(
        (st, s(&e, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let metrics = idp
        .http
        .get(format!("{}/metrics", idp.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("baton_idp_refresh_token_reuse_total 1"),
        "{metrics}"
    );

    // Another family of the same user and session is not affected.
    let (code, verifier) = code_with(&idp, &b, &[]).await;
    let (st, other) = redeem(&idp, &code, &verifier, &[]).await;
    assert_eq!(st, StatusCode::OK, "{other}");
    let (st, ok) = refresh(&idp, s(&other, "refresh_token"), &[]).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
}
