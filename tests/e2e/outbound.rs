//! e2e: the outbound listener against a fake token endpoint and a recording upstream.

use crate::support::recorder::Upstream;
use crate::support::test_ca::TestCa;
use crate::support::token_idp::{BAD_SUBJECT, CLIENT_ID, CLIENT_SECRET, FakeIdp, Tamper};
use baton::config::Problems;
use baton::config::outbound::{Outbound as OutboundConfig, RawOutbound, validate};
use baton::http::{Body, empty};
use baton::outbound::{self, Outbound};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// Bound for anything that could hang if the proxy were wrong; never a timing assertion.
const BOUND: Duration = Duration::from_secs(20);

fn state(idp: &FakeIdp, yaml: &str) -> Arc<Outbound> {
    Arc::new(outbound_of(idp, yaml))
}

fn outbound_of(idp: &FakeIdp, yaml: &str) -> Outbound {
    Outbound::new(config_of(yaml), Some(&idp.issuer()), Default::default()).expect("outbound")
}

/// The validated `outbound:` section of `yaml`, with the fake IdP's client and its secret.
fn config_of(yaml: &str) -> OutboundConfig {
    config_with_secret(CLIENT_SECRET, yaml)
}

fn config_with_secret(secret: &str, yaml: &str) -> OutboundConfig {
    let text = format!("client: {{client_id: {CLIENT_ID}, secret: {secret}}}\n{yaml}");
    let raw: RawOutbound = serde_saphyr::from_str(&text).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    problems.finish(cfg).expect("valid outbound config")
}

/// The outbound forward proxy of `s` on a loopback port, served until the test ends.
async fn serve(s: Arc<Outbound>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = listener.local_addr().expect("addr");
    tokio::spawn(outbound::serve(
        s,
        listener,
        Default::default(),
        std::future::pending(),
    ));
    proxy
}

fn routes(up: &Upstream) -> String {
    format!(
        "routes:\n  - {{name: b, host: \"{}\", audience: service-b, scope: read}}\n",
        up.addr
    )
}

fn get(url: &str, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::get(url).body(empty()).expect("request");
    if let Some(t) = bearer {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    req
}

async fn text(rsp: Response<Body>) -> String {
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn call(s: &Outbound, req: Request<Body>) -> Response<Body> {
    tokio::time::timeout(BOUND, outbound::handle(s, req))
        .await
        .expect("the proxy answered within the bound")
}

#[test_log::test(tokio::test)]
async fn header_is_replaced_and_inbound_token_never_reaches_upstream() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let proxy = serve(s).await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).expect("proxy"))
        .build()
        .expect("client");
    let user = idp.user_token("alice");
    let rsp = client
        .get(format!("http://{}/hello", up.addr))
        .bearer_auth(&user)
        .send()
        .await
        .expect("send");
    assert_eq!(rsp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/hello");
    let auth = seen[0].authorization();
    assert_ne!(auth, format!("Bearer {user}"));
    assert!(
        !seen
            .iter()
            .any(|r| format!("{:?}", r.headers).contains(&user))
    );
    let claims = seen[0].claims();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "service-b");
    assert_eq!(claims["scope"], "read");
    let form = &idp.forms()[0];
    let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
    assert!(has(
        "grant_type",
        "urn:ietf:params:oauth:grant-type:token-exchange"
    ));
    assert!(has("subject_token", &user));
    assert!(has(
        "subject_token_type",
        "urn:ietf:params:oauth:token-type:access_token"
    ));
    assert!(has("audience", "service-b"));
}

/// A connection remembers the cache key of the token it last sent (`LastKey`): callers who take
/// turns on one keep-alive connection must each get their own user's token upstream.
#[test_log::test(tokio::test)]
async fn users_taking_turns_on_one_connection_each_get_their_own_token() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let proxy = serve(state(&idp, &routes(&up))).await;
    // One idle connection at most, requests one after another: each reuses the same connection.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).expect("proxy"))
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let (alice, bob) = (idp.user_token("alice"), idp.user_token("bob"));
    let turns = [&alice, &bob, &alice, &alice, &bob];
    for user in turns {
        let rsp = client
            .get(format!("http://{}/turn", up.addr))
            .bearer_auth(user)
            .send()
            .await
            .expect("send");
        assert_eq!(rsp.status(), 200);
    }
    let subs: Vec<_> = up
        .seen()
        .iter()
        .map(|r| r.claims()["sub"].clone())
        .collect();
    assert_eq!(subs, ["alice", "bob", "alice", "alice", "bob"]);
    assert_eq!(idp.calls(), 2, "one exchange per user, then the cache");
}

