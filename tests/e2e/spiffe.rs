//! e2e: SPIFFE workload identity. A test trust domain (its JWT-SVID key made here, its bundle
//! and each workload's SVID written to files as a SPIRE agent and spiffe-helper would) whose
//! SVIDs authenticate clients at baton-idp (`jwt-spiffe`), and a sidecar that exchanges with
//! the SVID from its file.

use crate::support::idp::{self as support, ACCESS, EXCHANGE, TestIdp};
use crate::support::recorder::Upstream;
use crate::support::tokens;
use baton::config::Problems;
use baton::config::outbound::{RawOutbound, validate};
use baton::http::{Body, empty};
use baton::idp::config::{Client, ClientAuth, Spiffe};
use baton::jwt::keys::SigningKey;
use baton::jwt::{Algorithm, unix_now};
use baton::outbound::{self, Outbound};
use baton::spiffe::SpiffeId;
use baton::spiffe::bundle::{Bundle, Source};
use http::{Request, header};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TD: &str = "baton.test";
pub const OTHER_TD: &str = "other.test";
pub const SPIFFE_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// The SPIFFE ID of workload `sa` in namespace `demo` of `td`.
pub fn id(td: &str, sa: &str) -> String {
    format!("spiffe://{td}/ns/demo/sa/{sa}")
}

/// A scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "baton-e2e-spiffe-{name}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A trust domain's bundle as SPIRE publishes it: the JWT-SVID key, and an X.509 one that must
/// not count for JWT-SVIDs.
pub fn write_bundle(dir: &Path, td: &str, key: &SigningKey) -> PathBuf {
    let mut jwk = key.public_jwk();
    jwk["use"] = json!("jwt-svid");
    let x509 = SigningKey::generate(Algorithm::ES256).expect("key");
    let mut x509 = x509.public_jwk();
    x509["use"] = json!("x509-svid");
    let path = dir.join(format!("{td}.bundle.json"));
    let doc = json!({"keys": [jwk, x509], "spiffe_sequence": 1, "spiffe_refresh_hint": 300});
    std::fs::write(&path, doc.to_string()).expect("write bundle");
    path
}

/// A JWT-SVID for `sub`, addressed to `aud`, from `iat` to `exp`.
pub fn svid(key: &SigningKey, sub: &str, aud: Value, iat: u64, exp: u64) -> String {
    let claims = json!({"sub": sub, "aud": aud, "iat": iat, "exp": exp});
    key.sign("JWT", &claims).expect("sign")
}

/// A client registered by SPIFFE ID, allowed to exchange and to get its own tokens.
pub fn spiffe_client(name: &str, sid: &str) -> Client {
    Client {
        id: name.into(),
        name: None,
        auth: ClientAuth::Spiffe(SpiffeId::parse(sid).expect("SPIFFE ID")),
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![EXCHANGE.into(), "client_credentials".into()],
        scopes: vec![],
        default_audience: Some("service-c".into()),
        dpop_required: false,
        dpop_rebind: false,
    }
}

/// The IdP with both trust domains configured, service-b registered by its SPIFFE ID in
/// `baton.test`, and `svc-x` another workload of it; returns the IdP and each domain's key.
pub async fn idp(dir: &Path) -> (TestIdp, SigningKey, SigningKey) {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let other = SigningKey::generate(Algorithm::ES256).expect("key");
    let bundles = [
        (TD, write_bundle(dir, TD, &key)),
        (OTHER_TD, write_bundle(dir, OTHER_TD, &other)),
    ];
    let idp = support::start_with(|cfg| {
        let mut trust_domains = BTreeMap::new();
        for (td, path) in bundles {
            let algs = vec![Algorithm::ES256, Algorithm::RS256];
            let bundle = Bundle::new(Source::File(path), algs).expect("bundle");
            trust_domains.insert(td.to_owned(), bundle);
        }
        cfg.spiffe = Some(Spiffe {
            trust_domains,
            max_lifetime: 300,
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        });
        let b = cfg.clients.get_mut("service-b").expect("service-b");
        b.auth = ClientAuth::Spiffe(SpiffeId::parse(&id(TD, "service-b")).expect("id"));
        cfg.clients
            .insert("svc-x".into(), spiffe_client("svc-x", &id(TD, "svc-x")));
        cfg.clients.insert(
            "svc-other".into(),
            spiffe_client("svc-other", &id(OTHER_TD, "service-b")),
        );
    })
    .await;
    (idp, key, other)
}

