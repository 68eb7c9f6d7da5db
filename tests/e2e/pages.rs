//! e2e: every HTML page keeps the strict headers (a Content-Security-Policy that allows only the
//! page's own inlined stylesheet by its hash, and `data:` images only with a logo; no framing,
//! no caching, no MIME sniffing, a same-origin referrer policy), and a hostile client name or
//! branding string renders as text. The IdP's pages are walked over HTTP through sign-in, a
//! wrong password, the one-time code (wrong, then step-up), refusals and sign-out; the
//! sidecar's sign-out page and the demo's echo page through the demo chain.

use crate::support::browser::{Browser, alice_code};
use crate::support::idp::{ALICE_PASSWORD, TestIdp, hidden, start_with};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER};
use baton::page::Theme;
use baton::page::brand::{Brand, Color, Logo};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, LOCATION, ORIGIN};
use sha2::{Digest, Sha256};

/// A name written to break out of every context it could land in: element text, a quoted
/// attribute, the stylesheet, a URL, and the pages' own `{app}` templates.
const HOSTILE: &str = r#"</style><script>alert(1)</script>"'><img src=x onerror=alert(2)> url(javascript:alert(3)) {app} &amp;"#;

/// What a page with the theme's headers must carry, and that its one stylesheet is the one its
/// policy allows.
fn assert_strict(what: &str, headers: &HeaderMap, html: &str, logo: bool) {
    let one = |name: &str| {
        let all: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{what}: one {name}");
        all[0].to_str().expect("ascii").to_owned()
    };
    assert_eq!(one("content-type"), "text/html; charset=utf-8", "{what}");
    assert_eq!(one("cache-control"), "no-store", "{what}");
    assert_eq!(one("x-frame-options"), "DENY", "{what}");
    assert_eq!(one("x-content-type-options"), "nosniff", "{what}");
    // `same-origin`: under `no-referrer` a browser's form POST carries `Origin: null`.
    assert_eq!(one("referrer-policy"), "same-origin", "{what}");

    let start = html.find("<style>").expect("a stylesheet") + "<style>".len();
    let style = &html[start..start + html[start..].find("</style>").expect("its end")];
    let hash = STANDARD.encode(Sha256::digest(style.as_bytes()));
    let mut expected = vec![
        "default-src 'none'".to_owned(),
        format!("style-src 'sha256-{hash}'"),
        "base-uri 'none'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
    ];
    if logo {
        expected.push("img-src data:".to_owned());
    }
    let mut got: Vec<String> = one("content-security-policy")
        .split(';')
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|d| !d.is_empty())
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{what}: the policy, directive by directive");

    assert_eq!(html.matches("<style").count(), 1, "{what}: one stylesheet");
    assert_eq!(
        html.matches("</style>").count(),
        1,
        "{what}: one stylesheet"
    );
    // The markup itself (text is escaped, so every raw `<` opens a tag of ours).
    let body = &html[start + style.len()..];
    let tags: Vec<&str> = body
        .split('<')
        .skip(1)
        .filter_map(|t| t.split('>').next())
        .collect();
    for tag in &tags {
        let name = tag.split_whitespace().next().unwrap_or("");
        assert!(
            ![
                "script", "link", "iframe", "object", "embed", "base", "meta"
            ]
            .contains(&name),
            "{what}: <{tag}>"
        );
        let handler = tag.split_whitespace().skip(1).any(|a| a.starts_with("on"));
        assert!(
            !handler && !tag.contains(" style=") && !tag.contains("javascript:"),
            "{what}: <{tag}>"
        );
        assert!(
            !tag.contains("src=\"http"),
            "{what}: nothing fetched: <{tag}>"
        );
    }
    let images: Vec<&&str> = tags.iter().filter(|t| t.starts_with("img ")).collect();
    assert_eq!(images.len(), usize::from(logo), "{what}: the logo only");
    if logo {
        assert!(
            images[0].starts_with("img src=\"data:image/svg+xml;base64,"),
            "{what}"
        );
    }
}

