//! e2e: browser sign-in at the edge (A's sidecar, `login: browser`) and step-up through the
//! A→B→C chain, with a cookie-keeping reqwest client as the browser and the real baton-idp.

use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, MFA_PATH};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// A browser: keeps cookies, never follows redirects on its own, asks for HTML.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A client without a cookie jar, for replaying requests with chosen cookies.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn nav(b: &reqwest::Client, url: &str) -> reqwest::Response {
    b.get(url)
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request")
}

fn location(rsp: &reqwest::Response) -> String {
    rsp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned()
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn set_cookie<'a>(rsp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    rsp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// `name="value"` of the hidden input `name` on an IdP page.
fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} on the page: {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("quote")].to_owned()
}

/// From the IdP's authorize URL: shows the login form, posts alice's password, returns the
/// redirect back to the sidecar's callback.
async fn password_at_idp(b: &reqwest::Client, issuer: &str, authorize: &str) -> String {
    let page = nav(b, authorize).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("name=\"password\""), "the login form");
    let rsp = b
        .post(format!("{issuer}/login"))
        .form(&[
            ("request", hidden(&html, "request")),
            ("csrf", hidden(&html, "csrf")),
            ("username", DEMO_USER.into()),
            ("password", DEMO_PASSWORD.into()),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(rsp.status(), 303, "{:?}", rsp.text().await);
    location(&rsp)
}

/// The chain, a browser signed in at A (back at `/`), and its `baton-session=...` cookie.
async fn signed_in() -> (Chain, reqwest::Client, String) {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let start = nav(&b, &format!("{}/", chain.edge)).await;
    let callback = password_at_idp(&b, &chain.issuer, &location(&start)).await;
    let back = nav(&b, &callback).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), "/");
    let cookie = set_cookie(&back, "baton-session")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    (chain, b, cookie)
}

#[tokio::test]
async fn a_browser_is_sent_to_sign_in_with_pkce_state_and_nonce_and_then_sees_c() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let rsp = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(rsp.status(), 302);
    let to = location(&rsp);
    assert!(
        to.starts_with(&format!("{}/authorize?", chain.issuer)),
        "{to}"
    );
    let q = query(&to);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "service-a");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16);
    assert_eq!(q["redirect_uri"], format!("{}/_baton/callback", chain.edge));
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(!q.contains_key("id_token_hint"));
    let login_cookie = set_cookie(&rsp, "baton-login").expect("pre-login cookie");
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("Path=/_baton/"));
    assert!(
        !login_cookie.contains(&q["state"]),
        "the state travels sealed"
    );

    let callback = password_at_idp(&b, &chain.issuer, &to).await;
    assert!(callback.starts_with(&format!("{}/_baton/callback?", chain.edge)));
    let back = nav(&b, &callback).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), "/");
    let session = set_cookie(&back, "baton-session").expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(session.contains("Path=/") && !session.contains("Secure"));

    // With the session A's app gets a bearer token and the claims: the call reaches C.
    let rsp = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["claims"]["sub"], "alice");
    assert_eq!(body["claims"]["aud"], "service-a");
    let c = &body["next"]["next"];
    assert_eq!(c["service"], "service-c");
    assert_eq!(c["claims"]["account_id"], "acct-1001");
    assert_eq!(
        c["claims"]["grants"],
        serde_json::json!(["service-a", "service-b", "service-c"])
    );
    // An API call (JSON, or not a GET) with the same session cookie is served too.
    let api = b
        .get(format!("{}/", chain.edge))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
    chain.stop().await;
}

#[tokio::test]
async fn api_requests_without_a_session_get_401_not_a_redirect() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let json = b
        .get(format!("{}/", chain.edge))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("get");
    assert_eq!(json.status(), 401);
    assert!(set_cookie(&json, "baton-login").is_none());
    let post = b
        .post(format!("{}/", chain.edge))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 401);
    let fetch = b
        .get(format!("{}/", chain.edge))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .expect("fetch");
    assert_eq!(fetch.status(), 401);
    chain.stop().await;
}

#[tokio::test]
async fn the_callback_refuses_a_wrong_state_a_replay_a_missing_cookie_and_idp_errors() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let start = nav(&b, &format!("{}/", chain.edge)).await;
    let cookie = set_cookie(&start, "baton-login")
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned();
    let callback = password_at_idp(&b, &chain.issuer, &location(&start)).await;
    let q = query(&callback);
    let cb = format!("{}/_baton/callback", chain.edge);

    let wrong = bare()
        .get(format!("{cb}?code={}&state=forged", q["code"]))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("wrong state");
    assert_eq!(wrong.status(), 400);
    let text = wrong.text().await.expect("body");
    assert!(text.contains("state"), "{text}");
    assert!(!text.contains(&q["code"]), "the code is never echoed");

    let no_cookie = bare().get(&callback).send().await.expect("no cookie");
    assert_eq!(no_cookie.status(), 400);

    let ok = bare()
        .get(&callback)
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(ok.status(), 302);
    let replay = bare()
        .get(&callback)
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.expect("body").contains("already used"));

    let refused = bare()
        .get(format!("{cb}?error=access_denied&state=x"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("idp error");
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .expect("body")
            .contains("access_denied")
    );
    chain.stop().await;
}