#[test_log::test(tokio::test)]
async fn unknown_host_is_refused_with_403_naming_it() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let rsp = call(
        &s,
        get("http://evil.example:8080/", Some(&idp.user_token("alice"))),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);
    assert!(text(rsp).await.contains("evil.example:8080"));
    assert_eq!((idp.calls(), up.requests()), (0, 0));
}

#[test_log::test(tokio::test)]
async fn unknown_passthrough_forwards_without_authorization() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, "unknown: passthrough\n");
    let mut req = get(&format!("http://{}/x", up.addr), Some("inbound"));
    // The trust domain's Transaction Token never leaves with it either, in either spelling.
    for name in ["txn-token", "Txn-Token", "txn_token"] {
        req.headers_mut().append(
            name,
            "eyJ0eXAiOiJ0eG50b2tlbitqd3QifQ.e30.c2ln"
                .parse()
                .expect("value"),
        );
    }
    let rsp = call(&s, req).await;
    assert_eq!(rsp.status(), 200);
    let seen = &up.seen()[0].headers;
    assert!(seen.get(header::AUTHORIZATION).is_none());
    assert!(seen.get("txn-token").is_none() && seen.get("txn_token").is_none());
    assert_eq!(idp.calls(), 0);
}

#[test_log::test(tokio::test)]
async fn hundred_concurrent_identical_calls_make_one_exchange_and_a_second_wave_none() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let user = idp.user_token("alice");
    for wave in 0..2 {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (s, url, user) = (s.clone(), format!("http://{}/", up.addr), user.clone());
                tokio::spawn(async move { call(&s, get(&url, Some(&user))).await.status() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), 200);
        }
        assert_eq!(idp.calls(), 1, "wave {wave}");
    }
    assert_eq!(up.requests(), 200);
    let tokens: std::collections::HashSet<_> =
        up.seen().iter().map(|r| r.authorization()).collect();
    assert_eq!(tokens.len(), 1);
}

#[test_log::test(tokio::test)]
async fn idp_down_cached_calls_work_and_new_subjects_get_503_with_retry_after() {
    let mut idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let url = format!("http://{}/", up.addr);
    let (alice, bob) = (idp.user_token("alice"), idp.user_token("bob"));
    assert_eq!(call(&s, get(&url, Some(&alice))).await.status(), 200);
    idp.stop().await;
    assert_eq!(call(&s, get(&url, Some(&alice))).await.status(), 200);
    for _ in 0..3 {
        let rsp = call(&s, get(&url, Some(&bob))).await;
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(rsp.headers().contains_key(header::RETRY_AFTER));
        assert!(!text(rsp).await.contains(&bob));
    }
    assert_eq!(up.requests(), 2);
}