/// The hostile name, escaped, where the page shows it.
fn assert_as_text(what: &str, html: &str) {
    assert!(
        html.contains("&lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{what}: the name as text in {html}"
    );
    assert!(
        html.contains("{app} &amp;amp;"),
        "{what}: no template or entity inside a value"
    );
}

async fn page(rsp: reqwest::Response) -> (StatusCode, HeaderMap, String) {
    let (status, headers) = (rsp.status(), rsp.headers().clone());
    (status, headers, rsp.text().await.expect("page"))
}

async fn hostile_idp() -> TestIdp {
    start_with(|cfg| {
        let logo = br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8"/></svg>"#;
        cfg.branding = Theme::new(Brand {
            product: HOSTILE.into(),
            logo: Some(Logo::from_bytes(logo).expect("svg")),
            accent: Color::parse("#0f766e").expect("colour"),
            home: Some("https://portal.example/?a=\"<x>".parse().expect("url")),
        });
        if let Some(c) = cfg.clients.get_mut("service-a") {
            c.name = Some(HOSTILE.into());
        }
    })
    .await
}

#[test_log::test(tokio::test)]
async fn every_idp_page_keeps_the_strict_headers_and_shows_hostile_names_as_text() {
    let idp = hostile_idp().await;
    let b = Browser::new();
    let authorize = |extra: &'static [(&'static str, &'static str)]| {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", "http://127.0.0.1:8080/callback"),
            ("scope", "openid"),
            ("state", "st"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ];
        q.extend_from_slice(extra);
        b.http
            .get(format!("{}/authorize", idp.url))
            .query(&q)
            .send()
    };
    let post = |path: &str, form: Vec<(&str, String)>| {
        b.http.post(format!("{}{path}", idp.url)).form(&form).send()
    };
    let mut seen = Vec::new();
    let mut check = |what: &'static str,
                     (status, headers, html): &(StatusCode, HeaderMap, String),
                     want: StatusCode| {
        assert_eq!(*status, want, "{what}: {html}");
        assert_strict(what, headers, html, true);
        // The product name is in every page's header and title.
        assert_as_text(what, html);
        seen.push(what);
    };

    // The sign-in page, then a wrong password.
    let signin = page(
        authorize(&[("acr_values", "mfa")])
            .await
            .expect("authorize"),
    )
    .await;
    check("sign-in", &signin, StatusCode::OK);
    assert!(
        signin.2.contains("to continue to <strong>&lt;/style&gt;"),
        "the client's name"
    );
    let request = hidden(&signin.2, "request");
    let wrong = post(
        "/login",
        vec![
            ("request", request.clone()),
            ("username", "alice".into()),
            ("password", "nope".into()),
        ],
    );
    let wrong = page(wrong.await.expect("login")).await;
    check("sign-in, wrong password", &wrong, StatusCode::UNAUTHORIZED);
    assert!(wrong.2.contains(r#"role="alert""#));

    // The password, then the one-time-code page: a wrong code, then the right one.
    let right = post(
        "/login",
        vec![
            ("request", request.clone()),
            ("username", "alice".into()),
            ("password", ALICE_PASSWORD.into()),
        ],
    );
    let code_page = page(right.await.expect("login")).await;
    check("one-time code", &code_page, StatusCode::OK);
    assert!(
        code_page
            .2
            .contains("needs a one-time code for this action")
    );
    let request = hidden(&code_page.2, "request");
    let bad = post(
        "/otp",
        vec![("request", request.clone()), ("code", "000000".into())],
    );
    let bad = page(bad.await.expect("otp")).await;
    if alice_code() != "000000" {
        check("one-time code, wrong", &bad, StatusCode::UNAUTHORIZED);
        assert!(bad.2.contains(r#"aria-invalid="true""#));
    }

    // Step-up from the session the password started: the code page straight from /authorize.
    let step_up = page(
        authorize(&[("acr_values", "mfa")])
            .await
            .expect("authorize"),
    )
    .await;
    check("step-up", &step_up, StatusCode::OK);
    assert!(
        step_up
            .2
            .contains("You are signed in as <strong>alice</strong>")
    );

    // Refusals: a sign-in link that cannot be trusted, a form from another site, an expired one.
    let link = b
        .http
        .get(format!(
            "{}/authorize?client_id=service-a&redirect_uri=https%3A%2F%2Fevil.example%2F%3Cx%3E",
            idp.url
        ))
        .send();
    let link = page(link.await.expect("authorize")).await;
    check("error: bad link", &link, StatusCode::BAD_REQUEST);
    assert!(!link.2.contains("evil.example"), "no parameter is echoed");
    assert!(
        link.2
            .contains(r#"href="https://portal.example/?a=%22%3Cx%3E""#),
        "{}",
        link.2
    );
    let other_site = b
        .http
        .post(format!("{}/login", idp.url))
        .header(ORIGIN, "https://evil.example")
        .form(&[("request", request.as_str())])
        .send();
    check(
        "error: other site",
        &page(other_site.await.expect("login")).await,
        StatusCode::FORBIDDEN,
    );
    let expired = post("/login", vec![("request", "x".repeat(40))]);
    check(
        "error: expired",
        &page(expired.await.expect("login")).await,
        StatusCode::BAD_REQUEST,
    );

    // Sign-out, asked by service-a: the confirmation, then the signed-out page.
    let ask = b
        .http
        .get(format!("{}/end_session?client_id=service-a", idp.url))
        .send();
    let ask = page(ask.await.expect("end_session")).await;
    check("sign-out confirmation", &ask, StatusCode::OK);
    assert!(ask.2.contains("asked to sign you out of"));
    let confirm = post(
        "/end_session",
        vec![
            ("logout_request", hidden(&ask.2, "logout_request")),
            ("csrf", hidden(&ask.2, "csrf")),
        ],
    );
    let done = page(confirm.await.expect("confirm")).await;
    check("signed out", &done, StatusCode::OK);
    assert!(done.2.contains("You are signed out."));
    let again = post(
        "/end_session",
        vec![
            ("logout_request", hidden(&ask.2, "logout_request")),
            ("csrf", hidden(&ask.2, "csrf")),
        ],
    );
    check(
        "error: sign-out expired",
        &page(again.await.expect("confirm")).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(seen.len() >= 10, "{seen:?}");
}

#[test_log::test(tokio::test)]
async fn the_sidecar_sign_out_and_demo_pages_keep_the_strict_headers() {
    let chain = Chain::start().await.expect("chain");
    let b = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let nav = |url: String| b.get(url).header(ACCEPT, "text/html").send();
    let location = |rsp: &reqwest::Response, base: &str| {
        let l = rsp.headers()[LOCATION].to_str().expect("ascii");
        url::Url::parse(base)
            .and_then(|u| u.join(l))
            .expect("url")
            .to_string()
    };
    // A's sidecar sends the browser to the IdP; the login form; back through the callback.
    let start = nav(format!("{}/", chain.edge)).await.expect("edge");
    let (status, headers, html) =
        page(nav(location(&start, &chain.edge)).await.expect("idp")).await;
    assert_eq!(status, StatusCode::OK);
    assert_strict("demo sign-in", &headers, &html, false);
    assert!(
        html.contains("to continue to <strong>Service A</strong>"),
        "deploy/idp.yaml's name"
    );
    let form = [
        ("request", hidden(&html, "request")),
        ("username", DEMO_USER.into()),
        ("password", DEMO_PASSWORD.into()),
    ];
    let back = b
        .post(format!("{}/login", chain.issuer))
        .form(&form)
        .send()
        .await
        .expect("login");
    let mut rsp = nav(location(&back, &chain.issuer)).await.expect("callback");
    while rsp.status().is_redirection() {
        rsp = nav(location(&rsp, &chain.edge)).await.expect("follow");
    }
    let (status, headers, html) = page(rsp).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_strict("demo echo page", &headers, &html, false);
    assert!(html.contains("<h2>service-c</h2>") && html.contains("service-b ← service-a"));

    let (status, headers, html) = page(
        nav(format!("{}/_baton/logout", chain.edge))
            .await
            .expect("logout"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_strict("sidecar sign-out page", &headers, &html, false);
    assert!(html.contains(r#"id="sign-out""#));

    // Without `Accept: text/html` the echo app still answers JSON (the demo's terminal table).
    let json = b
        .get(format!("{}/", chain.edge))
        .send()
        .await
        .expect("json");
    assert!(
        json.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("application/json"))
    );
    chain.stop().await;
}
