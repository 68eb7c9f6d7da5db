//! A cookie-keeping browser for the IdP's pages (does not follow redirects), and the steps of
//! a code flow through them: authorize, password, one-time code, redeem.

use super::idp::{ALICE_PASSWORD, REDIRECT, TestIdp, claims, hidden, pkce};
use baton::idp::totp;
use baton::jwt::unix_now;
use reqwest::StatusCode;
use serde_json::Value;

/// A browser: keeps cookies, does not follow redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

/// Where an authorization request ended.
#[derive(Debug)]
pub enum Step {
    /// A page (status, HTML).
    Page(StatusCode, String),
    /// Back at the client: the redirect's query.
    Back(Vec<(String, String)>),
}

impl Step {
    pub fn page(self) -> String {
        match self {
            Step::Page(StatusCode::OK, html) => html,
            other => panic!("expected a page, got {other:?}"),
        }
    }

    pub fn param(&self, k: &str) -> Option<String> {
        match self {
            Step::Back(q) => q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            Step::Page(..) => None,
        }
    }
}

/// One authorization request's PKCE verifier and its outcome.
pub struct Flow {
    pub verifier: String,
    pub step: Step,
}

impl Browser {
    pub fn new() -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .no_proxy()
            .build()
            .expect("client");
        Self { http, jar }
    }

    pub async fn step(rsp: reqwest::Response) -> Step {
        let status = rsp.status();
        if status == StatusCode::SEE_OTHER {
            let loc = rsp.headers()["location"]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert!(loc.starts_with(REDIRECT), "{loc}");
            let url = url::Url::parse(&loc).expect("url");
            return Step::Back(url.query_pairs().into_owned().collect());
        }
        Step::Page(status, rsp.text().await.expect("page"))
    }

    pub async fn authorize(&self, idp: &TestIdp, extra: &[(&str, &str)]) -> Flow {
        let (verifier, challenge) = pkce();
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st-9"),
            ("nonce", "n-9"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        q.extend_from_slice(extra);
        let rsp = self
            .http
            .get(format!("{}/authorize", idp.url))
            .query(&q)
            .send()
            .await
            .expect("authorize");
        let step = Self::step(rsp).await;
        Flow { verifier, step }
    }

    pub async fn post(
        &self,
        idp: &TestIdp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", idp.url))
            .form(form)
            .send()
            .await
            .expect("post")
    }

    pub async fn password(&self, idp: &TestIdp, html: &str, user: &str, pw: &str) -> Step {
        let rsp = self
            .post(
                idp,
                "/login",
                &[
                    ("request", &hidden(html, "request")),
                    ("username", user),
                    ("password", pw),
                ],
            )
            .await;
        if let Some(c) = rsp.headers().get("set-cookie") {
            let c = c.to_str().expect("ascii");
            assert!(
                c.starts_with("baton-idp=") && c.contains("HttpOnly") && c.contains("SameSite=Lax"),
                "{c}"
            );
        }
        Self::step(rsp).await
    }

    pub async fn code(&self, idp: &TestIdp, html: &str, code: &str) -> Step {
        let form = [
            ("request", hidden(html, "request")),
            ("code", code.to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Self::step(self.post(idp, "/otp", &form).await).await
    }
}

/// Exchanges the code a flow ended with; returns the token response.
pub async fn tokens(idp: &TestIdp, flow: &Flow) -> Value {
    assert_eq!(flow.step.param("state").as_deref(), Some("st-9"));
    let code = flow.step.param("code").expect("a code");
    redeem(idp, &code, &flow.verifier).await
}

pub async fn redeem(idp: &TestIdp, code: &str, verifier: &str) -> Value {
    let (st, body) = idp
        .token(
            "service-a",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

pub fn alice_code() -> String {
    let idp_cfg = baton::idp::Config::demo("http://x", std::env::temp_dir());
    let secret = idp_cfg.users["alice"]
        .totp_secret
        .clone()
        .expect("alice has a TOTP secret");
    totp::current(&secret, unix_now()).expect("code")
}

pub fn acr(tokens: &Value) -> (Value, Value) {
    let t = claims(tokens["access_token"].as_str().expect("access token"));
    let i = claims(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(
        (&t["acr"], &t["amr"]),
        (&i["acr"], &i["amr"]),
        "ID and access token agree"
    );
    assert!(t["auth_time"].as_u64().is_some_and(|a| a <= unix_now()));
    (t["acr"].clone(), t["amr"].clone())
}

/// Signs `browser` in as alice with a password; returns the tokens.
pub async fn sign_in(idp: &TestIdp, browser: &Browser) -> Value {
    let flow = browser.authorize(idp, &[]).await;
    let html = flow.step.page();
    let step = browser.password(idp, &html, "alice", ALICE_PASSWORD).await;
    tokens(
        idp,
        &Flow {
            verifier: flow.verifier,
            step,
        },
    )
    .await
}