#[test_log::test(tokio::test)]
async fn two_routes_to_one_host_get_different_tokens() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let yaml = format!(
        "routes:
  - {{name: b-read, host: \"{a}\", audience: service-b, scope: read}}
  - {{name: b-admin, host: \"{a}\", resources: [\"https://b/admin\", \"https://b/audit\"], scope: admin}}
ports:
  - {{listen: \"127.0.0.1:0\", upstream: \"{a}\", route: b-read}}
  - {{listen: \"127.0.0.1:0\", upstream: \"{a}\", route: b-admin}}
",
        a = up.addr
    );
    let s = state(&idp, &yaml);
    let user = idp.user_token("alice");
    for port in 0..2 {
        let rsp = outbound::handle_port(&s, port, get("/p", Some(&user))).await;
        assert_eq!(rsp.status(), 200);
    }
    let seen = up.seen();
    assert_ne!(seen[0].authorization(), seen[1].authorization());
    assert_eq!(seen[0].claims()["scope"], "read");
    assert_eq!(seen[1].claims()["scope"], "admin");
    assert_eq!(
        seen[1].claims()["aud"],
        serde_json::json!(["https://b/admin", "https://b/audit"])
    );
    assert_eq!(seen[1].headers[header::HOST], up.addr.to_string());
    assert_eq!(idp.calls(), 2);
}

#[test_log::test(tokio::test)]
async fn a_websocket_through_an_outbound_port_carries_the_exchanged_token() {
    use crate::support::websocket::{self, echoed};
    use base64::Engine;
    use tokio_tungstenite::tungstenite::Message;
    let idp = FakeIdp::start().await;
    let (app, handshakes) = websocket::app().await;
    let yaml = format!(
        "routes:\n  - {{name: b, host: \"{app}\", audience: service-b, scope: read}}\n\
         ports:\n  - {{listen: \"127.0.0.1:0\", upstream: \"{app}\", route: b}}\n"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr");
    let s = state(&idp, &yaml);
    tokio::spawn(outbound::serve_port(
        s,
        0,
        listener,
        Default::default(),
        std::future::pending(),
    ));
    let user = idp.user_token("alice");
    let (mut ws, status) = websocket::connect(port, Some(&user))
        .await
        .expect("handshake");
    assert_eq!(status, 101);
    echoed(&mut ws, Message::text("hello")).await;
    echoed(&mut ws, Message::binary(vec![1u8; 100 << 10])).await;

    let seen = handshakes.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "one handshake reached the app");
    let bearer = seen[0][header::AUTHORIZATION].to_str().expect("ascii");
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    assert_ne!(token, user, "the exchanged token, not the caller's");
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(
        (claims["aud"].as_str(), claims["scope"].as_str()),
        (Some("service-b"), Some("read"))
    );
    assert_eq!(idp.calls(), 1);
}

#[test_log::test(tokio::test)]
async fn upstream_invalid_token_retries_get_once_with_a_fresh_exchange() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let url = format!("http://{}/", up.addr);
    let user = idp.user_token("alice");
    up.reject_next(1);
    assert_eq!(call(&s, get(&url, Some(&user))).await.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].authorization(), seen[1].authorization());
    assert_eq!(idp.calls(), 2);

    // A POST is not replayed: the 401 goes back to the app, and the stale token is gone.
    up.reject_next(1);
    let post = Request::post(&url)
        .header(header::AUTHORIZATION, format!("Bearer {user}"))
        .body(baton::http::full("payload"))
        .expect("request");
    assert_eq!(call(&s, post).await.status(), StatusCode::UNAUTHORIZED);
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[2].method.as_str(), &seen[2].body[..]),
        ("POST", &b"payload"[..])
    );
    assert_eq!(call(&s, get(&url, Some(&user))).await.status(), 200);
    assert_eq!(idp.calls(), 3);
}

#[test_log::test(tokio::test)]
async fn no_subject_is_denied_or_uses_client_credentials_per_route() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let yaml = format!(
        "routes:
  - {{name: b, host: \"{a}\", audience: service-b}}
  - {{name: c, host: \"localhost:{p}\", audience: service-c, without_subject: client_credentials}}
",
        a = up.addr,
        p = up.addr.port()
    );
    let s = state(&idp, &yaml);
    let rsp = call(&s, get(&format!("http://{}/", up.addr), None)).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert!(rsp.headers().contains_key(header::WWW_AUTHENTICATE));
    assert!(
        text(rsp)
            .await
            .contains("propagate the inbound `Authorization: Bearer` header")
    );
    assert_eq!((idp.calls(), up.requests()), (0, 0));

    let rsp = call(
        &s,
        get(&format!("http://localhost:{}/", up.addr.port()), None),
    )
    .await;
    assert_eq!(rsp.status(), 200);
    assert!(idp.forms()[0].contains(&("grant_type".into(), "client_credentials".into())));
    assert_eq!(up.seen()[0].claims()["sub"], CLIENT_ID);
}

#[test_log::test(tokio::test)]
async fn refused_subject_gets_401_without_echoing_it_and_is_negatively_cached() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let url = format!("http://{}/", up.addr);
    for _ in 0..3 {
        let rsp = call(&s, get(&url, Some(BAD_SUBJECT))).await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
        let body = text(rsp).await;
        assert!(
            body.contains("invalid_request") && !body.contains(BAD_SUBJECT),
            "{body}"
        );
    }
    assert_eq!((idp.calls(), up.requests()), (1, 0));
}

#[test_log::test(tokio::test)]
async fn hop_by_hop_headers_are_dropped() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let mut req = get(
        &format!("http://{}/", up.addr),
        Some(&idp.user_token("alice")),
    );
    for (k, v) in [
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=1"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("x-kept", "yes"),
    ] {
        req.headers_mut().insert(k, v.parse().expect("value"));
    }
    assert_eq!(call(&s, req).await.status(), 200);
    let h = &up.seen()[0].headers;
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(!h.contains_key(gone), "{gone} forwarded");
    }
    assert_eq!(h["x-kept"], "yes");
    assert!(h.contains_key("x-request-id"));
}

#[test_log::test(tokio::test)]
async fn connect_is_refused_by_default() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let mut req = Request::new(empty());
    *req.method_mut() = Method::CONNECT;
    *req.uri_mut() = up.addr.to_string().parse().expect("authority");
    let rsp = call(&s, req).await;
    assert_eq!(rsp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(up.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn calls_to_the_idp_are_forwarded_without_exchange() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    let rsp = call(
        &s,
        get(
            &format!("{}/.well-known/openid-configuration", idp.issuer()),
            None,
        ),
    )
    .await;
    assert_eq!(rsp.status(), 200);
    assert!(text(rsp).await.contains("token_endpoint"));
    assert_eq!(idp.calls(), 0);
}

#[test_log::test(tokio::test)]
async fn cache_overflow_evicts_without_flushing() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &format!("cache: {{max_entries: 5}}\n{}", routes(&up)));
    let url = format!("http://{}/", up.addr);
    let users: Vec<_> = (0..30).map(|i| idp.user_token(&format!("u{i}"))).collect();
    for u in &users {
        assert_eq!(call(&s, get(&url, Some(u))).await.status(), 200);
    }
    assert_eq!(idp.calls(), 30);
    // The most recent subject is still cached: overflow evicted old entries, not everything.
    assert_eq!(call(&s, get(&url, Some(&users[29]))).await.status(), 200);
    assert_eq!(idp.calls(), 30);
}

#[test_log::test(tokio::test)]
async fn private_key_jwt_client_authentication() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let key = baton::jwt::keys::SigningKey::generate(baton::jwt::Algorithm::ES256).expect("key");
    let path = std::env::temp_dir().join(format!("baton-outbound-{}.pem", key.kid()));
    std::fs::write(&path, key.to_pem()).expect("write key");
    let text = format!(
        "client: {{client_id: {CLIENT_ID}, private_key_file: \"{}\", kid: k1}}\n{}",
        path.display(),
        routes(&up)
    );
    let raw: RawOutbound = serde_saphyr::from_str(&text).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid");
    let _ = std::fs::remove_file(&path);
    let s = Outbound::new(cfg, Some(&idp.issuer()), Default::default()).expect("outbound");
    let url = format!("http://{}/", up.addr);
    assert_eq!(
        call(&s, get(&url, Some(&idp.user_token("alice"))))
            .await
            .status(),
        200
    );
    let form = &idp.forms()[0];
    let assertion = form
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .map(|(_, v)| v.clone())
        .expect("client_assertion sent");
    let claims = baton::jwt::peek_claims(&assertion).expect("jwt");
    assert_eq!(claims["aud"], idp.issuer());
    assert!(claims.contains_key("jti") && claims.contains_key("exp"));
}

#[test_log::test(tokio::test)]
async fn a_hanging_idp_gives_503_within_the_configured_timeout() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_addr = hang.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hang.accept().await {
            held.push(conn);
        }
    });
    let yaml = format!(
        "token_endpoint: \"http://{hang_addr}/token\"\ntimeout: 300ms\n{}",
        routes(&up)
    );
    let s = state(&idp, &yaml);
    let rsp = call(
        &s,
        get(
            &format!("http://{}/", up.addr),
            Some(&idp.user_token("alice")),
        ),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rsp.headers()[header::RETRY_AFTER], "5");
    assert_eq!(up.requests(), 0);
}

