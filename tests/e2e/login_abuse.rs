//! The IdP's login pages under abuse: guessing passwords and one-time codes across fresh
//! `/authorize` requests and client addresses (stopped by the account and network counters,
//! while the user's own browser still signs in), login CSRF (a cross-site POST with the
//! attacker's credentials), request objects, and the caps on what `/authorize` keeps.

use crate::support::idp::{ALICE_PASSWORD, REDIRECT, TestIdp, claims, hidden, pkce, start_with};
use baton::idp::throttle::Rule;
use baton::idp::totp;
use baton::jwt::unix_now;
use reqwest::StatusCode;
use std::net::{IpAddr, Ipv4Addr};

const HOUR: u64 = 3_600;

/// A rule with `free` failures, then an hour's wait: nothing in a test outlasts it.
fn strict(free: u32) -> Rule {
    Rule {
        free,
        first_wait: HOUR,
        max_wait: 24 * HOUR,
        forget_after: 7 * 24 * HOUR,
    }
}

/// An IdP whose account counters allow `account` free failures and network counters `network`.
async fn idp(account: u32, network: u32) -> TestIdp {
    start_with(|cfg| {
        cfg.login.throttle.account = strict(account);
        cfg.login.throttle.device = strict(account);
        cfg.login.throttle.network = strict(network);
    })
    .await
}

/// One browser tab: its own cookies, connecting from a loopback address of its own.
struct Tab {
    http: reqwest::Client,
}

impl Tab {
    fn from(last: [u8; 3]) -> Tab {
        let ip = IpAddr::V4(Ipv4Addr::new(127, last[0], last[1], last[2]));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .local_address(ip)
            .no_proxy()
            .build()
            .expect("client");
        Tab { http }
    }

    /// GET /authorize as service-a; `extra` adds parameters or replaces the defaults.
    async fn authorize(&self, idp: &TestIdp, extra: &[(&str, &str)]) -> reqwest::Response {
        let (_, challenge) = pkce();
        let mut q: Vec<(&str, &str)> = [
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .collect();
        q.extend_from_slice(extra);
        self.http
            .get(format!("{}/authorize", idp.url))
            .query(&q)
            .send()
            .await
            .expect("authorize")
    }

    /// The sealed request of a fresh login form.
    async fn form(&self, idp: &TestIdp, extra: &[(&str, &str)]) -> String {
        let rsp = self.authorize(idp, extra).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        hidden(&rsp.text().await.expect("page"), "request")
    }

    async fn post(
        &self,
        idp: &TestIdp,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", idp.url)).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("post")
    }

    async fn password(
        &self,
        idp: &TestIdp,
        sealed: &str,
        user: &str,
        pw: &str,
    ) -> reqwest::Response {
        let form = [("request", sealed), ("username", user), ("password", pw)];
        self.post(idp, "/login", &form, &[]).await
    }
}

fn location(rsp: &reqwest::Response) -> Option<url::Url> {
    rsp.headers()
        .get("location")
        .and_then(|l| url::Url::parse(l.to_str().ok()?).ok())
}

fn param(url: &url::Url, k: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

fn sets_cookies(rsp: &reqwest::Response) -> bool {
    rsp.headers().contains_key("set-cookie")
}

/// A refusal before any check: 429 with a `Retry-After` of about the configured wait, no
/// session, no redirect.
fn throttled(rsp: &reqwest::Response) {
    assert_eq!(rsp.status(), StatusCode::TOO_MANY_REQUESTS);
    let after: u64 = rsp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((HOUR - 60..=HOUR).contains(&after), "{after}");
    assert!(!sets_cookies(rsp) && location(rsp).is_none());
}

#[test_log::test(tokio::test)]
async fn password_guessing_is_stopped_by_the_account_counter_across_fresh_requests() {
    let idp = idp(3, 1_000).await;
    // Alice signs in at home once: that browser is now one she proved her password in.
    let home = Tab::from([0, 0, 1]);
    let sealed = home.form(&idp, &[]).await;
    let rsp = home.password(&idp, &sealed, "alice", ALICE_PASSWORD).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);

    // Each guess from a fresh tab (a new /authorize, new cookies) and a new address. An unknown
    // username is throttled exactly like a real one: the answers do not tell them apart.
    for (n, user) in [(1u8, "alice"), (2, "nobody")] {
        for i in 0..3u8 {
            let tab = Tab::from([n, 1, i]);
            let sealed = tab.form(&idp, &[]).await;
            let rsp = tab.password(&idp, &sealed, user, "guess").await;
            assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED, "{user} guess {i}");
        }
        // The fourth guess waits, unchecked; so does the right password from a stranger.
        for (i, pw) in [(3u8, "guess"), (4, ALICE_PASSWORD)] {
            let tab = Tab::from([n, 1, i]);
            let sealed = tab.form(&idp, &[]).await;
            throttled(&tab.password(&idp, &sealed, user, pw).await);
        }
    }
    // Alice's own browser has its own counter: she still signs in.
    let sealed = home.form(&idp, &[("prompt", "login")]).await;
    let rsp = home.password(&idp, &sealed, "alice", ALICE_PASSWORD).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    let back = location(&rsp).expect("redirect");
    assert!(param(&back, "code").is_some(), "{back}");
}

