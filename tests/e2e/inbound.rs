//! e2e: the inbound listener against the attack catalogue, route rules, JWKS
//! faults (unknown-kid storm, rotation, IdP down), readiness and observe mode.

use crate::support::fake_idp::FakeIdp;
use crate::support::tokens::{self, access, claims, es256_raw, unsigned, with};
use crate::support::upstream::Upstream;
use crate::support::websocket::{self, closed_within, echoed};
use base64::Engine;
use baton::admin::{self, Admin};
use baton::config::Config;
use baton::inbound::{self, Inbound};
use baton::jwt::Algorithm;
use baton::jwt::jwks::Jwks;
use baton::jwt::keys::SigningKey;
use baton::telemetry::Metrics;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const AUD: &str = "service-b";

/// One sidecar's inbound and admin listeners, in process.
struct Sidecar {
    inbound: SocketAddr,
    admin: SocketAddr,
    jwks: Arc<Jwks>,
    shutdown: baton::shutdown::Trigger,
    http: reqwest::Client,
}

fn config(idp: &FakeIdp, app: &Upstream, mode: &str) -> Config {
    let yaml = format!(
        r#"
issuer: {issuer}
audience: {AUD}
mode: {mode}
app: "{app}"
jwks: {{retry: 50ms, fetch_timeout: 2s}}
limits: {{max_body_bytes: 4096}}
outbound: {{client: {{client_id: service-b, secret: test-only}}}}
routes:
  - {{name: health, path: /healthz, public: true}}
  - {{name: scoped, path: /scoped, scopes: [write]}}
  - {{name: stepup, path: /admin, acr: [mfa]}}
  - name: default
    path: /
    claims: [{{claim: grants, contains: {AUD}}}]
"#,
        issuer = idp.issuer,
        app = app.addr,
    );
    Config::from_yaml(&yaml, "sidecar.yaml").expect("test config")
}