/// A connection to `proxy` that asked for a tunnel to `to`, was answered 200, and has read the
/// answer's head to its end: what follows is the tunnel.
async fn tunnel(proxy: std::net::SocketAddr, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    conn.write_all(format!("CONNECT {to} HTTP/1.1\r\nHost: {to}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (mut head, mut last) = (Vec::new(), [0u8; 4]);
    while &last != b"\r\n\r\n" {
        let b = conn.read_u8().await.expect("read");
        head.push(b);
        last = [last[1], last[2], last[3], b];
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "CONNECT answered 200");
    conn
}

#[test_log::test(tokio::test)]
async fn connect_passthrough_opens_a_blind_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &format!("connect: passthrough\n{}", routes(&up)));
    let proxy = serve(s).await;
    let exchange = async {
        let a = up.addr;
        let mut conn = tunnel(proxy, a).await;
        let req = format!(
            "GET /t HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer untouched\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.expect("write");
        let mut rsp = Vec::new();
        conn.read_to_end(&mut rsp).await.expect("read");
        rsp
    };
    let rsp = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("bounded");
    assert!(rsp.starts_with(b"HTTP/1.1 200"));
    assert_eq!(up.seen()[0].authorization(), "Bearer untouched");
    assert_eq!(idp.calls(), 0);
}

/// A tunnel keeps the place under `max_connections` of the connection it came on, and a drain
/// closes it at once rather than after the shutdown grace.
#[test_log::test(tokio::test)]
async fn a_connect_tunnel_keeps_its_connection_slot_and_closes_on_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &format!("connect: passthrough\n{}", routes(&up)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = listener.local_addr().expect("addr");
    let (trigger, shutdown) = baton::shutdown::channel();
    let limits = baton::server::Limits {
        max_connections: 1,
        ..Default::default()
    };
    tokio::spawn(outbound::serve(s, listener, limits, shutdown.wait()));
    // The far end holds its side open until the tunnel closes it.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let far = target.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut conn, _) = target.accept().await.expect("accept");
        let _ = conn.read_to_end(&mut Vec::new()).await;
    });
    let exchange = async {
        let mut conn = tunnel(proxy, far).await;
        // The tunnel holds the only slot: the next connection is closed unanswered.
        let mut second = tokio::net::TcpStream::connect(proxy)
            .await
            .expect("connect");
        let _ = second
            .write_all(b"GET http://example/ HTTP/1.1\r\nHost: example\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = second.read_to_end(&mut answer).await;
        assert!(
            answer.is_empty(),
            "no answer while the tunnel holds the slot"
        );
        // A drain closes the tunnel without waiting for the shutdown grace.
        trigger.fire();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.expect("closed");
        rest
    };
    let rest = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the drained tunnel closes");
    assert!(rest.is_empty());
}

