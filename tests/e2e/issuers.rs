//! e2e: one sidecar trusting baton-idp and a foreign issuer at once (`issuers:`). Each issuer's
//! tokens pass only on the routes that name it; a token claiming one issuer but signed with the
//! other's key is refused; an `iss` spelt another way is refused before any key fetch; one
//! issuer's keys unreachable leaves the other working; a foreign token's mapped claims reach the
//! route rules and the app, and the claims only baton-idp asserts never do.

use crate::support::fake_idp::FakeIdp;
use crate::support::idp::{self as test_idp, TestIdp};
use crate::support::tokens::{access, b64, claims, es256_raw, with};
use crate::support::upstream::Upstream;
use baton::config::Config;
use baton::inbound::{self, Inbound};
use baton::jwt::Algorithm;
use baton::jwt::jwks::Jwks;
use baton::jwt::keys::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

const AUD: &str = "service-b";

/// The sidecar's config: `primary` (baton's IdP) and `corp` (a Keycloak-like issuer whose access
/// tokens are typed `JWT` and carry roles under `realm_access.roles`).
fn config(primary: &str, corp: &str, app: &Upstream) -> Config {
    let yaml = format!(
        r#"
issuer: {primary}
audience: {AUD}
app: "{app}"
jwks: {{retry: 50ms, fetch_timeout: 2s}}
issuers:
  - name: corp
    issuer: {corp}
    audiences: [api://{AUD}, {AUD}]
    algorithms: [ES256]
    typ: jwt
    claims:
      roles: realm_access.roles
routes:
  - {{name: ops, path: /ops, issuers: [corp], claims: [{{claim: roles, contains: admin}}]}}
  - {{name: both, path: /both, issuers: [primary, corp]}}
  - {{name: granted, path: /granted, issuers: [primary, corp], claims: [{{claim: grants, contains: {AUD}}}]}}
  - {{name: api, path: /api}}
outbound: {{client: {{client_id: {AUD}, secret: test-only}}}}
"#,
        app = app.addr,
    );
    Config::from_yaml(&yaml, "sidecar.yaml").expect("test config")
}

/// The inbound listener of a sidecar with both issuers, serving until the test ends.
struct Sidecar {
    addr: SocketAddr,
    primary: Arc<Jwks>,
    corp: Arc<Jwks>,
    metrics: Arc<baton::telemetry::Metrics>,
    http: reqwest::Client,
}

impl Sidecar {
    /// Starts it; `foreign` names the foreign issuer whose key set the test watches.
    async fn start(cfg: &Config, foreign: &str) -> Sidecar {
        let parts = crate::support::sidecar::inbound(cfg);
        let corp = parts
            .state
            .foreign_jwks(foreign)
            .expect("corp has a key set")
            .clone();
        let state: Arc<Inbound> = Arc::new(parts.state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(inbound::serve(state, listener, std::future::pending()));
        Sidecar {
            addr,
            primary: parts.jwks,
            corp,
            metrics: parts.metrics,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    async fn both_ready(self) -> Sidecar {
        crate::support::sidecar::keys_loaded(&self.primary).await;
        crate::support::sidecar::keys_loaded(&self.corp).await;
        self
    }

    async fn call(&self, path: &str, token: &str) -> (u16, String) {
        let rsp = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .send()
            .await
            .expect("response");
        let status = rsp.status().as_u16();
        (status, rsp.text().await.unwrap_or_default())
    }

    fn jwks_errors(&self) -> u64 {
        self.metrics
            .jwks_fetches
            .get_or_create(&baton::telemetry::Outcome { outcome: "error" })
            .get()
    }
}

/// A corp user's access token as Keycloak shapes one: `typ: JWT`, roles nested.
fn corp_claims(issuer: &str, roles: &[&str]) -> serde_json::Map<String, Value> {
    let now = baton::jwt::unix_now();
    json!({
        "iss": issuer, "aud": ["account", format!("api://{AUD}")], "sub": "carol",
        "typ": "Bearer", "azp": "portal", "iat": now, "exp": now + 300,
        "realm_access": {"roles": roles},
    })
    .as_object()
    .cloned()
    .expect("object")
}

fn corp_token(key: &SigningKey, claims: &serde_json::Map<String, Value>) -> String {
    key.sign("JWT", claims).expect("sign")
}

/// A token over a hand-written payload (duplicate members and all), signed by the ES256 `key`.
fn raw_payload(key: &SigningKey, typ: &str, payload: &str) -> String {
    let secret = p256::ecdsa::SigningKey::from_pkcs8_pem(key.to_pem()).expect("ES256 key");
    let header = format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{}"}}"#, key.kid());
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig: p256::ecdsa::Signature = secret.sign(message.as_bytes());
    format!("{message}.{}", b64(&sig.to_bytes()))
}

/// The claims the app received with its last request.
fn app_claims(app: &Upstream) -> Value {
    let seen = app.last().expect("the app got a request");
    let header = seen.headers["x-baton-claims"].to_str().expect("ascii");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// baton-idp as the primary issuer: a service token for service-b from client_credentials.
async fn baton_token(idp: &TestIdp) -> String {
    let (status, body) = idp
        .token("service-a", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

#[test_log::test(tokio::test)]
async fn each_issuers_tokens_pass_only_on_the_routes_that_name_it() {
    let idp = test_idp::start().await;
    let corp_key = SigningKey::generate(Algorithm::ES256).expect("key");
    let corp = FakeIdp::start(&[&corp_key]).await;
    let app = Upstream::start().await;
    let baton = Sidecar::start(&config(&idp.url, &corp.issuer, &app), "corp")
        .await
        .both_ready()
        .await;

    let service = baton_token(&idp).await;
    let admin = corp_token(&corp_key, &corp_claims(&corp.issuer, &["admin", "user"]));
    let user = corp_token(&corp_key, &corp_claims(&corp.issuer, &["user"]));

    // baton-idp's token: every route that does not name issuers, and those naming primary.
    assert_eq!(baton.call("/api/x", &service).await.0, 200);
    assert_eq!(baton.call("/both", &service).await.0, 200);
    let (status, body) = baton.call("/ops", &service).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not accepted on this route"), "{body}");

    // corp's token: only where corp is named; the route rule reads the mapped `roles`.
    assert_eq!(baton.call("/ops", &admin).await.0, 200);
    let seen = app_claims(&app);
    assert_eq!(seen["roles"], json!(["admin", "user"]));
    assert_eq!(seen["iss"], json!(corp.issuer));
    assert_eq!(baton.call("/both", &admin).await.0, 200);
    let (status, body) = baton.call("/api/x", &admin).await;
    assert_eq!(
        status, 401,
        "a route naming no issuer is the primary's: {body}"
    );
    let (status, body) = baton.call("/ops", &user).await;
    assert_eq!(status, 403, "mapped roles without admin: {body}");

    // corp's token for another audience, or typed as an ID token, is refused.
    let elsewhere = with(
        corp_claims(&corp.issuer, &["admin"]),
        json!({"aud": "service-c"}),
    );
    assert_eq!(
        baton
            .call("/ops", &corp_token(&corp_key, &elsewhere))
            .await
            .0,
        401
    );
    let id_token = with(
        corp_claims(&corp.issuer, &["admin"]),
        json!({"typ": "ID", "nonce": "n-1"}),
    );
    assert_eq!(
        baton
            .call("/ops", &corp_token(&corp_key, &id_token))
            .await
            .0,
        401
    );
    assert_eq!(
        app.requests(),
        4,
        "only the four admitted requests reached the app"
    );
}

#[test_log::test(tokio::test)]
async fn a_foreign_token_cannot_bring_claims_only_baton_idp_asserts() {
    let idp = test_idp::start().await;
    let corp_key = SigningKey::generate(Algorithm::ES256).expect("key");
    let corp = FakeIdp::start(&[&corp_key]).await;
    let app = Upstream::start().await;
    let baton = Sidecar::start(&config(&idp.url, &corp.issuer, &app), "corp")
        .await
        .both_ready()
        .await;
    // A corp token whose user-editable attributes were mapped to baton's own claim names, and a
    // top-level `roles` the mapping does not come from.
    let forged = with(
        corp_claims(&corp.issuer, &["user"]),
        json!({
            "grants": [AUD], "act": {"sub": "service-a"}, "may_act": {"sub": "mallory"},
            "roles": ["admin"],
        }),
    );
    let token = corp_token(&corp_key, &forged);
    let (status, body) = baton.call("/granted", &token).await;
    assert_eq!(status, 403, "grants from corp are not grants: {body}");
    let (status, body) = baton.call("/ops", &token).await;
    assert_eq!(
        status, 403,
        "roles come from realm_access.roles only: {body}"
    );
    assert_eq!(baton.call("/both", &token).await.0, 200);
    let seen = app_claims(&app);
    for owned in ["grants", "act", "may_act"] {
        assert!(seen.get(owned).is_none(), "{owned} reached the app: {seen}");
    }
    assert_eq!(seen["roles"], json!(["user"]));
    // baton-idp's own exchanged token keeps its grants on the same route.
    let user = idp.login("openid profile").await;
    let subject = user["access_token"].as_str().expect("token");
    let (status, to_b) = idp
        .exchange("service-a", subject, &[("audience", AUD)])
        .await;
    assert_eq!(status, 200, "{to_b}");
    let exchanged = to_b["access_token"].as_str().expect("token");
    let (status, body) = baton.call("/granted", exchanged).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        app_claims(&app)["act"].is_object(),
        "baton-idp's act passes"
    );
}

/// Two issuers the test holds the keys of: `a` primary, `b` foreign (typed `at+jwt`).
struct Pair {
    a_key: SigningKey,
    b_key: SigningKey,
    a: FakeIdp,
    b: FakeIdp,
    app: Upstream,
}

async fn pair() -> Pair {
    let a_key = SigningKey::generate(Algorithm::ES256).expect("key");
    let b_key = SigningKey::generate(Algorithm::ES256).expect("key");
    let a = FakeIdp::start(&[&a_key]).await;
    let b = FakeIdp::start(&[&b_key]).await;
    let app = Upstream::start().await;
    Pair {
        a_key,
        b_key,
        a,
        b,
        app,
    }
}

fn pair_config(p: &Pair, kid_cooldown: &str) -> Config {
    let yaml = format!(
        r#"
issuer: {a}
audience: {AUD}
app: "{app}"
jwks: {{retry: 50ms, fetch_timeout: 2s, kid_cooldown: {kid_cooldown}}}
issuers:
  - {{name: b, issuer: {b}}}
routes:
  - {{name: any, path: /, issuers: [primary, b]}}
outbound: {{client: {{client_id: {AUD}, secret: test-only}}}}
"#,
        a = p.a.issuer,
        b = p.b.issuer,
        app = p.app.addr,
    );
    Config::from_yaml(&yaml, "sidecar.yaml").expect("test config")
}

#[test_log::test(tokio::test)]
async fn a_token_claiming_one_issuer_signed_with_the_others_key_is_refused() {
    let p = pair().await;
    let baton = Sidecar::start(&pair_config(&p, "1h"), "b")
        .await
        .both_ready()
        .await;
    let (a_claims, b_claims) = (claims(&p.a.issuer, AUD), claims(&p.b.issuer, AUD));
    assert_eq!(baton.call("/", &access(&p.a_key, &a_claims)).await.0, 200);
    assert_eq!(baton.call("/", &access(&p.b_key, &b_claims)).await.0, 200);
    let fetches = (p.a.jwks_fetches(), p.b.jwks_fetches());
    for (key, claims, kid) in [
        // b's key, claiming a: with b's own kid, then with a's kid.
        (&p.b_key, &a_claims, p.b_key.kid()),
        (&p.b_key, &a_claims, p.a_key.kid()),
        (&p.a_key, &b_claims, p.a_key.kid()),
        (&p.a_key, &b_claims, p.b_key.kid()),
    ] {
        let header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#);
        let (status, body) = baton.call("/", &es256_raw(key, &header, claims)).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("invalid_token"), "{body}");
    }
    assert_eq!(p.app.requests(), 2);
    // An unknown kid at each issuer refetches that issuer's keys at most once per cooldown, and
    // never the other's.
    let after = (p.a.jwks_fetches(), p.b.jwks_fetches());
    assert!(
        after.0 <= fetches.0 + 1 && after.1 <= fetches.1 + 1,
        "{fetches:?} → {after:?}"
    );
}

#[test_log::test(tokio::test)]
async fn an_issuer_spelt_another_way_is_refused_before_any_key_fetch() {
    let p = pair().await;
    let baton = Sidecar::start(&pair_config(&p, "1ms"), "b")
        .await
        .both_ready()
        .await;
    let fetches = (p.a.jwks_fetches(), p.b.jwks_fetches());
    let b_upper = p.b.issuer.replace("http://", "HTTP://");
    let spellings = [
        format!("{}/", p.b.issuer),
        b_upper,
        format!("{} ", p.b.issuer),
        "https://unknown.example".to_owned(),
    ];
    for iss in &spellings {
        // An unknown kid as well: a verifier that looked for keys would fetch them.
        let header = r#"{"alg":"ES256","typ":"at+jwt","kid":"nowhere"}"#;
        let c = with(claims(&p.b.issuer, AUD), json!({"iss": iss}));
        let (status, body) = baton.call("/", &es256_raw(&p.b_key, header, &c)).await;
        assert_eq!(status, 401, "{iss}: {body}");
        assert!(body.contains("issuer mismatch"), "{iss}: {body}");
    }
    // Two `iss` members (the one a lax parser keeps last is trusted): refused as malformed.
    let now = baton::jwt::unix_now();
    let twice = format!(
        r#"{{"iss":"https://unknown.example","iss":"{b}","aud":"{AUD}","sub":"x","iat":{now},"exp":{}}}"#,
        now + 300,
        b = p.b.issuer
    );
    let (status, body) = baton
        .call("/", &raw_payload(&p.b_key, "at+jwt", &twice))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("malformed"), "{body}");
    // No `iss` at all.
    let none = with(claims(&p.b.issuer, AUD), json!({"iss": null}));
    assert_eq!(baton.call("/", &access(&p.b_key, &none)).await.0, 401);
    assert_eq!(
        (p.a.jwks_fetches(), p.b.jwks_fetches()),
        fetches,
        "no issuer's keys were fetched"
    );
    assert_eq!(p.app.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn one_issuers_keys_unreachable_leaves_the_other_working() {
    let mut p = pair().await;
    // b's discovery answers 503 from the start: its keys never load.
    p.b.set_up(false);
    let baton = Sidecar::start(&pair_config(&p, "1ms"), "b").await;
    crate::support::sidecar::keys_loaded(&baton.primary).await;
    let a_token = access(&p.a_key, &claims(&p.a.issuer, AUD));
    let b_token = access(&p.b_key, &claims(&p.b.issuer, AUD));
    assert_eq!(baton.call("/", &a_token).await.0, 200);
    let (status, body) = baton.call("/", &b_token).await;
    assert_eq!(status, 503, "b's keys are unavailable: {body}");
    assert!(!baton.corp.ready() && baton.primary.ready());

    // b comes up: its own refresh loop loads its keys.
    p.b.set_up(true);
    crate::support::sidecar::keys_loaded(&baton.corp).await;
    assert_eq!(baton.call("/", &b_token).await.0, 200);

    // b goes away for good: its last-good keys keep verifying; an unknown kid there fails its
    // refetch and is refused, and a's tokens are untouched by either.
    p.b.stop().await;
    let errors = baton.jwks_errors();
    let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
    let unknown = access(&stranger, &claims(&p.b.issuer, AUD));
    let a_before = p.a.jwks_fetches();
    assert_eq!(baton.call("/", &unknown).await.0, 401);
    assert!(baton.jwks_errors() > errors, "the refetch at b failed");
    let fresh_b = access(&p.b_key, &claims(&p.b.issuer, AUD));
    assert_eq!(baton.call("/", &fresh_b).await.0, 200);
    let fresh_a = access(&p.a_key, &claims(&p.a.issuer, AUD));
    assert_eq!(baton.call("/", &fresh_a).await.0, 200);
    assert_eq!(p.a.jwks_fetches(), a_before, "a was not asked for b's kid");
}
