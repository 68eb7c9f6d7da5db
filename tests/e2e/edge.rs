//! e2e: browser sign-in at the edge (A's sidecar, `login: browser`) and step-up through the
//! A→B→C chain, with a cookie-keeping reqwest client as the browser and the real baton-idp.

use crate::support::token_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp};
use crate::support::upstream::Upstream;
use baton::config::Config;
use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, MFA_PATH, Options, UNREACHABLE_PATH};
use baton::sidecar::{self, Listeners};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, ORIGIN, SET_COOKIE, WWW_AUTHENTICATE};
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

/// The echo app's answer on the page a browser gets: the JSON in its `#json`.
async fn echoed(rsp: reqwest::Response) -> Value {
    let html = rsp.text().await.expect("page");
    let open = r#"<pre id="json">"#;
    let start = html.find(open).expect("the echo page") + open.len();
    let end = start + html[start..].find("</pre>").expect("its end");
    let text = html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).expect("json")
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

/// The pre-login cookie a sign-in start sets (`baton-login-<hash of state>`), whole header.
fn login_cookie(rsp: &reqwest::Response) -> Option<&str> {
    rsp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton-login-") && !v.contains("Max-Age=0"))
}

/// `name=value` of a `Set-Cookie` header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_owned()
}

/// The names of the cookies a response clears.
fn cleared(rsp: &reqwest::Response) -> Vec<String> {
    rsp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.contains("Max-Age=0"))
        .filter_map(|v| v.split('=').next())
        .map(str::to_owned)
        .collect()
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
    signed_in_with(Options::default()).await
}

async fn signed_in_with(options: Options) -> (Chain, reqwest::Client, String) {
    let chain = Chain::start_with(options).await.expect("chain");
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

#[test_log::test(tokio::test)]
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
    let login = login_cookie(&rsp).expect("pre-login cookie");
    assert!(login.contains("HttpOnly") && login.contains("Path=/;"));
    assert!(!login.contains(&q["state"]), "the state travels sealed");

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
    let body = echoed(rsp).await;
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

#[test_log::test(tokio::test)]
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
    assert!(login_cookie(&json).is_none());
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

#[test_log::test(tokio::test)]
async fn the_callback_refuses_a_wrong_state_a_replay_a_missing_cookie_and_idp_errors() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let start = nav(&b, &format!("{}/", chain.edge)).await;
    let cookie = pair(login_cookie(&start).expect("cookie"));
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

#[test_log::test(tokio::test)]
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

#[test_log::test(tokio::test)]
async fn the_return_path_is_always_local() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let start = nav(&b, &format!("{}//evil.example/x", chain.edge)).await;
    assert_eq!(start.status(), 302);
    let callback = password_at_idp(&b, &chain.issuer, &location(&start)).await;
    let back = nav(&b, &callback).await;
    // The canonical path merges the slashes first: a page of this site, never `//evil.example`.
    assert_eq!(location(&back), "/evil.example/x");
    let start = nav(&b, &format!("{}/some/page?x=1", chain.edge)).await;
    // Signed in already: the page itself is served.
    assert_eq!(start.status(), 200);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
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
        .form(&[("request", hidden(&html, "request")), ("code", code)])
        .send()
        .await
        .expect("otp");
    assert_eq!(rsp.status(), 303);
    let back = nav(&b, &location(&rsp)).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), format!("{MFA_PATH}?n=1"));
    let done = nav(&b, &page).await;
    assert_eq!(done.status(), 200);
    let body = echoed(done).await;
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