impl Sidecar {
    async fn start(cfg: Config) -> Sidecar {
        let parts = crate::support::sidecar::inbound(&cfg);
        let (jwks, metrics) = (parts.jwks.clone(), parts.metrics.clone());
        let state = Arc::new(parts.state);
        let (trigger, shutdown) = baton::shutdown::channel();
        let admin_state = Arc::new(Admin::new(
            state.clone(),
            jwks.clone(),
            metrics,
            shutdown.clone(),
        ));
        let l_in = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let l_admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (inbound, admin) = (
            l_in.local_addr().expect("addr"),
            l_admin.local_addr().expect("addr"),
        );
        tokio::spawn(inbound::serve(state, l_in, shutdown.wait()));
        // The admin listener outlives the drain so probes see /readyz go to 503.
        tokio::spawn(admin::serve(admin_state, l_admin, std::future::pending()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Sidecar {
            inbound,
            admin,
            jwks,
            shutdown: trigger,
            http,
        }
    }

    async fn ready(self) -> Sidecar {
        tokio::time::timeout(Duration::from_secs(20), self.jwks.wait_ready())
            .await
            .expect("JWKS loads");
        self
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("http://{}{path}", self.inbound))
    }

    async fn call(&self, path: &str, token: &str) -> reqwest::Response {
        self.get(path)
            .bearer_auth(token)
            .send()
            .await
            .expect("response")
    }

    async fn admin(&self, path: &str) -> (u16, String) {
        let rsp = self
            .http
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("admin");
        (rsp.status().as_u16(), rsp.text().await.unwrap_or_default())
    }
}

fn challenge(rsp: &reqwest::Response) -> String {
    rsp.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

struct World {
    key: SigningKey,
    idp: FakeIdp,
    app: Upstream,
    baton: Sidecar,
}

async fn world(mode: &str) -> World {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let baton = Sidecar::start(config(&idp, &app, mode)).await.ready().await;
    World {
        key,
        idp,
        app,
        baton,
    }
}

#[test_log::test(tokio::test)]
async fn a_valid_token_reaches_the_app_with_verified_claims() {
    let w = world("enforce").await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let rsp = w.baton.call("/orders?x=1", &token).await;
    assert_eq!(rsp.status(), 200);
    let seen = w.app.last().expect("app saw the request");
    assert_eq!(seen.path, "/orders?x=1");
    let header = seen.headers.get("x-baton-claims").expect("claims header");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.as_bytes())
        .expect("b64");
    let sent: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
    assert_eq!(sent["sub"], "alice");
    assert_eq!(
        seen.headers.get("authorization").map(|v| v.as_bytes()),
        Some(format!("Bearer {token}").as_bytes())
    );
    assert!(seen.headers.contains_key("x-request-id"));

    let rsp = w
        .baton
        .http
        .post(format!("http://{}/orders", w.baton.inbound))
        .bearer_auth(&token)
        .body("hello")
        .send()
        .await
        .expect("post");
    assert_eq!(
        rsp.text().await.expect("body"),
        "echo: hello",
        "bodies stream both ways"
    );
    assert_eq!(&w.app.last().expect("seen").body[..], b"hello");

    let seen_before = w.app.requests();
    let rsp = w
        .baton
        .http
        .post(format!("http://{}/orders", w.baton.inbound))
        .bearer_auth(&token)
        .body(vec![b'x'; 8192])
        .send()
        .await
        .expect("post");
    assert_eq!(rsp.status(), 413, "body over limits.max_body_bytes");
    assert_eq!(w.app.requests(), seen_before);

    // Saying gRPC over HTTP/1.1 does not trade the total limit for a per-message one: a chunked
    // body of 600 small gRPC frames (9,000 bytes) never reaches the app whole.
    let mut frames = Vec::new();
    for _ in 0..600 {
        frames.extend_from_slice(&[0, 0, 0, 0, 10]);
        frames.extend_from_slice(b"0123456789");
    }
    let mut chunked = Vec::new();
    for chunk in frames.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: app\r\nauthorization: Bearer {token}\r\n\
         content-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let mut conn = tokio::net::TcpStream::connect(w.baton.inbound)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(head.as_bytes()).await.expect("head");
    let _ = conn.write_all(&chunked).await;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap_or(0);
    let status = String::from_utf8_lossy(&answer[..n]).to_string();
    // A refusal: an HTTP error, or a gRPC error in the trailers-only form gRPC clients read.
    let grpc_error = status.contains("grpc-status:") && !status.contains("grpc-status: 0\r");
    assert!(
        !status.starts_with("HTTP/1.1 200") || grpc_error,
        "{status}"
    );
    assert!(
        w.app.last().is_none_or(|seen| seen.body.len() <= 4096),
        "the app got more than max_body_bytes"
    );
}

#[test_log::test(tokio::test)]
async fn h2c_clients_are_forwarded_with_a_host_header() {
    let w = world("enforce").await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let rsp = h2
        .get(format!("http://{}/orders", w.baton.inbound))
        .bearer_auth(token)
        .send()
        .await
        .expect("h2c");
    assert_eq!(rsp.version(), reqwest::Version::HTTP_2);
    assert_eq!(rsp.status(), 200);
    let host = w.app.last().expect("seen").headers.get("host").cloned();
    assert_eq!(
        host.as_ref().map(|h| h.as_bytes()),
        Some(w.baton.inbound.to_string().as_bytes())
    );
}

#[test_log::test(tokio::test)]
async fn an_http_1_0_request_without_host_reaches_the_app_with_the_apps_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world("enforce").await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let mut tcp = tokio::net::TcpStream::connect(w.baton.inbound)
        .await
        .expect("connect");
    let head = format!("GET /orders HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let host = w.app.last().expect("seen").headers.get("host").cloned();
    assert_eq!(
        host.as_ref().map(|h| h.as_bytes()),
        Some(w.app.addr.to_string().as_bytes())
    );
}

#[test_log::test(tokio::test)]
async fn the_attack_catalogue_gets_401_invalid_token_and_never_reaches_the_app() {
    let w = world("enforce").await;
    let iss = w.idp.issuer.clone();
    let good = claims(&iss, AUD);
    let kid = w.key.kid().to_owned();
    let now = baton::jwt::unix_now();
    let hdr = |extra: &str| format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt"{extra}}}"#);
    let attacker = SigningKey::generate(Algorithm::ES256).expect("key");
    let valid = access(&w.key, &good);
    let (msg, _) = valid.rsplit_once('.').expect("jws");
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        h.typ = Some("at+jwt".into());
        let secret = w.key.public_jwk().to_string();
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("hs256")
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                &format!(r#"{{"alg":"none","kid":"{kid}","typ":"at+jwt"}}"#),
                &good,
                "",
            ),
        ),
        (
            "alg None",
            unsigned(
                &format!(r#"{{"alg":"None","kid":"{kid}","typ":"at+jwt"}}"#),
                &good,
                "",
            ),
        ),
        (
            "alg NONE",
            unsigned(
                &format!(r#"{{"alg":"NONE","kid":"{kid}","typ":"at+jwt"}}"#),
                &good,
                "x",
            ),
        ),
        ("HS256 with the public key", hs256),
        (
            "ECDSA r=s=0",
            unsigned(&hdr(""), &good, &tokens::b64(&[0u8; 64])),
        ),
        (
            "kid traversal",
            es256_raw(
                &w.key,
                r#"{"alg":"ES256","kid":"../../dev/null","typ":"at+jwt"}"#,
                &good,
            ),
        ),
        ("unknown kid", access(&attacker, &good)),
        (
            "jku to an attacker JWKS",
            es256_raw(
                &attacker,
                &format!(
                    r#"{{"alg":"ES256","kid":"{}","typ":"at+jwt","jku":"http://127.0.0.1:9/jwks"}}"#,
                    attacker.kid()
                ),
                &good,
            ),
        ),
        (
            "x5u",
            es256_raw(
                &attacker,
                &format!(
                    r#"{{"alg":"ES256","kid":"{}","typ":"at+jwt","x5u":"http://127.0.0.1:9/cert"}}"#,
                    attacker.kid()
                ),
                &good,
            ),
        ),
        (
            "inline jwk",
            es256_raw(
                &attacker,
                &format!(
                    r#"{{"alg":"ES256","typ":"at+jwt","jwk":{}}}"#,
                    attacker.public_jwk()
                ),
                &good,
            ),
        ),
        (
            "unknown crit",
            es256_raw(&w.key, &hdr(r#","crit":["exp"],"exp":1"#), &good),
        ),
        (
            "b64 false",
            es256_raw(&w.key, &hdr(r#","crit":["b64"],"b64":false"#), &good),
        ),
        (
            "expired",
            access(
                &w.key,
                &with(good.clone(), json!({"exp": now - 120, "iat": now - 600})),
            ),
        ),
        (
            "not yet valid",
            access(&w.key, &with(good.clone(), json!({"nbf": now + 3600}))),
        ),
        (
            "iat in the future",
            access(
                &w.key,
                &with(good.clone(), json!({"iat": now + 3600, "exp": now + 7200})),
            ),
        ),
        (
            "iss with trailing slash",
            access(
                &w.key,
                &with(good.clone(), json!({"iss": format!("{iss}/")})),
            ),
        ),
        (
            "iss in upper case",
            access(
                &w.key,
                &with(good.clone(), json!({"iss": iss.to_uppercase()})),
            ),
        ),
        (
            "wrong aud",
            access(&w.key, &with(good.clone(), json!({"aud": "service-c"}))),
        ),
        (
            "missing aud",
            access(&w.key, &with(good.clone(), json!({"aud": null}))),
        ),
        (
            "duplicate header keys",
            es256_raw(&w.key, &hdr(r#","alg":"none""#), &good),
        ),
        (
            "oversized token",
            access(
                &w.key,
                &with(good.clone(), json!({"pad": "x".repeat(20_000)})),
            ),
        ),
        ("truncated signature", valid[..valid.len() - 10].to_owned()),
        ("stripped signature", format!("{msg}.")),
        (
            "bad base64url",
            format!("{msg}.+{}", &valid.rsplit_once('.').expect("jws").1[1..]),
        ),
        (
            "ID token as access token",
            w.key.sign("JWT", &good).expect("sign"),
        ),
        (
            "DPoP-bound token as bearer",
            access(
                &w.key,
                &with(
                    good.clone(),
                    json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
                ),
            ),
        ),
        (
            "nested JWT",
            es256_raw(&w.key, &hdr(r#","cty":"JWT""#), &good),
        ),
    ];
    for (name, token) in cases {
        let rsp = w.baton.call("/orders", &token).await;
        let www = challenge(&rsp);
        assert_eq!(rsp.status(), 401, "{name}: {www}");
        assert!(
            www.starts_with(r#"Bearer realm="service-b", error="invalid_token""#),
            "{name}: {www}"
        );
        assert!(
            !www.contains(&token),
            "{name}: challenge must not echo the token"
        );
    }
    assert_eq!(w.app.requests(), 0, "the app saw none of the attacks");
    // The control: the same key and claims pass.
    assert_eq!(w.baton.call("/orders", &valid).await.status(), 200);
}

#[test_log::test(tokio::test)]
async fn a_one_megabyte_token_is_refused_before_the_app() {
    let w = world("enforce").await;
    let huge = "a".repeat(1 << 20);
    match w.baton.get("/orders").bearer_auth(&huge).send().await {
        Ok(rsp) => assert_eq!(rsp.status(), 431, "header too large"),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("connection"),
            "{e}"
        ),
    }
    assert_eq!(w.app.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn no_token_gets_a_bare_challenge_and_a_hint() {
    let w = world("enforce").await;
    let rsp = w.baton.get("/orders").send().await.expect("response");
    assert_eq!(rsp.status(), 401);
    assert_eq!(
        challenge(&rsp),
        r#"Bearer realm="service-b""#,
        "no error code without credentials"
    );
    let body = rsp.text().await.expect("body");
    assert!(
        body.contains("Authorization: Bearer") && body.contains("openid-configuration"),
        "{body}"
    );
    assert_eq!(w.app.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn a_token_in_the_query_string_is_refused() {
    let w = world("enforce").await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let rsp = w
        .baton
        .get(&format!("/orders?access_token={token}"))
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 400);
    assert!(challenge(&rsp).contains(r#"error="invalid_request""#));
    assert_eq!(w.app.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn a_spoofed_claims_header_is_stripped() {
    let w = world("enforce").await;
    let spoof = tokens::b64(br#"{"sub":"admin"}"#);
    let rsp = w
        .baton
        .get("/healthz")
        .header("x-baton-claims", &spoof)
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200, "public route");
    let rsp = w
        .baton
        .get("/healthz%2F..%2Forders")
        .send()
        .await
        .expect("response");
    assert_eq!(
        rsp.status(),
        400,
        "an encoded dot-segment cannot ride a public route"
    );
    assert_eq!(w.app.requests(), 1);
    assert!(
        w.app
            .last()
            .expect("seen")
            .headers
            .get("x-baton-claims")
            .is_none()
    );
    let metrics = w.baton.admin("/metrics").await.1;
    assert!(
        metrics.contains(r#"baton_inbound_requests_total{route="health",outcome="public"} 1"#),
        "{metrics}"
    );

    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let rsp = w
        .baton
        .get("/orders")
        .bearer_auth(&token)
        .header("x-baton-claims", &spoof)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    let seen = w.app.last().expect("seen");
    let values: Vec<_> = seen.headers.get_all("x-baton-claims").iter().collect();
    assert_eq!(values.len(), 1);
    assert_ne!(values[0].as_bytes(), spoof.as_bytes());
}

/// Sends `head` (a whole request head, names spelled as given) and reads the answer to the end.
async fn raw(to: SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(to).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The claims the app was given, from every header a CGI-style server would read as the
/// claims header (`_` as `-`, any case).
fn claims_seen(seen: &crate::support::upstream::Seen) -> Vec<serde_json::Value> {
    seen.headers
        .iter()
        .filter(|(name, _)| name.as_str().replace('_', "-") == "x-baton-claims")
        .map(|(_, v)| {
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.as_bytes())
                .expect("b64");
            serde_json::from_slice(&json).expect("json")
        })
        .collect()
}

#[test_log::test(tokio::test)]
async fn underscore_twins_of_owned_headers_never_reach_the_app() {
    let w = world("enforce").await;
    let forged = tokens::b64(br#"{"sub":"admin","scope":"everything"}"#);
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    let twins = [
        "x_baton_claims",
        "X_Baton_Claims",
        "x-baton_claims",
        "X-BATON-CLAIMS",
        "x_baton_other",
    ];
    for (path, auth) in [
        ("/healthz", String::new()),
        ("/orders", format!("Authorization: Bearer {token}\r\n")),
    ] {
        let seen = w.app.requests();
        let forged_headers: String = twins.iter().map(|n| format!("{n}: {forged}\r\n")).collect();
        let answer = raw(
            w.baton.inbound,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: b\r\n{auth}{forged_headers}Connection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert_eq!(w.app.requests(), seen + 1);
        let got = w.app.last().expect("seen");
        assert!(
            got.headers
                .keys()
                .all(|n| !n.as_str().replace('_', "-").starts_with("x-baton-")
                    || n.as_str() == "x-baton-claims"),
            "{path}: {:?}",
            got.headers
        );
        let claims = claims_seen(&got);
        if path == "/healthz" {
            assert!(
                claims.is_empty(),
                "a public route carries no claims: {claims:?}"
            );
        } else {
            assert_eq!(claims.len(), 1, "only the verified claims: {claims:?}");
            assert_eq!(claims[0]["sub"], "alice");
        }
    }
}

#[test_log::test(tokio::test)]
async fn connection_cannot_strip_the_token_or_host() {
    let w = world("enforce").await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));
    for connection in [
        "Authorization",
        "authorization",
        "AUTHORIZATION",
        "keep-alive, Authorization",
        "close,authorization , x-hop",
        "Host",
        "host, authorization, x-baton-claims",
    ] {
        let seen = w.app.requests();
        let answer = raw(
            w.baton.inbound,
            &format!(
                "GET /orders HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer {token}\r\n\
                 X-Hop: 1\r\nConnection: {connection}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{connection}: {answer}");
        assert_eq!(w.app.requests(), seen + 1);
        let got = w.app.last().expect("seen");
        assert_eq!(
            got.headers.get("authorization").map(|v| v.as_bytes()),
            Some(format!("Bearer {token}").as_bytes()),
            "{connection}: the token reaches the app"
        );
        assert_eq!(
            got.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"b.example"[..]),
            "{connection}"
        );
        assert_eq!(claims_seen(&got).len(), 1, "{connection}");
        assert_eq!(
            got.headers.contains_key("x-hop"),
            !connection.contains("x-hop"),
            "{connection}: other named headers still go"
        );
    }
}

#[test_log::test(tokio::test)]
async fn drop_underscore_headers_drops_every_underscored_name() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let mut cfg = config(&idp, &app, "enforce");
    cfg.inbound.drop_underscore_headers = true;
    let baton = Sidecar::start(cfg).await.ready().await;
    let answer = raw(
        baton.inbound,
        "GET /healthz HTTP/1.1\r\nHost: b\r\nX_Forwarded_User: root\r\nX-Kept: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = app.last().expect("seen");
    assert!(
        got.headers.keys().all(|n| !n.as_str().contains('_')),
        "{:?}",
        got.headers
    );
    assert!(got.headers.contains_key("x-kept"));
}

#[test_log::test(tokio::test)]
async fn route_rules_answer_insufficient_scope_claims_and_step_up() {
    let w = world("enforce").await;
    let good = claims(&w.idp.issuer, AUD);

    let rsp = w.baton.call("/scoped", &access(&w.key, &good)).await;
    assert_eq!(rsp.status(), 403);
    let www = challenge(&rsp);
    assert!(
        www.contains(r#"error="insufficient_scope""#) && www.contains(r#"scope="write""#),
        "{www}"
    );

    let rsp = w
        .baton
        .call(
            "/orders",
            &access(
                &w.key,
                &with(good.clone(), json!({"grants": ["service-a"]})),
            ),
        )
        .await;
    assert_eq!(rsp.status(), 403);

    let rsp = w
        .baton
        .call(
            "/admin",
            &access(&w.key, &with(good.clone(), json!({"acr": "pwd"}))),
        )
        .await;
    assert_eq!(rsp.status(), 401);
    let www = challenge(&rsp);
    assert!(
        www.contains(r#"error="insufficient_user_authentication""#)
            && www.contains(r#"acr_values="mfa""#),
        "{www}"
    );
    assert_eq!(w.app.requests(), 0);

    let rsp = w
        .baton
        .call(
            "/scoped",
            &access(&w.key, &with(good.clone(), json!({"scope": "read write"}))),
        )
        .await;
    assert_eq!(rsp.status(), 200);
    let rsp = w
        .baton
        .call(
            "/admin",
            &access(&w.key, &with(good, json!({"acr": "mfa"}))),
        )
        .await;
    assert_eq!(rsp.status(), 200);
}

#[test_log::test(tokio::test)]
async fn an_unknown_kid_storm_makes_at_most_one_jwks_fetch() {
    let w = world("enforce").await;
    let before = w.idp.jwks_fetches();
    let good = claims(&w.idp.issuer, AUD);
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..64 {
        let token = es256_raw(
            &w.key,
            &format!(r#"{{"alg":"ES256","kid":"storm-{i}","typ":"at+jwt"}}"#),
            &good,
        );
        let req = w.baton.get("/orders").bearer_auth(token);
        storm.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(done) = storm.join_next().await {
        assert_eq!(done.expect("task").expect("response"), 401);
    }
    assert!(
        w.idp.jwks_fetches() <= before + 1,
        "fetches went {before} → {}",
        w.idp.jwks_fetches()
    );
    assert_eq!(w.app.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn key_rotation_while_requests_flow_refuses_no_valid_request() {
    let w = world("enforce").await;
    // The new key is RS256: mixed algorithms in one JWKS, one algorithm per key.
    let next = SigningKey::generate(Algorithm::RS256).expect("key");
    let mut flows = tokio::task::JoinSet::new();
    w.idp.publish(&next);
    for i in 0..40 {
        let key = if i % 2 == 0 { &w.key } else { &next };
        let token = access(key, &claims(&w.idp.issuer, AUD));
        let req = w.baton.get("/orders").bearer_auth(token);
        flows.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(done) = flows.join_next().await {
        assert_eq!(done.expect("task").expect("response"), 200);
    }
    assert_eq!(w.app.requests(), 40);
}

#[test_log::test(tokio::test)]
async fn known_keys_keep_working_while_the_idp_is_down() {
    let mut w = world("enforce").await;
    w.idp.stop().await;
    // A fresh token (not in the verification cache) still verifies with the last-good keys.
    let rsp = w
        .baton
        .call("/orders", &access(&w.key, &claims(&w.idp.issuer, AUD)))
        .await;
    assert_eq!(rsp.status(), 200);
    // An unknown kid forces a refetch, which fails and is counted.
    let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
    let rsp = w
        .baton
        .call("/orders", &access(&stranger, &claims(&w.idp.issuer, AUD)))
        .await;
    assert_eq!(rsp.status(), 401);
    let (status, metrics) = w.baton.admin("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"baton_jwks_fetches_total{outcome="error"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"baton_inbound_requests_total{route="default",outcome="allowed"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        w.baton.admin("/readyz").await.0,
        200,
        "still ready on last-good keys"
    );
}

#[test_log::test(tokio::test)]
async fn readyz_is_503_until_the_first_jwks_load_and_after_shutdown_begins() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_up(false);
    let app = Upstream::start().await;
    let baton = Sidecar::start(config(&idp, &app, "enforce")).await;
    assert_eq!(baton.admin("/healthz").await.0, 200);
    assert_eq!(baton.admin("/readyz").await.0, 503);
    let rsp = baton
        .call("/orders", &access(&key, &claims(&idp.issuer, AUD)))
        .await;
    assert_eq!(
        rsp.status(),
        503,
        "no keys yet: the IdP is at fault, not the client"
    );
    idp.set_up(true);
    let baton = baton.ready().await;
    assert_eq!(baton.admin("/readyz").await.0, 200);
    let (_, cfg) = baton.admin("/config").await;
    assert!(cfg.contains(r#""audience":"service-b""#), "{cfg}");
    baton.shutdown.fire();
    assert_eq!(baton.admin("/readyz").await.0, 503);
}

#[test_log::test(tokio::test)]
async fn observe_mode_forwards_and_only_vouches_for_verified_tokens() {
    let w = world("observe").await;
    let rsp = w
        .baton
        .get("/orders")
        .header("x-baton-claims", "spoof")
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert!(
        w.app
            .last()
            .expect("seen")
            .headers
            .get("x-baton-claims")
            .is_none()
    );
    let expired = with(claims(&w.idp.issuer, AUD), json!({"exp": 1, "iat": 1}));
    assert_eq!(
        w.baton
            .call("/orders", &access(&w.key, &expired))
            .await
            .status(),
        200
    );
    assert!(
        w.app
            .last()
            .expect("seen")
            .headers
            .get("x-baton-claims")
            .is_none()
    );
    assert_eq!(
        w.baton
            .call("/orders", &access(&w.key, &claims(&w.idp.issuer, AUD)))
            .await
            .status(),
        200
    );
    assert!(
        w.app
            .last()
            .expect("seen")
            .headers
            .get("x-baton-claims")
            .is_some()
    );
    let (_, metrics) = w.baton.admin("/metrics").await;
    assert!(
        metrics.contains(r#"outcome="invalid_token"} 1"#),
        "{metrics}"
    );
}

#[test_log::test(tokio::test)]
async fn a_bad_reload_keeps_the_old_config_and_a_good_one_applies() {
    let w = world("enforce").await;
    let dir = std::env::temp_dir().join(format!("baton-reload-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("sidecar.yaml");
    let metrics = Arc::new(Metrics::new());
    let cfg = config(&w.idp, &w.app, "enforce");
    let state = Inbound::new(&cfg, w.baton.jwks.clone(), metrics);
    std::fs::write(&path, "issuer: [").expect("write");
    assert!(inbound::reload_from(&state, &path).is_err());
    assert_eq!(state.config()["mode"], "enforce");
    let text = format!(
        "issuer: {}\naudience: {AUD}\nmode: observe\napp: \"{}\"\njwks: {{retry: 50ms, fetch_timeout: 2s}}\nlimits: {{max_body_bytes: 4096}}\noutbound: {{client: {{client_id: service-b, secret: test-only}}}}\n",
        w.idp.issuer, w.app.addr
    );
    std::fs::write(&path, text.replace(AUD, "service-x")).expect("write");
    assert!(matches!(
        inbound::reload_from(&state, &path),
        Err(inbound::ReloadError::NeedsRestart("audience"))
    ));
    assert_eq!(state.config()["mode"], "enforce");
    std::fs::write(&path, text).expect("write");
    inbound::reload_from(&state, &path).expect("valid reload");
    assert_eq!(state.config()["mode"], "observe");
    let _ = std::fs::remove_dir_all(&dir);
}

// === protocol switches: WebSocket through the sidecar ===

struct WebSocketWorld {
    key: SigningKey,
    idp: FakeIdp,
    baton: Sidecar,
    handshakes: Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
}

async fn websocket_world(limits: impl FnOnce(&mut baton::server::Limits)) -> WebSocketWorld {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let unused = Upstream::start().await;
    let (app, handshakes) = websocket::app().await;
    let mut cfg = config(&idp, &unused, "enforce");
    cfg.app = app;
    limits(&mut cfg.limits);
    let baton = Sidecar::start(cfg).await.ready().await;
    WebSocketWorld {
        key,
        idp,
        baton,
        handshakes,
    }
}

#[test_log::test(tokio::test)]
async fn a_websocket_passes_with_a_valid_token_and_carries_the_verified_claims() {
    use tokio_tungstenite::tungstenite::Message;
    let w = websocket_world(|_| {}).await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));

    let (mut ws, status) = websocket::connect(w.baton.inbound, Some(&token))
        .await
        .expect("handshake");
    assert_eq!(status, 101);
    for i in 0..3 {
        echoed(&mut ws, Message::text(format!("message {i}"))).await;
    }
    echoed(&mut ws, Message::binary(vec![7u8; 256 << 10])).await;

    let handshakes = w.handshakes.lock().expect("lock").clone();
    assert_eq!(handshakes.len(), 1, "the app accepted one handshake");
    let forwarded: Vec<_> = handshakes[0].get_all("x-baton-claims").iter().collect();
    assert_eq!(forwarded.len(), 1, "the forged claims header gave way");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(forwarded[0].as_bytes())
        .expect("b64");
    let sent: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
    assert_eq!(sent["sub"], "alice");
    assert!(handshakes[0].contains_key("x-request-id"));
    ws.close(None).await.expect("close");

    // No token: the usual 401 and challenge; the app never hears of it.
    match websocket::connect(w.baton.inbound, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(rsp)) => {
            assert_eq!(rsp.status(), 401);
            let challenge = rsp.headers().get("www-authenticate").expect("challenge");
            assert!(challenge.to_str().expect("ascii").starts_with("Bearer"));
        }
        other => panic!("want a 401 refusal, got {:?}", other.map(|(_, s)| s)),
    }
    assert_eq!(w.handshakes.lock().expect("lock").len(), 1);
}

#[test_log::test(tokio::test)]
async fn a_websocket_keeps_its_connection_slot_and_closes_when_idle_or_drained() {
    use tokio_tungstenite::tungstenite::Message;
    let w = websocket_world(|l| {
        l.max_connections = 1;
        l.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let token = access(&w.key, &claims(&w.idp.issuer, AUD));

    // The open WebSocket holds the only connection slot: a second connection is closed at
    // accept, with no HTTP answer.
    let (mut ws, _) = websocket::connect(w.baton.inbound, Some(&token))
        .await
        .expect("handshake");
    echoed(&mut ws, Message::text("hello")).await;
    let second = w.baton.get("/healthz").bearer_auth(&token).send().await;
    assert!(
        second.is_err(),
        "a second connection is refused while the WebSocket is open"
    );
    // Busy for three idle periods: kept.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        echoed(&mut ws, Message::text("still here")).await;
    }
    // Quiet: closed by the sidecar after the idle timeout, and the slot is free again.
    assert!(closed_within(&mut ws, Duration::from_secs(10)).await);
    let (mut ws, _) = websocket::connect(w.baton.inbound, Some(&token))
        .await
        .expect("the slot is free again");
    echoed(&mut ws, Message::text("hello again")).await;

    // A drain closes it at once, without waiting for the shutdown grace.
    w.baton.shutdown.fire();
    assert!(closed_within(&mut ws, Duration::from_secs(5)).await);
}