#[test_log::test(tokio::test)]
async fn one_client_spraying_many_accounts_is_stopped_by_its_network_counter() {
    let idp = idp(100, 4).await;
    // Alice has signed in from this address before (a shared NAT, say).
    let home = Tab::from([3, 3, 1]);
    let sealed = home.form(&idp, &[]).await;
    let rsp = home.password(&idp, &sealed, "alice", ALICE_PASSWORD).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    // One address, a fresh tab (new cookies, new /authorize) for each guess.
    let sprayer = || Tab::from([3, 3, 1]);
    for i in 0..4u8 {
        let tab = sprayer();
        let sealed = tab.form(&idp, &[]).await;
        let rsp = tab
            .password(&idp, &sealed, &format!("user-{i}"), "Summer2024!")
            .await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    }
    let tab = sprayer();
    let sealed = tab.form(&idp, &[]).await;
    throttled(&tab.password(&idp, &sealed, "user-9", "Summer2024!").await);
    // Even the right password waits from a new browser on that network; alice's own browser
    // there does not, and another network is not affected.
    let tab = sprayer();
    let sealed = tab.form(&idp, &[]).await;
    throttled(
        &tab.password(&idp, &sealed, "bob", "looking-glass-demo")
            .await,
    );
    let sealed = home.form(&idp, &[("prompt", "login")]).await;
    let rsp = home.password(&idp, &sealed, "alice", ALICE_PASSWORD).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    let other = Tab::from([3, 4, 0]);
    let sealed = other.form(&idp, &[]).await;
    let rsp = other
        .password(&idp, &sealed, "bob", "looking-glass-demo")
        .await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
}

fn alice_code(at: u64) -> String {
    let cfg = baton::idp::Config::demo("http://x", std::env::temp_dir());
    let secret = cfg.users["alice"].totp_secret.clone().expect("totp");
    totp::current(&secret, at).expect("code")
}

/// A six-digit code that is none of alice's three valid ones now.
fn wrong_code(now: u64) -> String {
    let valid: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|&t| alice_code(t))
        .collect();
    (0..)
        .map(|i: u32| format!("{:06}", (123_456 + i * 7_919) % 1_000_000))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