#[test_log::test(tokio::test)]
async fn logout_is_a_post_with_csrf_that_ends_the_idp_session_too() {
    let (chain, b, cookie) = signed_in().await;
    let logout = format!("{}/_baton/logout", chain.edge);
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);
    // A GET (a link, an <img>, a top-level navigation from another site) only shows a button.
    let page = nav(&b, &logout).await;
    assert_eq!(page.status(), 200);
    assert!(set_cookie(&page, "baton-session").is_none());
    let html = page.text().await.expect("page");
    assert!(html.contains("method=\"post\""), "{html}");
    let csrf = hidden(&html, "csrf");
    // A POST from another site (its Origin, no token, or a wrong token) is refused.
    for (origin, token) in [
        (Some("https://evil.example"), None),
        (None, None),
        (None, Some("AAAA")),
    ] {
        let mut req = b.post(&logout);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        if let Some(t) = token {
            req = req.form(&[("csrf", t)]);
        }
        let rsp = req.send().await.expect("post");
        assert_eq!(rsp.status(), 403, "{origin:?} {token:?}");
        assert!(set_cookie(&rsp, "baton-session").is_none());
    }
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);

    // The button: the session ends, and the browser goes to the IdP's end-session endpoint.
    let out = b
        .post(&logout)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 302);
    assert!(
        set_cookie(&out, "baton-session")
            .expect("cleared")
            .contains("Max-Age=0")
    );
    let to = location(&out);
    assert!(
        to.starts_with(&format!("{}/end_session?", chain.issuer)),
        "{to}"
    );
    let q = query(&to);
    assert_eq!(q["client_id"], "service-a");
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/", chain.edge));
    assert_eq!(q["id_token_hint"].split('.').count(), 3);
    // The hint names the IdP session: no confirmation, straight back to A.
    let idp = nav(&b, &to).await;
    assert_eq!(idp.status(), 303);
    assert_eq!(location(&idp), format!("{}/", chain.edge));
    // A sends the browser to sign in, and the IdP asks for the password again.
    let again = nav(&b, &location(&idp)).await;
    assert_eq!(again.status(), 302, "signed out: sent to sign in again");
    let authorize = location(&again);
    assert!(authorize.contains("/authorize?"));
    let login = nav(&b, &authorize).await;
    assert_eq!(login.status(), 200, "the IdP session ended: a login page");
    assert!(
        login
            .text()
            .await
            .expect("page")
            .contains("name=\"password\"")
    );
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

