//! e2e: revocation follows a token's lineage. Signing out, a refresh token's reuse and a code's
//! replay each make every token descending from what they revoke inactive at introspection and
//! refused as a `subject_token` (RFC 8693 §2.2.2 `invalid_request`): the user's access token,
//! its exchanges, exchanges of those, and self-edge renewals. And no renewal, along any edge,
//! outlives `lifetimes.sign_in` counted from the sign-in.

use crate::support::browser::{Browser, Flow, tokens};
use crate::support::idp::{
    ALICE_PASSWORD, REDIRECT, TestIdp, claims, pkce, secret, start, start_with,
};
use base64::Engine;
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The scope that lets alice's token reach the builds API.
const SCOPE: &str = "openid update:builds";

/// Signs `b` in as alice with [`SCOPE`]; returns the token response.
async fn sign_in(idp: &TestIdp, b: &Browser) -> Value {
    let (verifier, challenge) = pkce();
    let rsp = b
        .http
        .get(format!("{}/authorize", idp.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPE),
            ("state", "st-9"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    let html = Browser::step(rsp).await.page();
    let step = b.password(idp, &html, "alice", ALICE_PASSWORD).await;
    tokens(idp, &Flow { verifier, step }).await
}

/// One token of a lineage: who may introspect it (its audience) and, when it can be a
/// subject, the exchange that uses it (client, audience, scope).
struct Held {
    what: &'static str,
    audience: &'static str,
    token: String,
    exchange: Option<(&'static str, &'static str, &'static str)>,
}

/// Exchanges `subject` as `client` for `audience`; the new token.
async fn exchange(
    idp: &TestIdp,
    client: &str,
    subject: &str,
    aud: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut form = vec![("audience", aud)];
    form.extend_from_slice(extra);
    let (st, body) = idp.exchange(client, subject, &form).await;
    assert_eq!(st, StatusCode::OK, "{client} → {aud}: {body}");
    s(&body, "access_token").to_owned()
}

/// The user's token and what the demo chain derives from it: A → B → C, A → builds-api, and
/// two self-edge renewals of the builds API's job token (an exchange of an exchange of an
/// exchange).
async fn descendants(idp: &TestIdp, user: &str) -> Vec<Held> {
    let b = exchange(idp, "service-a", user, "service-b", &[]).await;
    let c = exchange(idp, "service-b", &b, "service-c", &[]).await;
    let builds = exchange(
        idp,
        "service-a",
        user,
        "builds-api",
        &[("scope", "update:builds")],
    )
    .await;
    let job_form = [("scope", "update:builds"), ("requested_lifetime", "86400")];
    let job = exchange(idp, "builds-api", &builds, "builds-api", &job_form).await;
    let renewed = exchange(idp, "builds-api", &job, "builds-api", &job_form).await;
    let lineage = |t: &str| (claims(t)["sid"].clone(), claims(t)["grant_id"].clone());
    for t in [&b, &c, &builds, &job, &renewed] {
        assert_eq!(
            lineage(t),
            lineage(user),
            "the lineage passes through every exchange"
        );
    }
    let to_b = Some(("service-a", "service-b", ""));
    let to_c = Some(("service-b", "service-c", ""));
    let renew = Some(("builds-api", "builds-api", "update:builds"));
    vec![
        Held {
            what: "user token",
            audience: "service-a",
            token: user.to_owned(),
            exchange: to_b,
        },
        Held {
            what: "A→B",
            audience: "service-b",
            token: b,
            exchange: to_c,
        },
        Held {
            what: "B→C",
            audience: "service-c",
            token: c,
            exchange: None,
        },
        Held {
            what: "A→builds",
            audience: "builds-api",
            token: builds,
            exchange: renew,
        },
        Held {
            what: "builds→builds",
            audience: "builds-api",
            token: job,
            exchange: renew,
        },
        Held {
            what: "builds→builds→builds",
            audience: "builds-api",
            token: renewed,
            exchange: renew,
        },
    ]
}

async fn assert_active(idp: &TestIdp, held: &[Held]) {
    for h in held {
        let v = idp.introspect(h.audience, &h.token).await;
        assert_eq!(v["active"], true, "{}: {v}", h.what);
    }
}

/// Every token is inactive at introspection and refused as a subject with `invalid_request`.
async fn assert_revoked(idp: &TestIdp, held: &[Held]) {
    for h in held {
        assert_eq!(
            idp.introspect(h.audience, &h.token).await,
            json!({"active": false}),
            "{} still active",
            h.what
        );
        if let Some((client, aud, scope)) = h.exchange {
            let mut form = vec![("audience", aud)];
            if !scope.is_empty() {
                form.push(("scope", scope));
            }
            let (st, body) = idp.exchange(client, &h.token, &form).await;
            assert_eq!(
                (st, s(&body, "error")),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{} as subject: {body}",
                h.what
            );
            assert!(s(&body, "error_description").contains("revoked"), "{body}");
        }
    }
}

#[test_log::test(tokio::test)]
async fn signing_out_revokes_every_token_exchanged_from_the_session() {
    let idp = start().await;
    let b = Browser::new();
    let t = sign_in(&idp, &b).await;
    let held = descendants(&idp, s(&t, "access_token")).await;
    assert_active(&idp, &held).await;
    // alice in another browser: another session, untouched by this one's sign-out.
    let other = Browser::new();
    let t2 = sign_in(&idp, &other).await;
    let kept = descendants(&idp, s(&t2, "access_token")).await;

    let rsp = b
        .http
        .get(format!("{}/end_session", idp.url))
        .query(&[("id_token_hint", s(&t, "id_token"))])
        .send()
        .await
        .expect("end_session");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        rsp.text()
            .await
            .expect("page")
            .contains("You are signed out.")
    );

    assert_revoked(&idp, &held).await;
    assert_eq!(
        idp.introspect("service-a", s(&t, "refresh_token")).await,
        json!({"active": false})
    );
    let userinfo = idp
        .http
        .get(format!("{}/userinfo", idp.url))
        .bearer_auth(s(&t, "access_token"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert_active(&idp, &kept).await;
}

#[test_log::test(tokio::test)]
async fn a_code_redeemed_after_its_session_ended_is_refused() {
    let idp = start().await;
    let b = Browser::new();
    let flow = b.authorize(&idp, &[]).await;
    let verifier = flow.verifier;
    let html = flow.step.page();
    let step = b.password(&idp, &html, "alice", ALICE_PASSWORD).await;
    let code = step.param("code").expect("code");
    // The user signs out (no hint: the IdP asks, the browser confirms) before the client
    // redeems the code.
    let page = b
        .http
        .get(format!("{}/end_session", idp.url))
        .send()
        .await
        .expect("end_session")
        .text()
        .await
        .expect("page");
    let rsp = b
        .post(
            &idp,
            "/end_session",
            &[
                (
                    "logout_request",
                    &crate::support::idp::hidden(&page, "logout_request"),
                ),
                ("csrf", &crate::support::idp::hidden(&page, "csrf")),
            ],
        )
        .await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let (st, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(
        (st, s(&body, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
}

#[test_log::test(tokio::test)]
async fn a_reused_refresh_token_revokes_every_exchange_of_its_family() {
    let idp = start().await;
    let first = idp.login(SCOPE).await;
    let held = descendants(&idp, s(&first, "access_token")).await;
    let refresh = |token: String| {
        let idp = &idp;
        async move {
            idp.token(
                "service-a",
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let (st, second) = refresh(s(&first, "refresh_token").to_owned()).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let rotated = descendants(&idp, s(&second, "access_token")).await;
    // Another sign-in, another family: not affected.
    let other = idp.login(SCOPE).await;
    let kept = descendants(&idp, s(&other, "access_token")).await;
    assert_active(&idp, &held).await;

    let (st, reuse) = refresh(s(&first, "refresh_token").to_owned()).await;
    assert_eq!(
        (st, s(&reuse, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_revoked(&idp, &held).await;
    assert_revoked(&idp, &rotated).await;
    assert_eq!(
        idp.introspect("service-a", s(&second, "refresh_token"))
            .await,
        json!({"active": false})
    );
    assert_active(&idp, &kept).await;
}

#[test_log::test(tokio::test)]
async fn a_replayed_code_revokes_every_exchange_of_what_it_issued() {
    let idp = start().await;
    let (verifier, challenge) = pkce();
    let code = idp.code(SCOPE, &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (st, t) = idp.token("service-a", &form).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let held = descendants(&idp, s(&t, "access_token")).await;
    assert_active(&idp, &held).await;
    let (st, replay) = idp.token("service-a", &form).await;
    assert_eq!(
        (st, s(&replay, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_revoked(&idp, &held).await;
    assert_eq!(
        idp.introspect("service-a", s(&t, "refresh_token")).await,
        json!({"active": false})
    );
}

/// `/token` at a chosen time (the endpoint takes `now` as an argument).
async fn token_at(
    idp: &TestIdp,
    client: &str,
    form: &[(&str, &str)],
    now: u64,
) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{client}:{}", secret(client)));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request::post("/token")
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("request");
    let rsp = baton::idp::token::token(&idp.idp, req, now).await;
    let status = rsp.status();
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[test_log::test(tokio::test)]
async fn a_self_edge_never_renews_a_token_past_the_sign_in() {
    // The sign-in lasts as long as a session (8 h); the builds API's self-edge allows 24 h; the
    // chain depth is out of the way, so only the sign-in's end can stop the renewals.
    let idp = start_with(|c| {
        c.lifetimes.sign_in = c.lifetimes.session;
        c.max_chain_depth = 32;
    })
    .await;
    let sign_in = idp.idp.config().lifetimes.sign_in;
    let login = idp.login(SCOPE).await;
    let auth_time = claims(s(&login, "access_token"))["auth_time"]
        .as_u64()
        .expect("auth_time");
    let ends = auth_time + sign_in;
    let handed = exchange(
        &idp,
        "service-a",
        s(&login, "access_token"),
        "builds-api",
        &[("scope", "update:builds")],
    )
    .await;
    let renew = |subject: String, now: u64| {
        let idp = &idp;
        async move {
            let form = [
                ("grant_type", crate::support::idp::EXCHANGE),
                ("subject_token", subject.as_str()),
                ("subject_token_type", crate::support::idp::ACCESS),
                ("audience", "builds-api"),
                ("scope", "update:builds"),
                ("requested_lifetime", "86400"),
            ];
            token_at(idp, "builds-api", &form, now).await
        }
    };
    // Asked for 24 h, the job token gets what is left of the sign-in, and every later renewal
    // (each a renewal of the previous one) ends at the same time.
    let mut subject = handed;
    let mut renewals = 0;
    for now in [auth_time + 10, auth_time + 3_600, ends - 3_600, ends - 1] {
        let (st, body) = renew(subject.clone(), now).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let job = s(&body, "access_token").to_owned();
        assert_eq!(claims(&job)["exp"], ends, "renewed at {now}");
        assert_eq!(body["expires_in"], ends - now);
        subject = job;
        renewals += 1;
    }
    assert_eq!(renewals, 4);
    // Past the sign-in's end (the last token still within its verification leeway): refused.
    let (st, body) = renew(subject, ends + 10).await;
    assert_eq!(
        (st, s(&body, "error")),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{body}"
    );
    assert!(
        s(&body, "error_description").contains("sign-in is too old"),
        "{body}"
    );
    // The refresh token stops there too.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", s(&login, "refresh_token")),
    ];
    let (st, body) = token_at(&idp, "service-a", &form, ends - 100).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["expires_in"], 100,
        "the access token ends with the sign-in"
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", s(&body, "refresh_token")),
    ];
    let (st, body) = token_at(&idp, "service-a", &form, ends).await;
    assert_eq!(
        (st, s(&body, "error")),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "{body}"
    );
}

#[test_log::test(tokio::test)]
async fn clients_cannot_set_the_lineage_claims() {
    for claim in ["sid", "grant_id"] {
        let yaml = format!(
            "issuer: http://127.0.0.1:9000\nkeys: {{dir: k}}\nclients:\n  - {{id: a, secret: secret-a-123}}\n  - {{id: b, secret: secret-b-123}}\ngrants:\n  - {{client: a, target: b, claims: {{{claim}: forged}}}}\nusers:\n  - {{username: u, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$r+5TdXsBB9POuvffwWAHTQ$NTuHHT2TSdubsihZXpTDWDmoInOKlgMu5mgjKpzyKj8\", claims: {{{claim}: forged}}}}\n"
        );
        let errors = match baton::idp::Config::from_yaml(&yaml, "idp.yaml") {
            Ok(_) => panic!("{claim} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            errors.contains(&format!("grants[0].claims.{claim}: is reserved")),
            "{errors}"
        );
        assert!(
            errors.contains(&format!("users[0].claims.{claim}: is reserved")),
            "{errors}"
        );
    }
}