#[tokio::test]
async fn a_tampered_or_foreign_session_cookie_is_no_session() {
    let (chain, b, cookie) = signed_in().await;
    let ok = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(ok.status(), 200);
    // Another chain's sidecar seals under another key: its cookie opens nowhere else.
    let (other, _, foreign) = signed_in().await;
    let value = cookie.trim_start_matches("baton-session=");
    let mut flipped = value.as_bytes().to_vec();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let foreign = foreign.trim_start_matches("baton-session=").to_owned();
    for value in [flipped.as_str(), foreign.as_str(), "AAAA", "not-base64!"] {
        let rsp = bare()
            .get(format!("{}/", chain.edge))
            .header(ACCEPT, "text/html")
            .header(COOKIE, format!("baton-session={value}"))
            .send()
            .await
            .expect("tampered");
        assert_eq!(rsp.status(), 302, "{value}");
        assert!(location(&rsp).contains("/authorize?"));
    }
    other.stop().await;
    chain.stop().await;
}

#[tokio::test]
async fn the_return_path_is_always_local() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let start = nav(&b, &format!("{}//evil.example/x", chain.edge)).await;
    assert_eq!(start.status(), 302);
    let callback = password_at_idp(&b, &chain.issuer, &location(&start)).await;
    let back = nav(&b, &callback).await;
    assert_eq!(location(&back), "/");
    let start = nav(&b, &format!("{}/some/page?x=1", chain.edge)).await;
    // Signed in already: the page itself is served.
    assert_eq!(start.status(), 200);
    chain.stop().await;
}

#[tokio::test]
async fn a_challenge_from_c_steps_the_browser_up_with_only_the_code_and_replays_the_page() {
    let (chain, b, _) = signed_in().await;
    let page = format!("{}{MFA_PATH}?n=1", chain.edge);
    let rsp = nav(&b, &page).await;
    assert_eq!(rsp.status(), 302, "C's 401 became a step-up redirect");
    let to = location(&rsp);
    let q = query(&to);
    assert_eq!(q["acr_values"], "mfa");
    assert!(q["id_token_hint"].split('.').count() == 3);
    // The IdP asks only for the code.
    let code_page = nav(&b, &to).await;
    assert_eq!(code_page.status(), 200);
    let html = code_page.text().await.expect("page");
    assert!(html.contains("name=\"code\""));
    assert!(!html.contains("name=\"password\""), "no password again");
    let secret = chain.totp_secret(DEMO_USER).expect("secret");
    let code = baton::signin::totp_code(&secret, baton::jwt::unix_now()).expect("code");
    let rsp = b
        .post(format!("{}/otp", chain.issuer))
        .form(&[
            ("request", hidden(&html, "request")),
            ("csrf", hidden(&html, "csrf")),
            ("code", code),
        ])
        .send()
        .await
        .expect("otp");
    assert_eq!(rsp.status(), 303);
    let back = nav(&b, &location(&rsp)).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), format!("{MFA_PATH}?n=1"));
    let done = nav(&b, &page).await;
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.expect("json");
    assert_eq!(body["next"]["next"]["claims"]["acr"], "mfa");
    assert_eq!(body["claims"]["acr"], "mfa");
    // An API call to the same path without a session stays a plain relayed 401.
    let api = bare()
        .get(&page)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 401);
    chain.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let (chain, b, cookie) = signed_in().await;
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);
    let out = nav(&b, &format!("{}/_baton/logout", chain.edge)).await;
    assert_eq!(out.status(), 302);
    let cleared = set_cookie(&out, "baton-session").expect("cleared");
    assert!(cleared.contains("Max-Age=0"));
    let to = location(&out);
    assert!(to == "/" || to.starts_with(&chain.issuer), "{to}");
    let again = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(again.status(), 302, "signed out: sent to sign in again");
    assert!(location(&again).contains("/authorize?"));
    // The old cookie value names a session the sidecar no longer has.
    let replay = bare()
        .get(format!("{}/", chain.edge))
        .header(ACCEPT, "application/json")
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 401);
    chain.stop().await;
}