/// A tunnel is no longer the listener's connection, whose idle timeout stops at the upgrade: it
/// closes after its own idle time with no byte moving, and bytes either way keep it open.
#[test_log::test(tokio::test)]
async fn an_idle_connect_tunnel_is_closed_and_a_busy_one_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const IDLE: Duration = Duration::from_millis(400);
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = outbound_of(&idp, &format!("connect: passthrough\n{}", routes(&up)));
    let proxy = serve(Arc::new(s.with_tunnel_idle(IDLE))).await;
    // The far end: accepts one connection and echoes, never closing it itself.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a = target.local_addr().expect("addr");
    let far_end = tokio::spawn(async move {
        let (mut conn, _) = target.accept().await.expect("accept");
        let mut buf = [0u8; 64];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => conn.write_all(&buf[..n]).await.expect("echo"),
            }
        }
    });
    let exchange = async {
        let mut conn = tunnel(proxy, a).await;
        // Busy for three idle periods: a byte each way every quarter of one.
        for i in 0..12u8 {
            conn.write_all(&[i]).await.expect("write");
            assert_eq!(conn.read_u8().await.expect("echoed"), i, "tunnel open");
            tokio::time::sleep(IDLE / 4).await;
        }
        // Then quiet: the sidecar closes it.
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.expect("closed");
        rest
    };
    let rest = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the idle tunnel closes");
    assert!(rest.is_empty(), "nothing after the echoes");
    tokio::time::timeout(BOUND, far_end)
        .await
        .expect("the far end sees the close")
        .expect("far end");
}

#[test_log::test(tokio::test)]
async fn tls_route_upgrades_to_https_trusting_its_ca_file() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start_tls().await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fixtures/ca.pem");
    let port = up.addr.port();
    let yaml = format!(
        "routes:\n  - {{name: b, host: \"localhost:{port}\", audience: service-b, tls: {{ca_file: \"{ca}\"}}}}\n"
    );
    let s = state(&idp, &yaml);
    let url = format!("http://localhost:{port}/secure");
    let rsp = call(&s, get(&url, Some(&idp.user_token("alice")))).await;
    assert_eq!(rsp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].path, "/secure");
    assert_eq!(seen[0].claims()["aud"], "service-b");
}

#[test_log::test(tokio::test)]
async fn tls_route_refuses_an_untrusted_upstream_certificate() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start_tls().await;
    let port = up.addr.port();
    let yaml = format!(
        "routes:\n  - {{name: b, host: \"localhost:{port}\", audience: service-b, tls: {{}}}}\n"
    );
    let s = state(&idp, &yaml);
    let rsp = call(
        &s,
        get(
            &format!("http://localhost:{port}/"),
            Some(&idp.user_token("a")),
        ),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(up.requests(), 0);
}