#[test_log::test(tokio::test)]
async fn a_sign_out_form_on_the_apps_own_pages_needs_no_token() {
    let (chain, b, _) = signed_in().await;
    let out = b
        .post(format!("{}/_baton/logout", chain.edge))
        .header(ORIGIN, &chain.edge)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 302);
    assert!(location(&out).contains("/end_session?"));
    let again = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(again.status(), 302);
    assert!(location(&again).contains("/authorize?"));
    // Without a session, logout from this origin has nothing to end: back to `/`.
    let none = bare()
        .post(format!("{}/_baton/logout", chain.edge))
        .header(ORIGIN, &chain.edge)
        .send()
        .await
        .expect("no session");
    assert_eq!(none.status(), 302);
    assert_eq!(location(&none), "/");
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn reserved_paths_pass_the_same_canonical_gate() {
    let (chain, b, _) = signed_in().await;
    // Other spellings of /_baton/logout are the sign-out page, never the app's (the client's URL
    // parser resolves dot-segments itself; the catalogue sends those on a raw socket).
    for spelling in [
        "/_baton/logout",
        "//_baton/logout",
        "/%5Fbaton/logout",
        "/%5fbaton//logout",
    ] {
        let page = nav(&b, &format!("{}{spelling}", chain.edge)).await;
        assert_eq!(page.status(), 200, "{spelling}");
        let html = page.text().await.expect("page");
        assert!(html.contains("id=\"sign-out\""), "{spelling}: {html}");
    }
    // A path without a canonical form is refused before the reserved paths are looked at.
    for spelling in ["/_baton/logout;x", "/_baton%2Flogout", "/_baton/logout."] {
        let rsp = bare()
            .post(format!("{}{spelling}", chain.edge))
            .header(ORIGIN, &chain.edge)
            .send()
            .await
            .expect("post");
        assert_eq!(rsp.status(), 400, "{spelling}");
        assert!(rsp.headers().get(SET_COOKIE).is_none(), "{spelling}");
    }
    // Still signed in.
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_cross_site_logout_post_clears_no_cookie() {
    let (chain, b, cookie) = signed_in().await;
    let logout = format!("{}/_baton/logout", chain.edge);
    // A form on another site posts here: the browser sends no `SameSite=Lax` cookie with it, but
    // would apply a `Set-Cookie` that clears the session. Every such POST is refused, and clears
    // nothing, with or without the cookie, a foreign `Origin` or `Sec-Fetch-Site`.
    for (with_cookie, origin, site) in [
        (false, Some("https://evil.example"), Some("cross-site")),
        (false, Some("null"), None),
        (false, None, None),
        (true, Some("https://evil.example"), Some("cross-site")),
        (true, None, Some("same-site")),
    ] {
        let mut req = bare().post(&logout).form(&[("csrf", "AAAA")]);
        if with_cookie {
            req = req.header(COOKIE, &cookie);
        }
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let rsp = req.send().await.expect("post");
        let case = format!("cookie {with_cookie}, {origin:?}, {site:?}");
        assert_eq!(rsp.status(), 403, "{case}");
        assert!(
            rsp.headers().get(SET_COOKIE).is_none(),
            "{case}: {:?}",
            rsp.headers()
        );
    }
    // The browser is still signed in.
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn the_access_token_is_refreshed_before_expiry_and_a_failed_refresh_signs_in_again() {
    // Access tokens live 20 s, less than the 30 s refresh skew: every request refreshes first.
    let options = Options {
        access_lifetime: Some(20),
        ..Options::default()
    };
    let (chain, b, _) = signed_in_with(options).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let rsp = nav(&b, &format!("{}/", chain.edge)).await;
        assert_eq!(rsp.status(), 200);
        let body = echoed(rsp).await;
        assert_eq!(body["claims"]["sub"], "alice");
        assert_eq!(
            body["next"]["next"]["service"], "service-c",
            "the chain still works"
        );
        let jti = body["claims"]["jti"].as_str().expect("jti").to_owned();
        assert!(
            !seen.contains(&jti),
            "a new access token each time: {jti} in {seen:?}"
        );
        seen.push(jti);
    }
    // The user signs out at the IdP directly: it revokes the refresh tokens of that session.
    let confirm = nav(&b, &format!("{}/end_session", chain.issuer)).await;
    assert_eq!(confirm.status(), 200);
    let html = confirm.text().await.expect("page");
    let ended = b
        .post(format!("{}/end_session", chain.issuer))
        .form(&[
            ("logout_request", hidden(&html, "logout_request")),
            ("csrf", hidden(&html, "csrf")),
        ])
        .send()
        .await
        .expect("end session");
    assert_eq!(ended.status(), 200);
    // The next refresh is refused: the session ends and the browser is sent to sign in again.
    let rsp = nav(&b, &format!("{}/", chain.edge)).await;
    assert_eq!(rsp.status(), 302);
    let authorize = location(&rsp);
    assert!(authorize.contains("/authorize?"), "{authorize}");
    assert!(
        nav(&b, &authorize)
            .await
            .text()
            .await
            .expect("page")
            .contains("name=\"password\"")
    );
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_challenge_the_idp_cannot_meet_is_shown_the_second_time_not_looped() {
    let options = Options {
        unreachable_acr: true,
        ..Options::default()
    };
    let (chain, b, _) = signed_in_with(options).await;
    let page = format!("{}{UNREACHABLE_PATH}", chain.edge);
    let first = nav(&b, &page).await;
    assert_eq!(first.status(), 302, "the first challenge is a step-up");
    let to = location(&first);
    assert_eq!(query(&to)["acr_values"], "hwk");
    // The IdP cannot give hwk; acr_values are voluntary, so it signs the user in as it can.
    let idp = nav(&b, &to).await;
    assert!(idp.status().is_redirection(), "{}", idp.status());
    let back = nav(&b, &location(&idp)).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), UNREACHABLE_PATH);
    // The same challenge again: the browser gets C's 401, not another redirect.
    let second = nav(&b, &page).await;
    assert_eq!(second.status(), 401);
    let challenge = second
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .expect("challenge")
        .to_owned();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
    assert!(challenge.contains("hwk"), "{challenge}");
    // Other pages keep working with the session.
    assert_eq!(nav(&b, &format!("{}/", chain.edge)).await.status(), 200);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn two_tabs_signing_in_at_once_both_complete() {
    let chain = Chain::start().await.expect("chain");
    let b = browser();
    let one = nav(&b, &format!("{}/one", chain.edge)).await;
    let two = nav(&b, &format!("{}/two", chain.edge)).await;
    let (c1, c2) = (
        login_cookie(&one).expect("1"),
        login_cookie(&two).expect("2"),
    );
    assert_ne!(
        pair(c1).split('=').next(),
        pair(c2).split('=').next(),
        "one cookie per sign-in"
    );
    // Tab 1 signs in with the password; tab 2 then passes the IdP silently.
    let callback1 = password_at_idp(&b, &chain.issuer, &location(&one)).await;
    let idp2 = nav(&b, &location(&two)).await;
    assert!(idp2.status().is_redirection());
    let callback2 = location(&idp2);
    // Both callbacks complete, the later first.
    let back2 = nav(&b, &callback2).await;
    assert_eq!(back2.status(), 302, "{:?}", back2.text().await);
    let back1 = nav(&b, &callback1).await;
    assert_eq!(back1.status(), 302, "{:?}", back1.text().await);
    assert_eq!(location(&back1), "/one");
    assert!(set_cookie(&back1, "baton-session").is_some());
    assert_eq!(nav(&b, &format!("{}/one", chain.edge)).await.status(), 200);
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn pending_sign_ins_are_bounded_per_browser() {
    let chain = Chain::start().await.expect("chain");
    let mut jar: Vec<String> = vec!["baton-login-deadbeef=garbage".into()];
    for i in 0..6 {
        let rsp = bare()
            .get(format!("{}/p{i}", chain.edge))
            .header(ACCEPT, "text/html")
            .header(COOKIE, jar.join("; "))
            .send()
            .await
            .expect("start");
        assert_eq!(rsp.status(), 302);
        let gone = cleared(&rsp);
        if i == 0 {
            assert_eq!(
                gone,
                ["baton-login-deadbeef"],
                "an unreadable one is cleared"
            );
        }
        jar.retain(|c| !gone.iter().any(|g| c.starts_with(&format!("{g}="))));
        jar.push(pair(login_cookie(&rsp).expect("new")));
        assert!(
            jar.len() <= baton::inbound::login::MAX_PENDING,
            "{i}: {jar:?}"
        );
    }
    assert_eq!(jar.len(), baton::inbound::login::MAX_PENDING);
    chain.stop().await;
}

/// A sidecar signing browsers in at a fake IdP whose ID tokens carry the nonce the test sets.
#[test_log::test(tokio::test)]
async fn an_id_token_with_another_nonce_is_refused_at_the_callback() {
    let idp = FakeIdp::start().await;
    let app = Upstream::start().await;
    let yaml = format!(
        "issuer: {iss}\naudience: {CLIENT_ID}\napp: \"{app}\"\n\
         routes:\n  - name: web\n    path: /\n    login: browser\n\
         login:\n  external_url: http://127.0.0.1:1/\n\
         outbound:\n  client:\n    client_id: {CLIENT_ID}\n    secret: {CLIENT_SECRET}\n",
        iss = idp.issuer(),
        app = app.addr,
    );
    let cfg = Config::from_yaml(&yaml, "sidecar-edge.yaml").expect("config");
    let listeners = Listeners::ephemeral(&cfg).await.expect("bind");
    let running = sidecar::start(cfg, listeners, None).await.expect("sidecar");
    assert!(running.ready(Duration::from_secs(10)).await, "keys loaded");
    let edge = format!("http://{}", running.inbound);

    let attempt = |nonce: Option<&'static str>| {
        let (idp, edge) = (&idp, edge.clone());
        async move {
            let start = nav(&bare(), &format!("{edge}/")).await;
            assert_eq!(start.status(), 302);
            let q = query(&location(&start));
            idp.id_nonce(match nonce {
                Some(n) => n,
                None => &q["nonce"],
            });
            bare()
                .get(format!(
                    "{edge}/_baton/callback?code=c&state={}",
                    q["state"]
                ))
                .header(COOKIE, pair(login_cookie(&start).expect("cookie")))
                .send()
                .await
                .expect("callback")
        }
    };
    let wrong = attempt(Some("someone-elses-nonce")).await;
    assert_eq!(wrong.status(), 400);
    assert!(set_cookie(&wrong, "baton-session").is_none(), "no session");
    let text = wrong.text().await.expect("body");
    assert!(text.contains("nonce"), "{text}");
    // The same flow with the sign-in's own nonce is accepted: the nonce is what failed.
    let right = attempt(None).await;
    assert_eq!(right.status(), 302, "{:?}", right.text().await);
    assert!(set_cookie(&right, "baton-session").is_some());
    running.stop().await;
}
