//! An in-process `baton-idp` on 127.0.0.1:0 with the demo config, plus small OAuth helpers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::idp::{self, Config, Idp};
use baton::jwt::Claims;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Demo password of `alice` in deploy/idp.yaml.
pub const ALICE_PASSWORD: &str = "wonderland-demo";
/// service-a's registered redirect URI.
pub const REDIRECT: &str = "http://127.0.0.1:8080/callback";
/// The token-exchange grant type.
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The access-token type URN.
pub const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A running IdP.
pub struct TestIdp {
    pub url: String,
    /// Its operator listener (`/metrics`), apart from the public `url`.
    pub admin: String,
    pub idp: Arc<Idp>,
    pub http: reqwest::Client,
}

/// The demo secret of a client.
pub fn secret(client: &str) -> String {
    format!("demo-secret-{client}")
}

/// Starts the demo IdP.
pub async fn start() -> TestIdp {
    start_with(|_| {}).await
}

/// Starts the demo IdP after `adjust` changes its config.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestIdp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let dir = std::env::temp_dir().join(format!(
        "baton-e2e-idp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut cfg = Config::demo(&url, dir);
    adjust(&mut cfg);
    let idp = Arc::new(Idp::new(cfg).expect("idp starts"));
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = format!("http://{}", admin_listener.local_addr().expect("addr"));
    tokio::spawn(idp::serve(idp.clone(), listener, std::future::pending()));
    tokio::spawn(idp::serve_admin(
        idp.clone(),
        admin_listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client");
    TestIdp {
        url,
        admin,
        idp,
        http,
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The claims of a JWT (unverified; tests verify separately where it matters).
pub fn claims(token: &str) -> Claims {
    baton::jwt::peek_claims(token).expect("a JWT")
}

/// The value of `<input name="{name}" value="…">` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle).expect("hidden field") + needle.len();
    html[start..start + html[start..].find('"').expect("closing quote")].to_owned()
}

/// The `name=value` of the pre-login cookie a login page set: the form is taken only with it.
pub fn login_cookie(rsp: &reqwest::Response) -> String {
    rsp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton-idp-login="))
        .and_then(|v| v.split(';').next())
        .expect("the login page sets the pre-login cookie")
        .to_owned()
}

impl TestIdp {
    /// GET /authorize as service-a with `challenge`, fill the form as alice, return the code.
    pub async fn code(&self, scope: &str, challenge: &str) -> String {
        self.code_with(scope, challenge, &[]).await
    }

    /// [`TestIdp::code`] with `extra` parameters on the authorization request.
    pub async fn code_with(&self, scope: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
        let rsp = self
            .http
            .get(format!("{}/authorize", self.url))
            .query(extra)
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("state", "st-1"),
                ("nonce", "n-1"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(rsp.status(), StatusCode::OK);
        let cookie = login_cookie(&rsp);
        let html = rsp.text().await.expect("page");
        let rsp = self
            .http
            .post(format!("{}/login", self.url))
            .header("cookie", cookie)
            .form(&[
                ("request", hidden(&html, "request").as_str()),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
        let loc = url::Url::parse(rsp.headers()["location"].to_str().expect("ascii")).expect("url");
        assert!(loc.as_str().starts_with(REDIRECT));
        let get = |k: &str| {
            loc.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(get("state").as_deref(), Some("st-1"));
        assert_eq!(get("iss").as_deref(), Some(self.url.as_str()));
        get("code").expect("code")
    }

    /// POST /token with Basic client authentication.
    pub async fn token(&self, client: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let rsp = self
            .http
            .post(format!("{}/token", self.url))
            .basic_auth(client, Some(secret(client)))
            .form(form)
            .send()
            .await
            .expect("token");
        let status = rsp.status();
        assert_eq!(rsp.headers()["cache-control"], "no-store");
        (status, rsp.json().await.expect("JSON body"))
    }

    /// POST /token with Basic client authentication and these `DPoP` headers.
    pub async fn token_dpop(
        &self,
        client: &str,
        form: &[(&str, &str)],
        proofs: &[&str],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/token", self.url))
            .basic_auth(client, Some(secret(client)))
            .form(form);
        for p in proofs {
            req = req.header("DPoP", *p);
        }
        let rsp = req.send().await.expect("token");
        let status = rsp.status();
        (status, rsp.json().await.expect("JSON body"))
    }

    /// A proof of `holder` for this IdP's token endpoint, now.
    pub fn token_proof(&self, holder: &baton::dpop::Holder) -> String {
        holder
            .proof(
                "POST",
                &format!("{}/token", self.url),
                None,
                None,
                baton::jwt::unix_now(),
            )
            .expect("proof")
    }

    /// Signs alice in at service-a (code + PKCE) and returns the token response.
    pub async fn login(&self, scope: &str) -> Value {
        let (verifier, challenge) = pkce();
        let code = self.code(scope, &challenge).await;
        let (status, body) = self
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
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Exchanges `subject` as `client` with extra parameters.
    pub async fn exchange(
        &self,
        client: &str,
        subject: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS),
        ];
        form.extend_from_slice(extra);
        self.token(client, &form).await
    }

    /// POST /introspect as `client`.
    pub async fn introspect(&self, client: &str, token: &str) -> Value {
        self.http
            .post(format!("{}/introspect", self.url))
            .basic_auth(client, Some(secret(client)))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("JSON")
    }

    /// The JWK set, as served.
    pub async fn jwks(&self) -> baton::jwt::keys::KeySet {
        let bytes = self
            .http
            .get(format!("{}/jwks", self.url))
            .send()
            .await
            .expect("jwks")
            .bytes()
            .await
            .expect("body");
        baton::jwt::keys::KeySet::from_jwks(
            &bytes,
            &[baton::jwt::Algorithm::ES256, baton::jwt::Algorithm::RS256],
        )
        .expect("jwks")
    }
}