/// From a fresh `/authorize` asking for `mfa`: the password, then the code form's request.
async fn to_code_page(tab: &Tab, idp: &TestIdp, extra: &[(&str, &str)]) -> String {
    let mut q = vec![("acr_values", "mfa")];
    q.extend_from_slice(extra);
    let sealed = tab.form(idp, &q).await;
    let rsp = tab.password(idp, &sealed, "alice", ALICE_PASSWORD).await;
    assert_eq!(rsp.status(), StatusCode::OK, "the code page");
    let html = rsp.text().await.expect("page");
    assert!(html.contains(r#"name="code""#));
    hidden(&html, "request")
}

async fn code(tab: &Tab, idp: &TestIdp, sealed: &str, code: &str) -> reqwest::Response {
    tab.post(idp, "/otp", &[("request", sealed), ("code", code)], &[])
        .await
}

#[test_log::test(tokio::test)]
async fn one_time_code_guessing_is_stopped_by_the_account_counter_across_fresh_requests() {
    let idp = idp(3, 1_000).await;
    // Alice completes mfa at home once.
    let home = Tab::from([0, 5, 1]);
    let sealed = to_code_page(&home, &idp, &[]).await;
    let rsp = code(&home, &idp, &sealed, &alice_code(unix_now())).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);

    // The attacker knows the password; each round is a fresh tab, a fresh /authorize.
    for i in 0..3u8 {
        let tab = Tab::from([5, 5, i]);
        let sealed = to_code_page(&tab, &idp, &[]).await;
        let rsp = code(&tab, &idp, &sealed, &wrong_code(unix_now())).await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let tab = Tab::from([5, 5, 3]);
    let sealed = to_code_page(&tab, &idp, &[]).await;
    throttled(&code(&tab, &idp, &sealed, &wrong_code(unix_now())).await);
    let tab = Tab::from([5, 5, 4]);
    let sealed = to_code_page(&tab, &idp, &[]).await;
    throttled(&code(&tab, &idp, &sealed, &alice_code(unix_now() - 30)).await);

    // Alice's browser proved the code before: it still passes (a code of the next step, as the
    // current one was used).
    let sealed = to_code_page(&home, &idp, &[("max_age", "0")]).await;
    let rsp = code(&home, &idp, &sealed, &alice_code(unix_now() + 30)).await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert!(location(&rsp).is_some_and(|l| param(&l, "code").is_some()));
}

#[test_log::test(tokio::test)]
async fn a_cross_site_login_post_is_refused_and_the_victims_session_is_untouched() {
    let idp = idp(10, 1_000).await;
    // The victim is signed in as alice.
    let victim = Tab::from([0, 7, 1]);
    let sealed = victim.form(&idp, &[]).await;
    let rsp = victim
        .password(&idp, &sealed, "alice", ALICE_PASSWORD)
        .await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    // The attacker fetches a login form of their own and fills in their own account.
    let attacker = Tab::from([0, 7, 2]);
    let theirs = attacker.form(&idp, &[]).await;
    let form = [
        ("request", theirs.as_str()),
        ("username", "bob"),
        ("password", "looking-glass-demo"),
    ];
    // Their page makes the victim's browser post it, in every way a browser might send it.
    let spellings: &[&[(&str, &str)]] = &[
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[("origin", "https://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://sub.127.0.0.1"),
        ],
        &[("origin", "null")],
        &[
            ("origin", idp.url.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        // Without the headers (an old browser) only the cookie binding refuses it: the
        // victim's pre-login cookie is not the one the attacker's form was sealed for.
        &[],
    ];
    for headers in spellings {
        let rsp = victim.post(&idp, "/login", &form, headers).await;
        assert!(
            matches!(
                rsp.status(),
                StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
            ),
            "{headers:?}: {}",
            rsp.status()
        );
        assert!(
            !sets_cookies(&rsp) && location(&rsp).is_none(),
            "{headers:?}"
        );
    }
    // Two Origin headers, one of them the issuer's.
    let rsp = victim
        .http
        .post(format!("{}/login", idp.url))
        .header("origin", &idp.url)
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);
    // Even with the cookie the form was sealed for (one a sibling site planted, say), the
    // origin check alone refuses it; from the IdP's own page the same post goes through.
    for headers in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
    ] {
        let rsp = attacker.post(&idp, "/login", &form, &headers).await;
        assert_eq!(rsp.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    let own = [
        ("origin", idp.url.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let rsp = attacker.post(&idp, "/login", &form, &own).await;
    assert_eq!(
        rsp.status(),
        StatusCode::SEE_OTHER,
        "bob in bob's own browser"
    );
    // A SameSite=Lax cookie is not sent on a cross-site POST at all: refused too.
    let bare = Tab::from([0, 7, 3]);
    let rsp = bare.post(&idp, "/login", &form, &[]).await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    // The code form is guarded the same way.
    let otp = [("request", theirs.as_str()), ("code", "123456")];
    let rsp = victim
        .post(&idp, "/otp", &otp, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);

    // The victim's next sign-in still yields alice's tokens.
    let (verifier, challenge) = pkce();
    let rsp = victim
        .authorize(&idp, &[("code_challenge", challenge.as_str())])
        .await;
    assert_eq!(
        rsp.status(),
        StatusCode::SEE_OTHER,
        "signed in through the session"
    );
    let code = param(&location(&rsp).expect("redirect"), "code").expect("code");
    let tokens = crate::support::browser::redeem(&idp, &code, &verifier).await;
    let id = claims(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(id["sub"], "alice");
}

#[test_log::test(tokio::test)]
async fn request_objects_are_refused_with_the_oidc_errors() {
    let idp = idp(10, 1_000).await;
    let tab = Tab::from([0, 9, 1]);
    for (extra, error) in [
        (
            [
                ("prompt", "none"),
                ("request_uri", "https://evil.example/req.jwt"),
            ],
            "request_uri_not_supported",
        ),
        (
            [("prompt", "login"), ("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
    ] {
        let rsp = tab.authorize(&idp, &extra).await;
        assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
        let back = location(&rsp).expect("redirect");
        assert!(back.as_str().starts_with(REDIRECT));
        assert_eq!(param(&back, "error").as_deref(), Some(error));
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
        assert_eq!(param(&back, "code"), None);
    }
    // With a redirect URI that is not registered, nothing is sent anywhere.
    let rsp = tab
        .http
        .get(format!("{}/authorize", idp.url))
        .query(&[
            ("client_id", "service-a"),
            ("redirect_uri", "https://evil.example/cb"),
            ("request_uri", "https://evil.example/req.jwt"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert!(location(&rsp).is_none());
    let meta: serde_json::Value = tab
        .http
        .get(format!("{}/.well-known/openid-configuration", idp.url))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["request_parameter_supported"], false);
    assert_eq!(meta["request_uri_parameter_supported"], false);
}

#[test_log::test(tokio::test)]
async fn authorize_caps_every_parameter_it_keeps() {
    let idp = idp(10, 1_000).await;
    let tab = Tab::from([0, 11, 1]);
    let long = |n: usize| "a".repeat(n);
    // The reported case: a scope of 60 KB, each value its own string once.
    let scope_flood = "a ".repeat(29_000);
    let too_many = vec!["openid"; 33].join(" ");
    let (s513, n257, r513, h257) = (long(513), long(257), long(513), long(257));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("scope", "openid email")], "invalid_scope"),
        (vec![("scope", "openid OPENID")], "invalid_scope"),
        (vec![("scope", &scope_flood)], "invalid_request"),
        (vec![("scope", &too_many)], "invalid_request"),
        (vec![("nonce", &n257)], "invalid_request"),
        (vec![("nonce", "a\u{0}b")], "invalid_request"),
        (vec![("login_hint", &h257)], "invalid_request"),
        (vec![("acr_values", &h257)], "invalid_request"),
        (vec![("prompt", &h257)], "invalid_request"),
        (vec![("resource", &r513)], "invalid_request"),
    ];
    for (extra, error) in &cases {
        let rsp = tab.authorize(&idp, extra).await;
        let back = location(&rsp).unwrap_or_else(|| panic!("{extra:?}: {}", rsp.status()));
        assert_eq!(param(&back, "error").as_deref(), Some(*error), "{extra:?}");
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    }
    let nine: Vec<(&str, &str)> = (0..9)
        .map(|_| ("resource", "https://builds.example/api"))
        .collect();
    let back = location(&tab.authorize(&idp, &nine).await).expect("redirect");
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    // A state that is too long or not printable ASCII is not echoed back.
    for bad in [s513.as_str(), "é", "a\nb"] {
        let back = location(&tab.authorize(&idp, &[("state", bad)]).await).expect("redirect");
        assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
        assert_eq!(param(&back, "state"), None, "{bad:?}");
    }

    // The largest request that is accepted fits the sealed form.
    let rsp = tab.authorize(&idp, &maximal()).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let sealed = hidden(&rsp.text().await.expect("page"), "request");
    assert!(
        sealed.len() <= baton::idp::pending::MAX_SEALED,
        "{}",
        sealed.len()
    );
}

/// `/authorize` parameters at every cap (`state` replaces the default one): what the memory
/// tests send a thousand times.
pub fn maximal() -> Vec<(&'static str, &'static str)> {
    use std::sync::OnceLock;
    static LONG: OnceLock<(String, String, String)> = OnceLock::new();
    let (state, nonce, hint) = LONG.get_or_init(|| {
        // `"` and `\` double in the sealed JSON; `é` is two bytes: the worst of each.
        ("\"\\".repeat(256), "é\"".repeat(85), "ü".repeat(128))
    });
    vec![
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("login_hint", hint.as_str()),
        (
            "scope",
            "openid profile calendar.edit update:builds openid profile",
        ),
        ("resource", "https://builds.example/api"),
        ("resource", "https://calendar.example/api"),
        ("acr_values", "mfa pwd"),
    ]
}