#[test_log::test(tokio::test)]
async fn idp_5xx_is_503_with_retry_after_never_a_refusal() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let s = state(&idp, &routes(&up));
    idp.answer_500(true);
    let rsp = call(
        &s,
        get(&format!("http://{}/", up.addr), Some(&idp.user_token("a"))),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(rsp.headers().contains_key(header::RETRY_AFTER));
    assert!(text(rsp).await.contains("idp_unavailable"));
    // Fails fast while the IdP is known to be down: no second POST.
    let rsp = call(
        &s,
        get(&format!("http://{}/", up.addr), Some(&idp.user_token("b"))),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((idp.calls(), up.requests()), (1, 0));
}

/// The outbound listener against the real in-process `baton-idp` (discovery, Basic auth, policy).
#[test_log::test(tokio::test)]
async fn real_idp_exchange_enriches_and_refuses_ungranted_edges() {
    let idp = crate::support::idp::start().await;
    let up = Upstream::start().await;
    let text_cfg = format!(
        "client: {{client_id: service-a, secret: {}}}
routes:
  - {{name: b, host: \"{a}\", audience: service-b, scope: \"openid profile\"}}
  - {{name: c, host: \"localhost:{p}\", audience: service-c}}
",
        crate::support::idp::secret("service-a"),
        a = up.addr,
        p = up.addr.port()
    );
    let raw: RawOutbound = serde_saphyr::from_str(&text_cfg).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid");
    let s = Outbound::new(cfg, Some(&idp.url), Default::default()).expect("outbound");
    let login = idp.login("openid profile").await;
    let user = login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();

    let rsp = call(&s, get(&format!("http://{}/", up.addr), Some(&user))).await;
    assert_eq!(rsp.status(), 200);
    let claims = up.seen()[0].claims();
    assert_eq!(claims["aud"], "service-b");
    assert_eq!(claims["act"]["sub"], "service-a");
    assert_eq!(claims["sub"], crate::support::idp::claims(&user)["sub"]);

    let rsp = call(
        &s,
        get(
            &format!("http://localhost:{}/", up.addr.port()),
            Some(&user),
        ),
    )
    .await;
    assert!(
        matches!(rsp.status(), StatusCode::FORBIDDEN),
        "ungranted edge: {}",
        rsp.status()
    );
    let body = text(rsp).await;
    assert!(
        body.contains("exchange_refused") && !body.contains(&user),
        "{body}"
    );
    assert_eq!(up.requests(), 1);
}

// === what the sidecar trusts ===

/// Each `tls` route trusts its own `ca_file` and nothing else: route y, which trusts CA Y,
/// refuses an upstream whose certificate CA X vouches for (CA X is route x's), and the user's
/// token never reaches it. The CA files are read again on reload.
#[test_log::test(tokio::test)]
async fn a_tls_route_refuses_a_certificate_another_routes_ca_vouches_for() {
    let idp = FakeIdp::start().await;
    let dir = std::env::temp_dir().join(format!(
        "baton-trust-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (ca_x, ca_y) = (TestCa::new("x"), TestCa::new("y"));
    let (x_file, y_file) = (ca_x.write(&dir, "x"), ca_y.write(&dir, "y"));
    let tls_upstream = |ca: &TestCa| {
        let leaf = ca.leaf();
        Upstream::start_tls_with(leaf.certs, leaf.key)
    };
    // x's own upstream; an upstream at y's address with a certificate from x's CA; a z route
    // that trusts CA Y too, with a certificate from it (the control).
    let ux = tls_upstream(&ca_x).await;
    let uy = tls_upstream(&ca_x).await;
    let uz = tls_upstream(&ca_y).await;
    let route = |name: &str, up: &Upstream, ca: &std::path::Path| {
        format!(
            "  - {{name: {name}, host: \"localhost:{}\", audience: service-b, tls: {{ca_file: \"{}\"}}}}\n",
            up.addr.port(),
            ca.display()
        )
    };
    let yaml = format!(
        "routes:\n{}{}{}",
        route("x", &ux, &x_file),
        route("y", &uy, &y_file),
        route("z", &uz, &y_file)
    );
    let s = state(&idp, &yaml);
    let user = idp.user_token("alice");
    let status = |up: &Upstream| {
        let url = format!("http://localhost:{}/", up.addr.port());
        let (s, user) = (s.clone(), user.clone());
        async move { call(&s, get(&url, Some(&user))).await.status() }
    };
    assert_eq!(status(&ux).await, StatusCode::OK, "x trusts CA X");
    assert_eq!(status(&uz).await, StatusCode::OK, "z trusts CA Y");
    let refused = call(
        &s,
        get(
            &format!("http://localhost:{}/", uy.addr.port()),
            Some(&user),
        ),
    )
    .await;
    assert_eq!(
        refused.status(),
        StatusCode::BAD_GATEWAY,
        "y trusts CA Y only"
    );
    assert!(text(refused).await.contains("upstream_unavailable"));
    assert_eq!(
        uy.requests(),
        0,
        "no request, so no token, reached y's impostor"
    );
    assert_eq!((ux.requests(), uz.requests()), (1, 1));

    // Route y now names CA X in its file: a reload reads it again.
    std::fs::write(&y_file, ca_x.pem()).expect("rewrite y's CA file");
    s.reload(config_of(&yaml)).expect("reload");
    assert_eq!(status(&uy).await, StatusCode::OK, "the new CA file applies");
    assert_eq!(
        status(&uz).await,
        StatusCode::BAD_GATEWAY,
        "and CA Y is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of the counter line that starts with `name` (0 when absent).
fn counter(metrics: &baton::telemetry::Metrics, name: &str) -> u64 {
    let text = metrics.encode();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A token-endpoint answer that is not what was asked for (RFC 8693 §2.2.1, RFC 6749 §5.1) is
/// refused with 502 before it is cached or sent, counted by reason, and fails nothing else:
/// no fail-fast window, the next good answer is used.
#[test_log::test(tokio::test)]
async fn every_malformed_exchange_answer_is_refused_counted_and_never_sent() {
    let idp = FakeIdp::start().await;
    let up = Upstream::start().await;
    let metrics = baton::telemetry::Metrics::new();
    let yaml = format!(
        "routes:\n  - {{name: b, host: \"{a}\", audience: service-b}}\n  - {{name: svc, host: \"localhost:{p}\", audience: service-b, without_subject: client_credentials}}\n",
        a = up.addr,
        p = up.addr.port()
    );
    let s = Outbound::new(
        config_of(&yaml),
        Some(&idp.issuer()),
        metrics.exchange.clone(),
    )
    .expect("outbound");
    let refresh = "urn:ietf:params:oauth:token-type:refresh_token";
    let response = |k: &str, v: serde_json::Value| Tamper {
        response: [(k.to_owned(), v)].into_iter().collect(),
        ..Tamper::default()
    };
    let claims = |k: &str, v: serde_json::Value| Tamper {
        claims: [(k.to_owned(), v)].into_iter().collect(),
        ..Tamper::default()
    };
    use serde_json::{Value, json};
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "DPoP token_type",
            response("token_type", json!("DPoP")),
            "token_type",
        ),
        (
            "no token_type",
            response("token_type", Value::Null),
            "token_type",
        ),
        (
            "refresh_token issued",
            response("issued_token_type", json!(refresh)),
            "issued_token_type",
        ),
        (
            "no issued_token_type",
            response("issued_token_type", Value::Null),
            "issued_token_type",
        ),
        (
            "no access_token",
            response("access_token", Value::Null),
            "access_token",
        ),
        (
            "opaque access_token",
            response("access_token", json!("2YotnFZFEjr1zCsicMWpAA")),
            "access_token",
        ),
        ("another sub", claims("sub", json!("mallory")), "sub"),
        ("another aud", claims("aud", json!("service-c")), "aud"),
        ("no aud", claims("aud", Value::Null), "aud"),
    ];
    let user = idp.user_token("alice");
    let url = format!("http://{}/", up.addr);
    for (i, (name, tamper, reason)) in cases.iter().enumerate() {
        idp.tamper(tamper.clone());
        let before = counter(
            &metrics,
            &format!("baton_exchange_answers_refused_total{{route=\"b\",reason=\"{reason}\"}}"),
        );
        let rsp = call(&s, get(&url, Some(&user))).await;
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "{name}");
        assert!(!rsp.headers().contains_key(header::RETRY_AFTER), "{name}");
        let body = text(rsp).await;
        assert!(body.contains("idp_answer_refused"), "{name}: {body}");
        assert_eq!(idp.calls(), i + 1, "{name}: asked again, nothing cached");
        let after = counter(
            &metrics,
            &format!("baton_exchange_answers_refused_total{{route=\"b\",reason=\"{reason}\"}}"),
        );
        assert_eq!(after, before + 1, "{name}: counted under {reason}");
    }
    // The service's own token (client_credentials) is checked the same way.
    idp.tamper(response("token_type", json!("DPoP")));
    let svc = format!("http://localhost:{}/", up.addr.port());
    let rsp = call(&s, get(&svc, None)).await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        counter(
            &metrics,
            "baton_exchange_answers_refused_total{route=\"svc\",reason=\"token_type\"}"
        ),
        1
    );
    assert_eq!(up.requests(), 0, "no refused answer's token went anywhere");
    assert_eq!(
        counter(
            &metrics,
            "baton_exchanges_total{route=\"b\",outcome=\"bad_answer\"}"
        ),
        cases.len() as u64
    );

    idp.tamper(Tamper::default());
    let rsp = call(&s, get(&url, Some(&user))).await;
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "a good answer is used at once"
    );
    let claims = up.seen()[0].claims();
    assert_eq!(
        (claims["sub"].clone(), claims["aud"].clone()),
        (json!("alice"), json!("service-b"))
    );
}

// === reload ===

/// A reload applies routes, the unknown-host policy and the client secret to the next request,
/// also on a connection already open: after it, route number 0 names the same host for another
/// audience, and the connection's remembered key (`LastKey`) must not carry the old token over;
/// a removed route's host is refused; a new secret is used at once (the tokens cached with the
/// old one are dropped); new local ports are refused as needing a restart.
#[test_log::test(tokio::test)]
async fn a_reload_applies_to_the_next_request_on_connections_already_open() {
    let idp = FakeIdp::start().await;
    let (b, c) = (Upstream::start().await, Upstream::start().await);
    let route = |name: &str, up: &Upstream, aud: &str| {
        format!(
            "  - {{name: {name}, host: \"{}\", audience: {aud}}}\n",
            up.addr
        )
    };
    let both = format!(
        "routes:\n{}{}",
        route("b", &b, "service-b"),
        route("c", &c, "service-c")
    );
    let s = state(&idp, &both);
    let proxy = serve(s.clone()).await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).expect("proxy"))
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let user = idp.user_token("alice");
    let send = |up: &Upstream| {
        let req = client
            .get(format!("http://{}/", up.addr))
            .bearer_auth(&user);
        async move { req.send().await.expect("send").status() }
    };
    assert_eq!(send(&b).await, 200);
    assert_eq!(send(&c).await, 200);
    assert_eq!(b.seen()[0].claims()["aud"], "service-b");

    // Route 0 is b for another audience now; c is gone and unknown hosts are refused.
    let moved = format!("unknown: deny\nroutes:\n{}", route("b", &b, "service-c"));
    s.reload(config_of(&moved)).expect("reload");
    assert_eq!(send(&b).await, 200);
    assert_eq!(
        b.seen()[1].claims()["aud"],
        "service-c",
        "the same connection, user and route number: the new route's token"
    );
    assert_eq!(send(&c).await, 403, "the removed route's host is refused");
    assert_eq!(c.requests(), 1);

    // Passthrough for unknown hosts: c is reached, without any token.
    let open = format!(
        "unknown: passthrough\nroutes:\n{}",
        route("b", &b, "service-c")
    );
    s.reload(config_of(&open)).expect("reload");
    assert_eq!(send(&c).await, 200);
    assert!(c.seen()[1].headers.get(header::AUTHORIZATION).is_none());

    // Another secret: the cached token for b is not used, the next exchange carries the new
    // secret (which this IdP refuses: invalid_client → 502).
    let calls = idp.calls();
    s.reload(config_with_secret("rotated", &open))
        .expect("reload");
    assert_eq!(send(&b).await, 502);
    assert_eq!(
        idp.calls(),
        calls + 1,
        "exchanged again, with the new secret"
    );
    s.reload(config_of(&open)).expect("reload");
    assert_eq!(send(&b).await, 200);

    // A local port needs a listener bound at start: refused, and nothing else changes.
    let ported = format!(
        "{moved}ports:\n  - {{listen: \"127.0.0.1:1\", upstream: \"{}\", route: b}}\n",
        b.addr
    );
    let refused = s.reload(config_of(&ported)).expect_err("refused");
    assert!(
        refused.to_string().contains("outbound.ports") && refused.to_string().contains("restart"),
        "{refused}"
    );
    assert_eq!(send(&c).await, 200, "unknown: passthrough still in force");
}