/// A user token addressed to service-b: alice signed in at service-a, exchanged by service-a.
async fn token_for_b(idp: &TestIdp) -> String {
    let login = idp.login("openid").await;
    let user = login["access_token"].as_str().expect("token");
    let (st, body) = idp
        .exchange("service-a", user, &[("audience", "service-b")])
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

/// POST /token as a `jwt-spiffe` client with `assertion`, plus `extra`.
async fn exchange_with(
    idp: &TestIdp,
    subject: &str,
    assertion: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
        ("audience", "service-c"),
        ("client_assertion_type", SPIFFE_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    let rsp = idp
        .http
        .post(format!("{}/token", idp.url))
        .form(&form)
        .send()
        .await
        .expect("token");
    let status = rsp.status();
    (status, rsp.json().await.expect("JSON"))
}

#[test_log::test(tokio::test)]
async fn a_jwt_svid_authenticates_its_workload_and_nothing_else() {
    let dir = scratch("idp");
    let (idp, key, other) = idp(&dir).await;
    let subject = token_for_b(&idp).await;
    let now = unix_now();
    let (b, x) = (id(TD, "service-b"), id(TD, "svc-x"));
    let aud = json!(idp.url);
    let good = svid(&key, &b, aud.clone(), now, now + 300);

    let (st, body) = exchange_with(&idp, &subject, &good, &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = support::claims(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], "service-c");
    assert_eq!(claims["act"]["sub"], "service-b");
    // The same SVID again (agents cache SVIDs): no jti, no replay refusal on this path.
    let (st, body) = exchange_with(&idp, &subject, &good, &[("client_id", "service-b")]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The token endpoint as the one audience is fine too; a list holding it and another
    // service is not: whoever else the SVID was shown to could sign in here with it.
    let endpoint = json!([format!("{}/token", idp.url)]);
    let (st, _) = exchange_with(
        &idp,
        &subject,
        &svid(&key, &b, endpoint, now, now + 60),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let listed = json!(["someone-else", format!("{}/token", idp.url)]);
    let (st, body) =
        exchange_with(&idp, &subject, &svid(&key, &b, listed, now, now + 60), &[]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    let mut claims = Map::new();
    claims.insert("sub".into(), json!(b));
    claims.insert("aud".into(), aud.clone());
    claims.insert("exp".into(), json!(now + 60));
    let refused: Vec<(&str, String)> = vec![
        (
            "another trust domain's key, sub in this one",
            svid(&other, &b, aud.clone(), now, now + 60),
        ),
        ("expired", svid(&key, &b, aud.clone(), now - 600, now - 120)),
        (
            "wrong aud",
            svid(&key, &b, json!("https://elsewhere.example"), now, now + 60),
        ),
        (
            "aud only a prefix of the issuer",
            svid(&key, &b, json!(format!("{}/", idp.url)), now, now + 60),
        ),
        (
            "lifetime beyond max_lifetime",
            svid(&key, &b, aud.clone(), now, now + 3600),
        ),
        (
            "sub in upper case",
            svid(&key, &b.to_uppercase(), aud.clone(), now, now + 60),
        ),
        (
            "sub with a trailing slash",
            svid(&key, &format!("{b}/"), aud.clone(), now, now + 60),
        ),
        (
            "sub with a longer path",
            svid(&key, &format!("{b}/extra"), aud.clone(), now, now + 60),
        ),
        (
            "sub with a dot segment",
            svid(&key, &format!("{b}/."), aud.clone(), now, now + 60),
        ),
        (
            "no such workload registered",
            svid(&key, &id(TD, "nobody"), aud.clone(), now, now + 60),
        ),
        (
            "alg none",
            tokens::unsigned(r#"{"alg":"none","typ":"JWT"}"#, &claims, ""),
        ),
        (
            "HS256 keyed with the bundle's public key",
            hs256(key.kid(), &claims, &key.public_jwk().to_string()),
        ),
        ("an access token as the assertion", subject.clone()),
    ];
    for (name, assertion) in refused {
        let (st, body) = exchange_with(&idp, &subject, &assertion, &[]).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(body["error"], "invalid_client", "{name}");
        // Nothing about why: the reason is in the IdP's log.
        assert_eq!(
            body["error_description"], "client authentication failed",
            "{name}"
        );
    }
    // svc-x's SVID used by service-b: refused, whichever client_id is claimed.
    let x_svid = svid(&key, &x, aud.clone(), now, now + 60);
    let (st, body) = exchange_with(&idp, &subject, &x_svid, &[("client_id", "service-b")]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    // Another trust domain's SVID for the same path (a client there has it) claiming service-b.
    let o = svid(
        &other,
        &id(OTHER_TD, "service-b"),
        aud.clone(),
        now,
        now + 60,
    );
    let (st, body) = exchange_with(&idp, &subject, &o, &[("client_id", "service-b")]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    // As svc-x itself it authenticates, and the policy has no edge for it.
    let (st, body) = exchange_with(&idp, &subject, &x_svid, &[]).await;
    assert_ne!(st, StatusCode::OK, "{body}");
    assert_ne!(body["error"], "invalid_client", "{body}");

    // The assertion twice, or with a secret beside it: refused before anything is checked.
    let twice = [("client_assertion", good.as_str())];
    let (st, _) = exchange_with(&idp, &subject, &good, &twice).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let both = [("client_secret", "demo-secret-service-b")];
    let (st, body) = exchange_with(&idp, &subject, &good, &both).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let basic = idp
        .http
        .post(format!("{}/token", idp.url))
        .basic_auth("service-b", Some("demo-secret-service-b"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", SPIFFE_TYPE),
            ("client_assertion", good.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(basic.status(), StatusCode::BAD_REQUEST);
    // service-b's old secret no longer authenticates it.
    let (st, body) = idp
        .token("service-b", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HS256 token keyed with `secret` (an attacker's guess: the public key as an HMAC key).
fn hs256(kid: &str, claims: &Map<String, Value>, secret: &str) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.to_owned());
    h.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(
        &h,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("hs256")
}

fn get(url: &str, bearer: &str) -> Request<Body> {
    let mut req = Request::get(url).body(empty()).expect("request");
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {bearer}").parse().expect("header"),
    );
    req
}

async fn call(s: &Outbound, req: Request<Body>) -> http::Response<Body> {
    tokio::time::timeout(Duration::from_secs(20), outbound::handle(s, req))
        .await
        .expect("the proxy answered within the bound")
}

#[test_log::test(tokio::test)]
async fn a_sidecar_exchanges_with_the_svid_its_helper_keeps_fresh() {
    let dir = scratch("sidecar");
    let (idp, key, _) = idp(&dir).await;
    let up = Upstream::start().await;
    let svid_path = dir.join("svid.token");
    let now = unix_now();
    let aud = json!(idp.url);
    let b = id(TD, "service-b");
    std::fs::write(&svid_path, svid(&key, &b, aud.clone(), now, now + 300)).expect("write");
    let yaml = format!(
        "client: {{client_id: service-b, jwt_svid_file: \"{}\"}}\nroutes:\n  - {{name: c, host: \"{}\", audience: service-c}}\n",
        svid_path.display(),
        up.addr
    );
    let raw: RawOutbound = serde_saphyr::from_str(&yaml).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid");
    let s = Outbound::new(cfg, Some(&idp.url), Default::default()).expect("outbound");
    let url = format!("http://{}/", up.addr);

    let first = token_for_b(&idp).await;
    let rsp = call(&s, get(&url, &first)).await;
    assert_eq!(rsp.status(), 200);
    let sent = up.seen().last().expect("seen").claims();
    assert_eq!(sent["aud"], "service-c");
    assert_eq!(sent["act"]["sub"], "service-b");

    // The helper writes another workload's SVID: the IdP refuses the client (the sidecar's
    // own credential, so 502 to the app) ...
    let x = svid(&key, &id(TD, "svc-x"), aud.clone(), now, now + 300);
    replace(&svid_path, &x);
    let second = token_for_b(&idp).await;
    let rsp = call(&s, get(&url, &second)).await;
    assert_eq!(rsp.status(), 502);
    assert!(text(rsp).await.contains("invalid_client"));
    assert_eq!(up.requests(), 1);
    // ... and a renewed SVID of its own is used at once, without a restart.
    replace(&svid_path, &svid(&key, &b, aud, now, now + 300));
    let third = token_for_b(&idp).await;
    let rsp = call(&s, get(&url, &third)).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.requests(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn text(rsp: http::Response<Body>) -> String {
    use http_body_util::BodyExt;
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Replaces `path` the way helpers do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
